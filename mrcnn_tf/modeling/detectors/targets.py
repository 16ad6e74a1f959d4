"""Training-time glue of the detector: gather predictions at their targets, and the losses.

Each ``*_outputs`` function returns a flat dict of tensors (the detector's training outputs);
:func:`losses` turns them into the five normalised losses of Mask R-CNN.
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf

from mrcnn_tf.ops.keypoints import keypoint_targets
from mrcnn_tf.ops.masks import crop_mask_targets


def _levels(d: Mapping[str, tf.Tensor]) -> list[str]:
    return sorted(d, key=lambda k: int(k[1:]))


def seeded_kwargs(seeds, salt: int) -> dict:
    """``{"seeds": ...}``: per-example seeds ``[B, 2]`` folded with ``salt`` (none when None).

    Anchor labelers and RoI samplers take ``seeds`` (their role's contract; the builder
    checks it when the model is built).
    """
    if seeds is None:
        return {}
    seeds = tf.cast(seeds, tf.int32)
    return {"seeds": tf.map_fn(lambda s: tf.random.experimental.stateless_fold_in(s, salt), seeds)}


def rpn_outputs(
    labeler, anchors, objectness, deltas, gt_boxes, gt_classes, seeds=None
) -> dict[str, tf.Tensor]:
    """RPN predictions at the sampled anchors and their targets.

    Args:
        labeler: the anchor labeler; anchors ``{level: [N_l, 4]}``; objectness
            ``{level: [B, N_l]}``; deltas ``{level: [B, N_l, 4]}``; gt_boxes ``[B, G, 4]``;
            gt_classes ``[B, G]`` (0 = padding); seeds: optional int32 ``[B, 2]`` per-example
            sampling seeds.

    Returns:
        ``rpn_logits [B, S]``, ``rpn_deltas [B, S, 4]``, ``rpn_box_targets [B, S, 4]``,
        ``rpn_positive [B, S]`` and ``rpn_valid [B, S]`` (S anchors sampled per image).
    """
    keys = _levels(anchors)
    targets = labeler(
        tf.concat([anchors[k] for k in keys], axis=0),
        gt_boxes,
        gt_classes > 0,
        **seeded_kwargs(seeds, 1),
    )
    logits = tf.concat([tf.cast(objectness[k], tf.float32) for k in keys], axis=1)
    box_deltas = tf.concat([tf.cast(deltas[k], tf.float32) for k in keys], axis=1)
    return {
        "rpn_logits": tf.gather(logits, targets["indices"], batch_dims=1),
        "rpn_deltas": tf.gather(box_deltas, targets["indices"], batch_dims=1),
        "rpn_box_targets": targets["box_targets"],
        "rpn_positive": targets["positive"],
        "rpn_valid": targets["valid"],
    }


def select_class(per_class: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """Pick each RoI's class slice from class-last predictions.

    Args:
        per_class: ``[B, N, ..., K']`` with K' = K (class-specific) or 1 (class-agnostic).
        classes: ``[B, N]`` int32 in 1..K (0, background, reads class 1's slice; callers mask it).

    Returns:
        ``[B, N, ...]``.
    """
    k = per_class.shape[-1]
    if k == 1:
        return per_class[..., 0]
    index = tf.clip_by_value(classes - 1, 0, k - 1)
    one_hot = tf.one_hot(index, k, dtype=per_class.dtype)
    rank = per_class.shape.rank
    one_hot = tf.reshape(one_hot, tf.concat([tf.shape(one_hot)[:2], [1] * (rank - 3), [k]], axis=0))
    return tf.reduce_sum(per_class * one_hot, axis=-1)


def box_outputs(head: Mapping[str, tf.Tensor], samples: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Box head predictions for the sampled RoIs with their class and box targets."""
    deltas = tf.cast(head["deltas"], tf.float32)  # [B, S, K', 4]
    return {
        "box_logits": tf.cast(head["logits"], tf.float32),
        "box_classes": samples["classes"],
        "box_deltas": select_class(tf.transpose(deltas, [0, 1, 3, 2]), samples["classes"]),
        "box_targets": samples["box_targets"],
        "box_positive": samples["positive"],
        "box_valid": samples["valid"],
    }


def mask_outputs(
    mask_logits, samples, m: int | tf.Tensor, mask_boxes, gt_masks, loss=None
) -> dict[str, tf.Tensor]:
    """Mask logits of the GT class for the first ``m`` sampled RoIs (the positives) and targets.

    Args:
        m: the slots the mask head ran on (an int, or an int32 scalar when it runs only on the
            slots up to the batch's largest number of positives).
        mask_logits: ``[B, m, M, M, K']``; samples: the RoI sampler's dict; mask_boxes
            ``[B, G, 4]`` the boxes the masks are cropped to; gt_masks ``[B, G, S, S]``;
            loss: the mask loss. When it is ``class_coupled`` (a softmax across classes), the
            outputs keep all K' channels ``[B, m, M, M, K']`` and the targets are the loss's
            distribution ``[B, m, M, M, K' + 1]`` instead of the GT channel and binary targets.
    """
    classes = samples["classes"][:, :m]
    matched = samples["matched"][:, :m]
    size = mask_logits.shape[2]
    targets = crop_mask_targets(
        tf.gather(tf.cast(gt_masks, tf.float32), matched, batch_dims=1),
        tf.gather(mask_boxes, matched, batch_dims=1),
        samples["rois"][:, :m],
        size,
    )
    logits = tf.cast(mask_logits, tf.float32)
    if getattr(loss, "class_coupled", False):
        targets = loss.targets(targets, classes, logits.shape[-1])
    else:
        logits = select_class(logits, classes)
    return {
        "mask_logits": logits,
        "mask_targets": tf.stop_gradient(targets),
        "mask_positive": samples["positive"][:, :m],
    }


def keypoint_outputs(heatmaps, samples, m: int | tf.Tensor, gt_keypoints) -> dict[str, tf.Tensor]:
    """Heatmap logits of the first ``m`` sampled RoIs (the positives) and their targets.

    Args:
        heatmaps: ``[B, m, S, S, K]`` keypoint head logits; samples: the RoI sampler's dict;
            gt_keypoints: ``[B, G, K, 3]`` ``(x, y, v)`` of each ground-truth instance.

    Returns:
        ``keypoint_logits [B, m, K, S²]``, ``keypoint_targets [B, m, K]`` (the cell of each
        keypoint of the matched instance, :func:`~mrcnn_tf.ops.keypoints.keypoint_targets`) and
        ``keypoint_valid [B, m, K]``: a positive RoI's labelled keypoint inside it.
    """
    size = heatmaps.shape[2]
    logits = tf.transpose(tf.cast(heatmaps, tf.float32), [0, 1, 4, 2, 3])  # [B, m, K, S, S]
    logits = tf.reshape(logits, tf.concat([tf.shape(logits)[:3], [size * size]], 0))
    matched = tf.gather(tf.cast(gt_keypoints, tf.float32), samples["matched"][:, :m], batch_dims=1)
    index, valid = keypoint_targets(matched, samples["rois"][:, :m], size)
    valid = valid & samples["positive"][:, :m, None]
    return {
        "keypoint_logits": logits,
        "keypoint_targets": tf.stop_gradient(index),
        "keypoint_valid": tf.stop_gradient(valid),
    }


def _normaliser(count: tf.Tensor) -> tf.Tensor:
    """The global normaliser ``max(sum of count over replicas, 1)``, shared out: ``/ R``.

    With R replicas, each replica's term ``sum_r / (N / R)`` averages over the replicas to the
    loss of the whole batch ``sum / N`` (what the metric trackers show), and ``compute_loss``
    divides the total by R for Keras, which sums the replicas' gradients: the update equals
    that of one device with the whole batch. (Detectron2 normalises per GPU instead, which
    weighs images differently depending on how the batch is split.)
    """
    count = tf.stop_gradient(tf.cast(count, tf.float32))
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tf.maximum(count, 1.0)
    total = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return tf.maximum(total, 1.0) / float(context.num_replicas_in_sync)


def losses(loss_fns: Mapping[str, object], out: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """The Mask R-CNN losses, each normalised as Detectron2 does.

    * RPN objectness and box: sums over the sampled anchors (box: positives only) divided by
      the anchors per image times the images (``S * B``).
    * Box classification and regression: sums over the sampled RoIs (regression: positives,
      GT class's deltas) divided by the number of sampled RoIs.
    * Mask: per-pixel BCE on the GT class's channel, averaged over the pixels of positive RoIs.
    * Keypoint (when the outputs have ``keypoint_logits``): cross-entropy of each heatmap's
      spatial softmax at the keypoint's cell, averaged over the labelled keypoints inside
      positive RoIs (Detectron2's ``NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS``).

    Every normaliser is at least 1, so an image without positives gives finite losses, and
    under ``tf.distribute`` the normalisers are global over the replicas (see :func:`_normaliser`).
    """
    f32 = tf.float32
    rpn_valid = tf.cast(out["rpn_valid"], f32)
    rpn_pos = tf.cast(out["rpn_positive"], f32)
    rpn_norm = _normaliser(tf.size(rpn_valid))
    box_valid = tf.cast(out["box_valid"], f32)
    box_pos = tf.cast(out["box_positive"], f32)
    box_norm = _normaliser(tf.reduce_sum(box_valid))
    terms = {
        "rpn_objectness": loss_fns["rpn_objectness"](rpn_pos, out["rpn_logits"], sample_weight=rpn_valid)
        / rpn_norm,
        "rpn_box": loss_fns["rpn_box"](out["rpn_box_targets"], out["rpn_deltas"], sample_weight=rpn_pos)
        / rpn_norm,
        "box_cls": loss_fns["box_cls"](out["box_classes"], out["box_logits"], sample_weight=box_valid)
        / box_norm,
        "box_reg": loss_fns["box_reg"](out["box_targets"], out["box_deltas"], sample_weight=box_pos)
        / box_norm,
    }
    if "mask_logits" in out:
        pixels = tf.convert_to_tensor(out["mask_logits"])  # [B, m, M, M], or [..., K'] (class-coupled)
        pixels = pixels if pixels.shape.rank == 4 else pixels[..., 0]
        mask_pos = tf.cast(out["mask_positive"], f32)[..., None, None] * tf.ones_like(pixels)
        terms["mask"] = loss_fns["mask"](out["mask_targets"], out["mask_logits"], sample_weight=mask_pos) / (
            _normaliser(tf.reduce_sum(mask_pos))
        )
    if "keypoint_logits" in out:
        visible = tf.cast(out["keypoint_valid"], f32)
        terms["keypoint"] = loss_fns["keypoint"](
            out["keypoint_targets"], out["keypoint_logits"], sample_weight=visible
        ) / _normaliser(tf.reduce_sum(visible))
    return terms
