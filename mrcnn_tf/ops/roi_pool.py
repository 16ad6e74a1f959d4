"""RoIPool (Girshick, Fast R-CNN, 2015): quantized bins, max pooling — the op RoIAlign replaced.

Kept for the Mask R-CNN paper's ablation (Table 2c). Caffe/torchvision semantics: the box is
scaled and **rounded** to feature pixels (``round`` half away from zero), spans
``end - start + 1`` pixels (the legacy "+1"), bin ``p`` covers the pixels
``[floor(p * bin) + start, ceil((p + 1) * bin) + start)`` clipped to the map, and an empty bin
is 0.

For static shapes each bin reads ``samples_per_bin`` evenly spread pixel rows and columns:
exact (a max over every pixel of the bin) whenever a bin is at most that many pixels high and
wide — with FPN level assignment bins rarely exceed 6 pixels, so the default 8 is exact in
practice; larger bins are subsampled.
"""

from __future__ import annotations

import tensorflow as tf

from mrcnn_tf.ops.roi_align import pyramid_table, route_boxes


def _round_half_away(x: tf.Tensor) -> tf.Tensor:
    return tf.sign(x) * tf.floor(tf.abs(x) + 0.5)


def _bin_positions(start: tf.Tensor, end: tf.Tensor, size: tf.Tensor, output_size: int, samples: int):
    """Integer sample positions ``[K, P * n]`` and bin non-emptiness ``[K, P]`` along one axis."""
    length = tf.maximum(end - start + 1.0, 1.0)
    bin_size = length / float(output_size)
    p = tf.range(output_size, dtype=tf.float32)
    lo = tf.clip_by_value(tf.floor(p * bin_size[:, None]) + start[:, None], 0.0, size)
    hi = tf.clip_by_value(tf.math.ceil((p + 1.0) * bin_size[:, None]) + start[:, None], 0.0, size)
    steps = (tf.range(samples, dtype=tf.float32) + 0.5) / float(samples)
    pos = lo[..., None] + tf.floor(steps * (hi - lo)[..., None])  # [K, P, n]
    pos = tf.clip_by_value(pos, 0.0, tf.maximum(size - 1.0, 0.0)[..., None])
    return tf.cast(tf.reshape(pos, [tf.shape(pos)[0], -1]), tf.int32), hi > lo


def _pool(flat, offsets, heights, widths, boxes, scales, output_size, samples):
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    h = tf.cast(heights, tf.float32)[:, None]
    w = tf.cast(widths, tf.float32)[:, None]
    ys, y_ok = _bin_positions(
        _round_half_away(y1 * scales), _round_half_away(y2 * scales), h, output_size, samples
    )
    xs, x_ok = _bin_positions(
        _round_half_away(x1 * scales), _round_half_away(x2 * scales), w, output_size, samples
    )
    rows = offsets[:, None, None] + ys[:, :, None] * widths[:, None, None] + xs[:, None, :]
    values = tf.gather(flat, rows)  # [K, P*n, P*n, C]
    grid = tf.reshape(values, [-1, output_size, samples, output_size, samples, tf.shape(flat)[-1]])
    pooled = tf.reduce_max(grid, axis=[2, 4])
    nonempty = tf.logical_and(y_ok[:, :, None], x_ok[:, None, :])
    return tf.where(nonempty[..., None], pooled, 0.0)


def multilevel_roi_pool(
    features: list[tf.Tensor] | tuple[tf.Tensor, ...],
    boxes: tf.Tensor,
    output_size: int,
    min_level: int = 2,
    samples_per_bin: int = 8,
    canonical_size: float = 224.0,
    canonical_level: int = 4,
) -> tf.Tensor:
    """RoIPool on a pyramid (one map is a pyramid of one level); XLA friendly.

    Args:
        features: maps ``[B, H_l, W_l, C]`` for levels ``min_level, min_level + 1, ...``.
        boxes: ``[B, N, 4]`` float32 ``[y1, x1, y2, x2]`` in input-image pixels.
        output_size: bins per side.
        samples_per_bin: pixel rows/columns read per bin (see the module docstring).

    Returns:
        ``[B, N, output_size, output_size, C]`` float32.
    """
    if samples_per_bin < 1 or output_size < 1:
        raise ValueError(
            f"roi_pool needs output_size, samples_per_bin >= 1, got {output_size}, {samples_per_bin}"
        )
    batch, num = tf.shape(boxes)[0], tf.shape(boxes)[1]
    flat_boxes, index, scales, box_indices = route_boxes(
        len(features), boxes, min_level, canonical_size, canonical_level
    )
    flat, offsets, heights, widths = pyramid_table(features, index, box_indices)
    pooled = _pool(flat, offsets, heights, widths, flat_boxes, scales, int(output_size), int(samples_per_bin))
    return tf.reshape(pooled, [batch, num, output_size, output_size, tf.shape(flat)[-1]])
