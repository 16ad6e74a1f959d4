"""RoIAlign (He et al., Mask R-CNN, 2017) with Detectron2's ``ROIAlignV2`` semantics.

Coordinates: pixel i of a feature map covers [i, i+1) and its value sits at i + 0.5. A box
``[y1, x1, y2, x2]`` in input-image pixels maps to the feature map by ``spatial_scale``
(1/stride). With ``aligned=True`` the box is shifted by −0.5 so that the bilinear samples land
where the pixels' values are (Detectron2 ``ROIAlignV2``; "Where are Pixels?", Wu 2021);
``aligned=False`` is the original Detectron/Caffe2 op (no shift, RoI sizes at least 1 pixel).

Each of the ``output_size × output_size`` bins averages (or takes the max of)
``sampling_ratio × sampling_ratio`` bilinear samples placed at the centres of a regular
sub-grid. A sample more than one pixel outside the map contributes 0; one within a pixel of
the border takes the border value. ``sampling_ratio`` must be >= 1 (Detectron2's adaptive
``0`` gives a data-dependent number of samples, which static shapes and XLA cannot have).

Backends, which agree to 1e-5:

* ``crop_and_resize``: ``tf.image.crop_and_resize`` on the map padded by one edge-replicated
  pixel (which reproduces the border rule above), then pooling of each bin's samples. Fast on
  GPU; ``CropAndResize`` has no XLA kernel.
* ``gather``: the four bilinear neighbours of every sample are gathered explicitly. Works with
  ``jit_compile=True`` and on TPUs.
"""

from __future__ import annotations

import tensorflow as tf

BACKENDS = ("crop_and_resize", "gather")
POOLING = ("avg", "max")


def _sample_grid(
    boxes: tf.Tensor, output_size: int, spatial_scale: float, sampling_ratio: int, aligned: bool
):
    """Sample positions ``ys [B, N, S]``, ``xs [B, N, S]`` (S = size * ratio) in index units.

    Index units: pixel i's value sits at position i (Detectron2's bilinear convention), which
    is why ``aligned`` subtracts half a pixel from the box.
    """
    boxes = tf.cast(boxes, tf.float32) * spatial_scale
    offset = 0.5 if aligned else 0.0
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    y1, x1 = y1 - offset, x1 - offset
    h, w = y2 - offset - y1, x2 - offset - x1
    if not aligned:
        h, w = tf.maximum(h, 1.0), tf.maximum(w, 1.0)
    n = output_size * sampling_ratio
    steps = (tf.range(n, dtype=tf.float32) + 0.5) / float(n)  # [S] fractions of the RoI
    ys = y1[..., None] + h[..., None] * steps
    xs = x1[..., None] + w[..., None] * steps
    return ys, xs


def _pool_bins(samples: tf.Tensor, output_size: int, sampling_ratio: int, pooling: str) -> tf.Tensor:
    """``[B, N, S, S, C]`` samples -> ``[B, N, output_size, output_size, C]`` bins."""
    shape = tf.shape(samples)
    r = sampling_ratio
    grid = tf.reshape(samples, [shape[0], shape[1], output_size, r, output_size, r, shape[-1]])
    if pooling == "max":
        return tf.reduce_max(grid, axis=[3, 5])
    return tf.reduce_mean(grid, axis=[3, 5])


def _crop_and_resize(features, ys, xs, output_size, sampling_ratio, pooling):
    batch = tf.shape(features)[0]
    num = tf.shape(ys)[1]
    height = tf.cast(tf.shape(features)[1], tf.float32)
    width = tf.cast(tf.shape(features)[2], tf.float32)
    padded = tf.pad(features, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    # Index i of the map is index i + 1 of the padded map. crop_and_resize samples n evenly
    # spaced points from y1n * (H_padded - 1) to y2n * (H_padded - 1), and H_padded - 1 = H + 1.
    norm_boxes = tf.stack(
        [
            (ys[..., 0] + 1.0) / (height + 1.0),
            (xs[..., 0] + 1.0) / (width + 1.0),
            (ys[..., -1] + 1.0) / (height + 1.0),
            (xs[..., -1] + 1.0) / (width + 1.0),
        ],
        axis=-1,
    )
    n = output_size * sampling_ratio
    box_indices = tf.repeat(tf.range(batch), num)
    crops = tf.image.crop_and_resize(
        tf.cast(padded, tf.float32),
        tf.reshape(norm_boxes, [-1, 4]),
        box_indices,
        [n, n],
        method="bilinear",
        extrapolation_value=0.0,
    )
    crops = tf.reshape(crops, [batch, num, n, n, tf.shape(features)[-1]])
    return _pool_bins(crops, output_size, sampling_ratio, pooling)


def _axis_weights(coords: tf.Tensor, size: tf.Tensor):
    """Bilinear neighbours and weights along one axis with Detectron2's border rule.

    Args:
        coords: sample positions in index units, ``[..., S]``.
        size: the axis length (int32 scalar).

    Returns:
        (low index, high index, low weight, high weight), each ``[..., S]``; weights are 0
        for samples more than one pixel outside.
    """
    limit = tf.cast(size, tf.float32)
    valid = tf.logical_and(coords >= -1.0, coords <= limit)
    c = tf.clip_by_value(coords, 0.0, limit - 1.0)
    low = tf.floor(c)
    high = tf.minimum(low + 1.0, limit - 1.0)
    frac = c - low
    mask = tf.cast(valid, tf.float32)
    return tf.cast(low, tf.int32), tf.cast(high, tf.int32), (1.0 - frac) * mask, frac * mask


def _gather(features, ys, xs, output_size, sampling_ratio, pooling):
    shape = tf.shape(features)
    height, width, channels = shape[1], shape[2], shape[3]
    y_lo, y_hi, wy_lo, wy_hi = _axis_weights(ys, height)  # [B, N, S]
    x_lo, x_hi, wx_lo, wx_hi = _axis_weights(xs, width)
    flat = tf.reshape(tf.cast(features, tf.float32), [shape[0], height * width, channels])
    s = tf.shape(ys)[-1]

    def corner(yi, xi):
        index = yi[..., :, None] * width + xi[..., None, :]  # [B, N, S, S]
        n = tf.shape(index)[1]
        values = tf.gather(flat, tf.reshape(index, [shape[0], -1]), batch_dims=1)
        return tf.reshape(values, [shape[0], n, s, s, channels])

    samples = (
        corner(y_lo, x_lo) * (wy_lo[..., :, None] * wx_lo[..., None, :])[..., None]
        + corner(y_lo, x_hi) * (wy_lo[..., :, None] * wx_hi[..., None, :])[..., None]
        + corner(y_hi, x_lo) * (wy_hi[..., :, None] * wx_lo[..., None, :])[..., None]
        + corner(y_hi, x_hi) * (wy_hi[..., :, None] * wx_hi[..., None, :])[..., None]
    )
    return _pool_bins(samples, output_size, sampling_ratio, pooling)


def roi_align(
    features: tf.Tensor,
    boxes: tf.Tensor,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int = 2,
    aligned: bool = True,
    backend: str = "crop_and_resize",
    pooling: str = "avg",
) -> tf.Tensor:
    """Cut fixed-size features out of a map for every box (RoIAlign).

    Args:
        features: ``[B, H, W, C]`` float feature map.
        boxes: ``[B, N, 4]`` float ``[y1, x1, y2, x2]`` in input-image pixels (padded boxes
            are fine: they give finite values the caller ignores).
        output_size: bins per side (7 for the box head, 14 for the mask head).
        spatial_scale: feature pixels per input pixel, i.e. ``1 / stride``.
        sampling_ratio: samples per bin and axis (>= 1; 2 is the paper's / Detectron's choice).
        aligned: shift by −0.5 pixel (ROIAlignV2, default) or not (the original op).
        backend: ``crop_and_resize`` (GPU) or ``gather`` (XLA/TPU).
        pooling: ``avg`` (default) or ``max`` over each bin's samples (the paper's ablation).

    Returns:
        ``[B, N, output_size, output_size, C]`` float32.
    """
    if backend not in BACKENDS:
        raise ValueError(f"roi_align backend must be one of {BACKENDS}, got '{backend}'")
    if pooling not in POOLING:
        raise ValueError(f"roi_align pooling must be one of {POOLING}, got '{pooling}'")
    if int(sampling_ratio) < 1:
        raise ValueError(
            f"roi_align sampling_ratio must be >= 1 (static shapes), got {sampling_ratio}; "
            "Detectron2's adaptive 0 is not supported"
        )
    if int(output_size) < 1:
        raise ValueError(f"roi_align output_size must be >= 1, got {output_size}")
    ys, xs = _sample_grid(boxes, int(output_size), float(spatial_scale), int(sampling_ratio), aligned)
    run = _crop_and_resize if backend == "crop_and_resize" else _gather
    return run(features, ys, xs, int(output_size), int(sampling_ratio), pooling)
