"""Winograd F(m×m, 3×3): a 3×3, stride-1, zero-padded convolution with 2.25–4× fewer multiplies.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016). The input is cut
into (m+2)×(m+2) tiles that overlap by 2 pixels (one per m×m block of output pixels); each tile
``d`` and the kernel ``g`` are taken to the transform domain (``Bᵀ d B``, ``G g Gᵀ``), multiplied
point by point (which, summed over input channels, is (m+2)² matrix products
``[tiles, C] @ [C, O]``), and brought back with ``Aᵀ M A``. F(4×4, 3×3) makes 36 multiplies
per 16 output pixels and channel pair instead of 144; F(2×2, 3×3) 16 per 4 instead of 36.

On CPUs without a Winograd kernel (TensorFlow's oneDNN convolutions are direct) the matrix
products dominate for maps with many channels: measured on 2 CPU cores, 256 → 256 channels,
against ``tf.nn.conv2d``: 0.56–0.66× at 80×80 to 256×256 (m = 4; the FPN output and RPN convs
on P2/P3), 0.78–0.84× for 20–100 RoIs of 14×14 (m = 2; the mask head). Small maps (40×40),
7×7 RoIs and fewer channels (64, 128) are as slow or slower:
:func:`mrcnn_tf.modeling.layers.conv3x3` only picks this path where it pays.

Accuracy (float32, He-initialised weights, max error over the largest output magnitude,
against float64): m = 4 1.5e-5, m = 2 7e-7, ``tf.nn.conv2d`` 2e-6. Not for bfloat16/float16.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

#: Tiles transformed at once for a map of static size; larger maps go in bands of tile rows.
MAX_TILES = 2048
#: F(m×m, 3×3) transforms by output tile size m: (Bᵀ, G, Aᵀ), Lavin & Gray's matrices.
#: m = 2 uses the points 0, ±1, ∞; m = 4 adds ±2 (more rounding error, fewer multiplies).
TRANSFORMS = {
    2: (
        np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64),
    ),
    4: (
        np.array(
            [
                [4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1],
            ],
            np.float64,
        ),
        np.array(
            [
                [1 / 4, 0, 0],
                [-1 / 6, -1 / 6, -1 / 6],
                [-1 / 6, 1 / 6, -1 / 6],
                [1 / 24, 1 / 12, 1 / 6],
                [1 / 24, -1 / 12, 1 / 6],
                [0, 0, 1],
            ],
            np.float64,
        ),
        np.array(
            [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float64
        ),
    ),
}


def _combine(terms: list[tf.Tensor], coefficients: np.ndarray) -> tf.Tensor:
    """``sum(c * t)`` over the non-zero coefficients, with ±1 as plain additions."""
    out = None
    for c, t in zip(coefficients, terms, strict=True):
        if c == 0:
            continue
        value = t if c == 1 else -t if c == -1 else t * float(c)
        out = value if out is None else out + value
    return out


def _input_transform(x: tf.Tensor, axis: int, tiles: tf.Tensor, m: int) -> list[tf.Tensor]:
    """``Bᵀ d`` along ``axis`` (size ``m * (tiles + 1)``): m + 2 tensors with ``tiles`` there."""
    shape = tf.shape(x)
    x = tf.reshape(x, tf.concat([shape[:axis], [tiles + 1, m], shape[axis + 1 :]], 0))
    rows = []
    for r in range(m + 2):  # row r of tile i is row r % m of block i + r // m
        index = [slice(None)] * axis + [slice(r // m, r // m + tiles), r % m]
        rows.append(x[tuple(index)])
    bt = TRANSFORMS[m][0]
    return [_combine(rows, bt[j]) for j in range(m + 2)]


def transform_kernel(kernel: tf.Tensor, m: int = 4) -> tf.Tensor:
    """``G g Gᵀ``: ``[3, 3, C, O]`` → ``[(m + 2)², C, O]`` (row-major over the tile)."""
    g = tf.constant(TRANSFORMS[m][1], kernel.dtype)
    u = tf.einsum("ai,ijco,bj->abco", g, kernel, g)
    return tf.reshape(u, [(m + 2) ** 2, tf.shape(kernel)[2], tf.shape(kernel)[3]])


def winograd_conv3x3(x: tf.Tensor, kernel: tf.Tensor, m: int = 4) -> tf.Tensor:
    """``tf.nn.conv2d(x, kernel, 1, [[0, 0], [1, 1], [1, 1], [0, 0]])`` by Winograd F(m×m, 3×3).

    Args:
        x: ``[B, H, W, C]`` float32 (any B, H, W ≥ 1; static or dynamic).
        kernel: ``[3, 3, C, O]`` float32, as ``keras.layers.Conv2D.kernel``.
        m: output tile size, 2 or 4 (see :data:`TRANSFORMS`). Sizes that are not multiples of
            m are padded to whole tiles: 14×14 RoI maps suit m = 2, large maps m = 4.

    Returns:
        ``[B, H, W, O]``, the cross-correlation with one pixel of zero padding on every side
        (Keras ``padding="same"``, PyTorch ``padding=1``). Differentiable in both arguments.
    """
    if m not in TRANSFORMS:
        raise ValueError(f"winograd_conv3x3 supports tile sizes {sorted(TRANSFORMS)}, got {m}")
    batch, height, width = x.shape[0], x.shape[1], x.shape[2]
    u = transform_kernel(kernel, m)  # once, shared by the bands
    if None in (batch, height, width):  # one pass (a tf.while_loop over bands of unknown
        return _tiles_to_output(x, u, m, None)  # count measured 7 % slower at 640)
    tiles_y, tiles_x = -(-height // m), -(-width // m)
    if batch * tiles_y * tiles_x <= MAX_TILES:
        return _tiles_to_output(x, u, m, None)
    # A large map of static size: bands of tile rows one after the other, so that only one
    # band's transformed tiles are alive (R50-FPN P2 at 1024×1024: 4096 tiles, ~450 MB).
    rows = max(1, MAX_TILES // (batch * tiles_x))
    bands = []
    for start in range(0, tiles_y, rows):
        stop = min(tiles_y, start + rows)
        with tf.control_dependencies(bands[-1:]):
            bands.append(_tiles_to_output(x, u, m, (start * m, min(height, stop * m))))
    return tf.concat(bands, axis=1)


def _tiles_to_output(x: tf.Tensor, u: tf.Tensor, m: int, rows: tuple[int, int] | None) -> tf.Tensor:
    """Output rows ``rows[0]:rows[1]`` (all when None) of the convolution with the transformed
    kernel ``u`` (:func:`transform_kernel`), in one pass."""
    shape = tf.shape(x)
    # static sizes where known (RoI maps): slices with constant bounds, ~3x fewer graph ops
    height, width = (x.shape[i] if x.shape[i] is not None else shape[i] for i in (1, 2))
    first, last = (0, height) if rows is None else rows
    th = (last - first + m - 1) // m
    tw = (width + m - 1) // m
    # output row r reads input rows r - 1 .. r + 1: the band's rows with a 1-pixel halo, zero
    # ("same" padding) outside the map, and whole tiles + 2 on the bottom/right
    top = tf.maximum(first - 1, 0)
    x = x[:, top : last + 1]
    pad_top = 1 - (first - top)
    x = tf.pad(
        x,
        [[0, 0], [pad_top, m * (th + 1) - tf.shape(x)[1] - pad_top], [1, m * (tw + 1) - width - 1], [0, 0]],
    )
    tiled = _transforms_as_matmuls if m == 4 else _transforms_as_slices
    y = tiled(x, u, m, shape[0], th, tw)  # [B, th, m, tw, m, O]
    y = tf.reshape(y, [shape[0], th * m, tw * m, tf.shape(u)[2]])
    return y[:, : last - first, :width, :]


def _transforms_as_matmuls(x, u, m, batch, th, tw):
    """Tiles by ``extract_patches``, both transforms as one matrix product each (Bᵀ⊗Bᵀ, Aᵀ⊗Aᵀ).

    A dozen ops per convolution (the sliced form has ~600 for m = 4, which tripled graph
    optimisation time at the first call); as fast as the sliced form for m = 4.
    """
    bt, _, at = TRANSFORMS[m]
    n = m + 2
    channels = tf.shape(x)[3]
    tiles = tf.image.extract_patches(x, [1, n, n, 1], [1, m, m, 1], [1, 1, 1, 1], "VALID")
    tiles = tf.reshape(tiles, [-1, n * n, channels])  # [T, (r, c), C], T = B * th * tw
    v = tf.einsum("pq,tqc->ptc", tf.constant(np.kron(bt, bt), x.dtype), tiles)  # [n², T, C]
    products = tf.matmul(v, u)  # [n², T, O]
    y = tf.einsum("pq,qto->pto", tf.constant(np.kron(at, at), x.dtype), products)  # [m², T, O]
    y = tf.reshape(y, [m, m, batch, th, tw, -1])
    return tf.transpose(y, [2, 3, 0, 4, 1, 5])


def _transforms_as_slices(x, u, m, batch, th, tw):
    """Tiles as strided views, transforms as sums of views: faster for m = 2 on small RoI maps."""
    at = TRANSFORMS[m][2]
    n = m + 2
    channels = tf.shape(x)[3]
    grid = []  # grid[r][c]: [T, O], the product at tile point (r, c)
    for r, row in enumerate(_input_transform(x, 1, th, m)):
        grid.append([])
        for c, v in enumerate(_input_transform(row, 2, tw, m)):  # v: [B, th, tw, C]
            grid[r].append(tf.matmul(tf.reshape(v, [-1, channels]), u[r * n + c]))
    rows = [[_combine([grid[r][c] for r in range(n)], at[j]) for c in range(n)] for j in range(m)]
    out = [[_combine(rows[j], at[k]) for k in range(m)] for j in range(m)]  # m×m × [T, O]
    # pixel (m*i + j, m*t + k) of the output is out[j][k] of tile (i, t)
    out = [[tf.reshape(o, [batch, th, tw, -1]) for o in row] for row in out]
    return tf.stack([tf.stack(out[j], 3) for j in range(m)], 2)
