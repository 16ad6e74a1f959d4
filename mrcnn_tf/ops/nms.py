"""Per-class NMS for detections, with static shapes (XLA/TPU) or TF's fused op (GPU/CPU)."""

from __future__ import annotations

import tensorflow as tf

BACKENDS = ("combined", "padded")

try:  # the Python body of tf.image.non_max_suppression_padded's inner tf.function
    from tensorflow.python.ops.image_ops_impl import non_max_suppression_padded_v2 as _tf_padded_v2

    _PADDED_BODY = _tf_padded_v2.python_function
except (ImportError, AttributeError):  # another TF layout: use the public function
    _PADDED_BODY = None


def padded_nms(
    boxes: tf.Tensor, scores: tf.Tensor, max_output_size: int, iou_threshold: float, score_threshold: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """``tf.image.non_max_suppression_padded(..., pad_to_max_output_size=True, sorted_input=True)``.

    Args:
        boxes: ``[..., N, 4]`` float32 ``[y1, x1, y2, x2]``, sorted by score (best first).
        scores: ``[..., N]`` float32, descending.
        max_output_size: slots per problem (static).

    Returns:
        ``(indices [..., max_output_size] int32, count [...] int32)``: indices into N of the
        kept boxes, best first; slots past ``count`` hold 0.

    Inside a ``tf.function`` the body of TF's own function is traced inline rather than
    called: TF's is a ``tf.function`` with AutoGraph on, and converting it is ~1 s of every
    process's first model call (and each call site traced it again). Same ops, same results;
    a LiteRT export has the same ops either way (TF 2.21's converter does not fuse TF's function
    into its NMS builtin; the file is ~4 % larger with the loops inlined).
    """
    if _PADDED_BODY is None or tf.executing_eagerly():
        return tf.image.non_max_suppression_padded(
            boxes,
            scores,
            max_output_size=max_output_size,
            iou_threshold=iou_threshold,
            score_threshold=score_threshold,
            pad_to_max_output_size=True,
            sorted_input=True,
        )
    with tf.name_scope("non_max_suppression_padded"):
        index, count = _PADDED_BODY(boxes, scores, max_output_size, iou_threshold, score_threshold, True)
        shape = tf.concat([tf.shape(boxes)[:-2], [max_output_size]], 0)
        return tf.reshape(index, shape), count


def per_class_nms(
    boxes: tf.Tensor,
    scores: tf.Tensor,
    max_detections: int,
    iou_threshold: float,
    score_threshold: float,
    backend: str = "combined",
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Score threshold, NMS within each class, then the best ``max_detections`` over all classes.

    Args:
        boxes: ``[B, N, K, 4]`` float32 ``[y1, x1, y2, x2]`` per class (K may be 1: shared boxes).
        scores: ``[B, N, K]`` float32 per-class scores (background excluded).
        max_detections: D, detections kept per image (and at most per class).
        iou_threshold: a box is suppressed by a better one of its class with IoU above this.
        score_threshold: boxes scoring at or below this are dropped first (0.05 in the paper).
        backend: ``combined`` (``tf.image.combined_non_max_suppression``, fast, no XLA kernel)
            or ``padded`` (``tf.image.non_max_suppression_padded`` per class, compiles with XLA).

    Returns:
        ``(boxes [B, D, 4], scores [B, D], classes [B, D] int32 in 0..K-1, count [B] int32)``
        sorted by score; slots past ``count`` hold zeros.
    """
    if backend not in BACKENDS:
        raise ValueError(f"per_class_nms backend must be one of {BACKENDS}, got '{backend}'")
    if backend == "combined":
        out = tf.image.combined_non_max_suppression(
            boxes,
            scores,
            max_output_size_per_class=max_detections,
            max_total_size=max_detections,
            iou_threshold=iou_threshold,
            score_threshold=score_threshold,
            pad_per_class=False,
            clip_boxes=False,
        )
        present = tf.range(max_detections)[None, :] < out.valid_detections[:, None]
        classes = tf.where(present, tf.cast(out.nmsed_classes, tf.int32), 0)
        return out.nmsed_boxes, out.nmsed_scores, classes, out.valid_detections
    batch = tf.shape(scores)[0]
    n, k = scores.shape[1], scores.shape[2]
    if n is None or k is None:
        raise ValueError("per_class_nms(backend='padded') needs static numbers of boxes and classes")
    per_class = min(max_detections, n)
    boxes = tf.broadcast_to(boxes, tf.stack([batch, n, k, 4]))
    # [B, N, K] -> [B * K, N]: one NMS problem per image and class.
    flat_scores = tf.reshape(tf.transpose(scores, [0, 2, 1]), [-1, n])
    flat_boxes = tf.reshape(tf.transpose(boxes, [0, 2, 1, 3]), [-1, n, 4])
    flat_scores = tf.where(flat_scores > score_threshold, flat_scores, -1.0)
    order_scores, order = tf.math.top_k(flat_scores, k=n)
    ordered_boxes = tf.gather(flat_boxes, order, batch_dims=1)
    keep, kept = padded_nms(ordered_boxes, order_scores, per_class, iou_threshold, 0.0)
    valid = tf.range(per_class)[None, :] < kept[:, None]
    cls_scores = tf.where(valid, tf.gather(order_scores, keep, batch_dims=1), -1.0)
    cls_boxes = tf.gather(ordered_boxes, keep, batch_dims=1)
    cls_ids = tf.tile(tf.range(k)[:, None], [1, per_class])  # [K, per_class]
    cls_scores = tf.reshape(cls_scores, [batch, k * per_class])
    cls_boxes = tf.reshape(cls_boxes, [batch, k * per_class, 4])
    cls_ids = tf.tile(tf.reshape(cls_ids, [1, -1]), [batch, 1])
    total = min(max_detections, k * per_class)
    top_scores, index = tf.math.top_k(cls_scores, k=total)
    present = top_scores > 0.0
    out_boxes = tf.where(present[..., None], tf.gather(cls_boxes, index, batch_dims=1), 0.0)
    out_classes = tf.where(present, tf.gather(cls_ids, index, batch_dims=1), 0)
    out_scores = tf.where(present, top_scores, 0.0)
    count = tf.reduce_sum(tf.cast(present, tf.int32), axis=1)
    if total < max_detections:
        pad = [[0, 0], [0, max_detections - total]]
        out_boxes = tf.pad(out_boxes, [*pad, [0, 0]])
        out_scores, out_classes = tf.pad(out_scores, pad), tf.pad(out_classes, pad)
    return out_boxes, out_scores, out_classes, count
