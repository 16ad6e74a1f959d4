"""COCO compressed RLE read in the TensorFlow graph: decompress and sample at box cells.

The graph twin of :mod:`mrcnn_tf.data.rle` (same run format, same float64 cell-centre rule),
so TFRecords that carry RLE masks give exactly the masks the COCO reader gives, without
decoding a full-image mask and without Python in the input pipeline.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["crop_rle_strings", "decompress_counts"]


def decompress_counts(counts: tf.Tensor) -> tf.Tensor:
    """int64 ``[R]`` run lengths of one compressed COCO RLE string (scalar ``tf.string``)."""
    c = tf.cast(tf.io.decode_raw(counts, tf.uint8), tf.int64) - 48
    last = tf.equal(tf.bitwise.bitwise_and(c, 0x20), 0)
    group = tf.cumsum(tf.cast(last, tf.int64), exclusive=True)
    starts = tf.where(tf.concat([[True], last[:-1]], 0))[:, 0]
    k = tf.range(tf.size(c, out_type=tf.int64)) - tf.gather(starts, group)
    num = tf.size(starts)
    digits = tf.bitwise.left_shift(tf.bitwise.bitwise_and(c, 0x1F), 5 * k)
    values = tf.math.unsorted_segment_sum(digits, group, num)
    negative = last & tf.not_equal(tf.bitwise.bitwise_and(c, 0x10), 0)
    sign = tf.where(negative, tf.bitwise.left_shift(tf.ones_like(k), 5 * (k + 1)), 0)
    values -= tf.math.unsorted_segment_sum(sign, group, num)
    # runs 3, 4, ... are deltas to the run two places back (pycocotools: ``if (m > 2)``)
    even = tf.concat([values[:1], tf.cumsum(values[2::2])], 0)
    odd = tf.cumsum(values[1::2])
    odd = tf.pad(odd, [[0, tf.size(even) - tf.size(odd)]])
    return tf.reshape(tf.stack([even, odd], 1), [-1])[:num]


def _cell_pixels(start, stop, size: int, limit):
    centres = tf.range(size, dtype=tf.float64) + 0.5
    pos = tf.floor(start + centres * ((stop - start) / size))
    return tf.clip_by_value(tf.cast(pos, tf.int64), 0, limit - 1)


def crop_rle_strings(counts: tf.Tensor, boxes: tf.Tensor, height, width, size: int) -> tf.Tensor:
    """Crop compressed RLE masks to their boxes at ``size × size`` (the pixel under each cell centre).

    Args:
        counts: ``tf.string`` ``[G]`` compressed RLE strings of ``height × width`` masks.
        boxes: float64 ``[G, 4]`` ``[y1, x1, y2, x2]`` pixels.
        height, width: the image size.

    Returns:
        uint8 ``[G, S, S]`` of 0/1, equal to :func:`mrcnn_tf.data.rle.crop_rle`.
    """
    h, w = tf.cast(height, tf.int64), tf.cast(width, tf.int64)

    def one(args):
        string, box = args
        ends = tf.cumsum(decompress_counts(string))
        rows = _cell_pixels(box[0], box[2], size, h)
        cols = _cell_pixels(box[1], box[3], size, w)
        flat = tf.reshape(cols[None, :] * h + rows[:, None], [-1])
        run = tf.searchsorted(ends, flat, side="right", out_type=tf.int64)
        return tf.cast(tf.reshape(run % 2, [size, size]), tf.uint8)

    return tf.map_fn(
        one, (counts, tf.cast(boxes, tf.float64)), fn_output_signature=tf.TensorSpec([size, size], tf.uint8)
    )
