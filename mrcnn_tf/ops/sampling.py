"""IoU matching and balanced sampling with static shapes (for RPN anchors and RoIs).

Everything is batched over images and padded: ground truth comes as ``[B, G, ...]`` with a
validity mask, and a sample is a fixed number of indices per image, positives first, so that
the graph compiles with XLA and runs under ``tf.distribute`` unchanged.
"""

from __future__ import annotations

import tensorflow as tf

from mrcnn_tf.ops.boxes import pairwise_iou

#: Label values: positive, negative, ignored.
POSITIVE, NEGATIVE, IGNORE = 1, 0, -1


def match_boxes(
    boxes: tf.Tensor, gt_boxes: tf.Tensor, gt_valid: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Match every box to the ground-truth box it overlaps most.

    Args:
        boxes: ``[B, N, 4]`` float32 ``[y1, x1, y2, x2]``.
        gt_boxes: ``[B, G, 4]`` float32, padded.
        gt_valid: ``[B, G]`` bool, False for padding.

    Returns:
        ``(matched [B, N] int32, max_iou [B, N] float32, iou [B, N, G] float32)``; padded GT
        columns have IoU -1 so they never match, and an image without ground truth has
        ``max_iou = -1`` everywhere (every box is background).
    """
    iou = pairwise_iou(boxes, gt_boxes)
    iou = tf.where(gt_valid[:, None, :], iou, -1.0)
    if iou.shape[-1] == 0:  # no ground-truth slots at all
        shape = tf.shape(boxes)[:2]
        return tf.zeros(shape, tf.int32), -tf.ones(shape), iou
    return tf.argmax(iou, axis=-1, output_type=tf.int32), tf.reduce_max(iou, axis=-1), iou


def label_by_iou(
    max_iou: tf.Tensor,
    positive_threshold: float,
    negative_threshold: float,
    iou: tf.Tensor | None = None,
    allow_low_quality_matches: bool = False,
) -> tf.Tensor:
    """Labels ``[B, N]`` int32: 1 if ``max_iou >= positive_threshold``, 0 if below
    ``negative_threshold``, -1 (ignored) in between (Detectron2's ``Matcher``).

    With ``allow_low_quality_matches`` (the RPN's rule, Ren et al. 2015), the boxes that reach
    a ground-truth box's highest IoU (ties included) are positive as well, so every GT box
    has an anchor; a GT box that overlaps nothing (highest IoU 0) adds none. ``iou`` is the
    ``[B, N, G]`` matrix from :func:`match_boxes` (needed for that rule).
    """
    labels = tf.where(
        max_iou >= positive_threshold,
        POSITIVE,
        tf.where(max_iou < negative_threshold, NEGATIVE, IGNORE),
    )
    if allow_low_quality_matches:
        if iou is None:
            raise ValueError("label_by_iou(allow_low_quality_matches=True) needs the iou matrix")
        best_per_gt = tf.reduce_max(iou, axis=1, keepdims=True)  # [B, 1, G]
        is_best = tf.logical_and(tf.equal(iou, best_per_gt), best_per_gt > 0.0)
        labels = tf.where(tf.reduce_any(is_best, axis=-1), POSITIVE, labels)
    return tf.cast(labels, tf.int32)


def row_uniform(shape: tf.Tensor, seeds: tf.Tensor | None) -> tf.Tensor:
    """Uniform [0, 1) values ``[B, N]``; row ``b`` is a pure function of ``seeds[b]`` when given.

    With per-example seeds the sampling of an image does not depend on which other images
    share its batch or replica, so training is reproducible across replica counts.
    """
    if seeds is None:
        return tf.random.uniform(shape, 0.0, 1.0)
    seeds = tf.cast(seeds, tf.int32)
    return tf.map_fn(
        lambda seed: tf.random.stateless_uniform(shape[1:], seed=seed),
        seeds,
        fn_output_signature=tf.float32,
    )


def balanced_sample(
    labels: tf.Tensor, num_samples: int, positive_fraction: float, seeds: tf.Tensor | None = None
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Pick ``num_samples`` of each image's labelled boxes at random, positives first.

    At most ``int(num_samples * positive_fraction)`` positives are taken; negatives fill the
    rest (Detectron2's ``subsample_labels``). When an image has too few candidates the tail
    slots are marked invalid.

    Args:
        labels: ``[B, N]`` int32 from :func:`label_by_iou` (1, 0 or -1).
        num_samples: samples per image (256 anchors for the RPN, 512 RoIs for the heads).
        positive_fraction: the largest share of positives (0.5 RPN, 0.25 heads).
        seeds: optional int32 ``[B, 2]`` per-image seeds (see :func:`row_uniform`).

    Returns:
        ``(indices [B, S] int32, positive [B, S] bool, valid [B, S] bool)`` with
        ``S = min(num_samples, N)`` (``S = num_samples`` when ``N`` is not static);
        positives occupy the first slots; invalid slots may hold any in-range index.
    """
    n = labels.shape[1]
    dynamic = n is None
    if dynamic:  # N unknown when traced (any image size): pad with ignored candidates
        extra = tf.maximum(int(num_samples) - tf.shape(labels)[1], 0)
        labels = tf.pad(labels, [[0, 0], [0, extra]], constant_values=IGNORE)
        n = int(num_samples)
    num_samples = min(int(num_samples), n)
    max_pos = min(int(num_samples * positive_fraction), n)
    rand = row_uniform(tf.shape(labels), seeds)
    is_pos = tf.equal(labels, POSITIVE)
    is_neg = tf.equal(labels, NEGATIVE)
    batch = tf.shape(labels)[0]
    if max_pos > 0:
        pos_key, pos_index = tf.math.top_k(tf.where(is_pos, rand, -1.0), k=max_pos)
        rows = tf.repeat(tf.range(batch), max_pos)
        scatter = tf.stack([rows, tf.reshape(pos_index, [-1])], axis=1)
        chosen = tf.scatter_nd(scatter, tf.reshape(tf.cast(pos_key >= 0.0, tf.int32), [-1]), tf.shape(labels))
        take_pos = tf.logical_and(is_pos, chosen > 0)
    else:
        take_pos = tf.zeros_like(is_pos)
    key = tf.where(take_pos, 2.0 + rand, tf.where(is_neg, rand, -1.0))
    values, indices = tf.math.top_k(key, k=num_samples)
    valid = values >= 0.0
    if dynamic:  # an invalid slot may point into the padding: point it at candidate 0 instead
        indices = tf.where(valid, indices, 0)
    return indices, values >= 2.0, valid
