"""Keypoint targets, heatmap decoding and flip maps (Mask R-CNN §5, Detectron2's conventions).

Conventions:

- Keypoints are ``[..., K, 3]`` float32 ``(x, y, v)`` in *continuous* image pixels (pixel ``i``
  covers ``[i, i + 1)``, as boxes do): a COCO file's integer keypoint ``x`` is pixel index
  ``x``, i.e. ``x + 0.5`` here (Detectron2 adds 0.5 when loading and subtracts it when writing
  results; :mod:`mrcnn_tf.data.coco` and :mod:`mrcnn_tf.evaluation.coco_metrics` do the same).
  ``v``: 0 not labelled, 1 labelled but not visible, 2 visible; ``v > 0`` is a training target.
- RoIs and boxes are ``[..., 4]`` ``[y1, x1, y2, x2]`` in the same pixels.
- A heatmap of side ``S`` covers its RoI with ``S × S`` cells; cell ``(i, j)`` spans
  ``[y1 + i·h/S, y1 + (i+1)·h/S) × [x1 + j·w/S, x1 + (j+1)·w/S)`` (Heckbert's d = floor(c),
  c = d + 0.5), and is numbered ``i · S + j``.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

__all__ = ["decode_heatmaps", "decode_heatmaps_bicubic", "flip_keypoints", "keypoint_targets"]


def flip_keypoints(keypoints: tf.Tensor, width: tf.Tensor, perm: Sequence[int]) -> tf.Tensor:
    """Mirror ``[G, K, 3]`` keypoints in an image of ``width`` columns and swap left/right.

    ``x -> width - x`` (continuous pixels, exact), then ``perm``
    (:func:`mrcnn_tf.data.coco_keypoints.flip_map`) reorders the keypoints so that the mirrored
    left hand is the right hand. Unlabelled keypoints (``v == 0``) keep ``x = y = 0``.
    """
    keypoints = tf.convert_to_tensor(keypoints, tf.float32)
    x, y, v = tf.unstack(keypoints, axis=-1)
    x = tf.where(v > 0, tf.cast(width, tf.float32) - x, x)
    flipped = tf.stack([x, y, v], axis=-1)
    return tf.gather(flipped, list(perm), axis=-2)


def keypoint_targets(keypoints: tf.Tensor, rois: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Each keypoint's heatmap cell in its RoI (Detectron2's ``keypoints_to_heatmap``).

    A keypoint at ``x`` falls in column ``floor((x - x1) · S / w)`` (and rows alike); one exactly
    on the RoI's right/bottom edge goes to the last cell (the RoI is half-open otherwise).

    Args:
        keypoints: ``[..., K, 3]`` float ``(x, y, v)``; rois: ``[..., 4]`` ``[y1, x1, y2, x2]``
            (the leading dims match); size: ``S``.

    Returns:
        ``(index, valid)``: int32 ``[..., K]`` cell number ``i · S + j`` (0 where not valid) and
        bool ``[..., K]``: labelled (``v > 0``), inside the RoI and the RoI not empty.
    """
    keypoints = tf.cast(keypoints, tf.float32)
    rois = tf.cast(rois, tf.float32)[..., None, :]
    x, y, v = tf.unstack(keypoints, axis=-1)
    y1, x1, y2, x2 = tf.unstack(rois, axis=-1)
    s = float(size)
    w, h = x2 - x1, y2 - y1
    gx = tf.floor(tf.math.divide_no_nan((x - x1) * s, w))
    gy = tf.floor(tf.math.divide_no_nan((y - y1) * s, h))
    gx = tf.where(tf.equal(x, x2), s - 1.0, gx)
    gy = tf.where(tf.equal(y, y2), s - 1.0, gy)
    valid = (gx >= 0) & (gy >= 0) & (gx < s) & (gy < s) & (v > 0) & (w > 0) & (h > 0)
    index = tf.where(valid, tf.cast(gy, tf.int32) * size + tf.cast(gx, tf.int32), 0)
    return index, valid


def decode_heatmaps(logits: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
    """Keypoints from heatmap logits: argmax cell, sub-cell refinement, softmax score.

    For each keypoint, the cell ``(i, j)`` of the largest logit; then along each axis the
    vertex of the parabola through the logits of the cell and its two neighbours (offset
    ``(l - r) / (2 (l - 2c + r))``, within half a cell; 0 on the heatmap's border or when the
    three are collinear); the position is the refined cell centre mapped into the box:
    ``x = x1 + (j + 0.5 + dx) · w / S``. The score is the spatial softmax probability of the
    argmax cell (in [0, 1], the loss's own distribution).

    Args:
        logits: ``[B, N, S, S, K]`` float heatmap logits (rows, columns, keypoints).
        boxes: ``[B, N, 4]`` ``[y1, x1, y2, x2]`` the boxes the heatmaps cover.

    Returns:
        float32 ``[B, N, K, 3]`` ``(x, y, score)`` in the boxes' pixels.
    """
    logits = tf.cast(logits, tf.float32)
    size = logits.shape[2]
    maps = tf.transpose(logits, [0, 1, 4, 2, 3])  # [B, N, K, S, S]
    flat = tf.reshape(maps, tf.concat([tf.shape(maps)[:3], [size * size]], 0))
    best = tf.argmax(flat, axis=-1, output_type=tf.int32)
    i, j = best // size, best % size
    centre = tf.reduce_max(flat, axis=-1)
    score = tf.exp(centre - tf.reduce_logsumexp(flat, axis=-1))

    def value(ii, jj):
        cell = tf.clip_by_value(ii, 0, size - 1) * size + tf.clip_by_value(jj, 0, size - 1)
        return tf.gather(flat, tf.expand_dims(cell, -1), batch_dims=3)[..., 0]  # builtins only (LiteRT)

    def offset(before, after, inside):
        denom = before - 2.0 * centre + after
        step = tf.math.divide_no_nan(before - after, 2.0 * denom)
        return tf.where(inside & (denom < 0), tf.clip_by_value(step, -0.5, 0.5), 0.0)

    dx = offset(value(i, j - 1), value(i, j + 1), (j > 0) & (j < size - 1))
    dy = offset(value(i - 1, j), value(i + 1, j), (i > 0) & (i < size - 1))
    y1, x1, y2, x2 = tf.unstack(tf.expand_dims(tf.cast(boxes, tf.float32), 2), axis=-1)
    x = x1 + (tf.cast(j, tf.float32) + 0.5 + dx) * (x2 - x1) / size
    y = y1 + (tf.cast(i, tf.float32) + 0.5 + dy) * (y2 - y1) / size
    return tf.stack([x, y, score], axis=-1)


def _bicubic_weights(t: tf.Tensor, a: float = -0.75) -> list[tf.Tensor]:
    """PyTorch's cubic-convolution weights of the taps at -1, 0, 1, 2 for a fraction ``t``."""

    def near(x):  # |x| <= 1
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a

    return [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]


def _bicubic_rows(
    start: tf.Tensor, out_size: tf.Tensor, size: int, window: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """Interpolation matrices ``[..., window, size]`` of output pixels ``start + 0..window-1`` of a
    bicubic resize from ``size`` to ``out_size`` (PyTorch, ``align_corners=False``), and whether
    each output pixel exists (``< out_size``)."""
    dst = tf.cast(start, tf.float32)[..., None] + tf.range(window, dtype=tf.float32)
    scale = float(size) / out_size[..., None]
    real = scale * (dst + 0.5) - 0.5
    base = tf.floor(real)
    weights = _bicubic_weights(real - base)
    matrix = 0.0
    for tap, weight in zip((-1, 0, 1, 2), weights, strict=True):
        index = tf.clip_by_value(tf.cast(base, tf.int32) + tap, 0, size - 1)
        matrix += tf.one_hot(index, size) * weight[..., None]
    return matrix, dst < out_size[..., None]


def decode_heatmaps_bicubic(
    logits: tf.Tensor, boxes: tf.Tensor, window: int = 64, peaks: int = 8
) -> tf.Tensor:
    """torchvision's ``heatmaps_to_keypoints``: each heatmap resized bicubically to its box's
    size in pixels, the argmax pixel's centre, and the resized logit there as the score.

    The box's size is ``ceil(max(w, 1)) × ceil(max(h, 1))`` pixels; the keypoint is
    ``x1 + (x_int + 0.5) · w / ceil(w)``. With static shapes, the resized map is evaluated on
    ``window × window`` blocks of pixels, one centred on each of the heatmap's ``peaks`` highest
    local maxima (3×3), and the best pixel of all blocks wins. Exact when the resized map's
    maximum falls in one of the blocks: on torchvision's own random-weight heatmaps (many
    near-equal peaks, bicubic overshoot) 4 peaks × 40 pixels missed 13 of 1700 keypoints, 8 × 64
    none; trained heatmaps have one dominant peak. Cost: ``peaks · window · S · (S + window)``
    multiply-adds per keypoint (3.4 M for the defaults).

    Args:
        logits: ``[B, N, S, S, K]`` heatmap logits; boxes: ``[B, N, 4]`` ``[y1, x1, y2, x2]``.
        window, peaks: see above.

    Returns:
        float32 ``[B, N, K, 3]`` ``(x, y, logit)``.
    """
    logits = tf.cast(logits, tf.float32)
    size = logits.shape[2]
    maps = tf.transpose(logits, [0, 1, 4, 2, 3])  # [B, N, K, S, S]
    lead = tf.shape(maps)[:3]
    flat_maps = tf.reshape(maps, [-1, size, size, 1])
    is_peak = tf.equal(flat_maps, tf.nn.max_pool2d(flat_maps, 3, 1, "SAME"))
    peak_values = tf.reshape(tf.where(is_peak, flat_maps, -float("inf")), tf.concat([lead, [size * size]], 0))
    _, cells = tf.math.top_k(peak_values, k=peaks)  # [B, N, K, C]; a plateau gives several cells
    i, j = cells // size, cells % size
    y1, x1, y2, x2 = tf.unstack(
        tf.reshape(tf.cast(boxes, tf.float32), [-1, tf.shape(boxes)[1], 1, 1, 4]), axis=-1
    )
    width, height = tf.maximum(x2 - x1, 1.0), tf.maximum(y2 - y1, 1.0)  # [B, N, 1, 1]
    zeros = tf.zeros_like(tf.cast(j, tf.float32))
    out_w, out_h = tf.math.ceil(width) + zeros, tf.math.ceil(height) + zeros  # [B, N, K, C]

    def start(cell, out):  # the window's first pixel, inside [0, out - window] when it fits
        centre = (tf.cast(cell, tf.float32) + 0.5) * out / size - 0.5
        first = tf.round(centre) - float(window // 2)
        return tf.maximum(tf.minimum(first, out - float(window)), 0.0)

    sx, sy = start(j, out_w), start(i, out_h)
    cols, col_ok = _bicubic_rows(sx, out_w, size, window)  # [B, N, K, C, L, S]
    rows, row_ok = _bicubic_rows(sy, out_h, size, window)
    block = tf.einsum("bnkcys,bnkst,bnkcxt->bnkcyx", rows, maps, cols)  # [B, N, K, C, L, L]
    block = tf.where(row_ok[..., :, None] & col_ok[..., None, :], block, -float("inf"))
    # the pixel of each block, and the winner across blocks: the largest value, then (as
    # torch's argmax over the whole map) the first pixel in row-major order
    ys = sy[..., None, None] + tf.range(window, dtype=tf.float32)[:, None]
    xs = sx[..., None, None] + tf.range(window, dtype=tf.float32)[None, :]
    order = ys * out_w[..., None, None] + xs  # [B, N, K, C, L, L]
    values = tf.reshape(block, tf.concat([lead, [-1]], 0))
    order = tf.reshape(order + tf.zeros_like(block), tf.concat([lead, [-1]], 0))
    score = tf.reduce_max(values, axis=-1)
    first = tf.reduce_min(tf.where(tf.equal(values, score[..., None]), order, float("inf")), axis=-1)
    row_width = out_w[..., 0]
    y_int = tf.floor(first / row_width)
    x_int = first - y_int * row_width
    x = x1[..., 0] + (x_int + 0.5) * width[..., 0] / row_width
    y = y1[..., 0] + (y_int + 0.5) * height[..., 0] / out_h[..., 0]
    return tf.stack([x, y, score], axis=-1)
