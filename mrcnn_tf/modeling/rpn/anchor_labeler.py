"""RPN training targets: label anchors by IoU and sample a balanced minibatch (Ren et al. 2015)."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import tensorflow as tf

from mrcnn_tf.ops import boxes as box_ops
from mrcnn_tf.ops import sampling
from mrcnn_tf.registries import ANCHOR_LABELERS


@ANCHOR_LABELERS.register(injected=("box_coder",))
class AnchorLabeler(keras.layers.Layer):
    """Objectness and box targets for a random, balanced sample of anchors per image.

    An anchor is positive if its best IoU with a ground-truth box is ``>= positive_threshold``
    (0.7), negative if it is ``< negative_threshold`` (0.3), ignored in between; with
    ``allow_low_quality_matches`` the anchors with each GT box's highest IoU are positive too.
    ``num_samples`` (256) anchors are sampled per image, at most ``positive_fraction`` (half)
    of them positive. Anchors crossing the image border are kept (Detectron2's default).

    Args:
        positive_threshold, negative_threshold, allow_low_quality_matches, num_samples,
        positive_fraction: see above.
        box_coder: the :class:`~mrcnn_tf.ops.boxes.BoxCoder` of the targets (``(1, 1, 1, 1)``);
            the builder passes the proposal generator's, so that both use the same.

    Call:
        anchors: ``[N, 4]`` float32 ``[y1, x1, y2, x2]`` input pixels (all levels, concatenated).
        gt_boxes: ``[B, G, 4]`` float32, padded; gt_valid: ``[B, G]`` bool.

    Returns:
        A dict: ``indices [B, S]`` int32 anchors sampled (S = num_samples), ``positive
        [B, S]`` and ``valid [B, S]`` bool, ``box_targets [B, S, 4]`` float32 deltas (zero for
        non-positives).
    """

    def __init__(
        self,
        positive_threshold: float = 0.7,
        negative_threshold: float = 0.3,
        allow_low_quality_matches: bool = True,
        num_samples: int = 256,
        positive_fraction: float = 0.5,
        box_coder: box_ops.BoxCoder | Mapping | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if negative_threshold > positive_threshold:
            raise ValueError(
                f"AnchorLabeler needs negative_threshold <= positive_threshold, got "
                f"{negative_threshold} > {positive_threshold}"
            )
        if num_samples < 1 or not 0.0 <= positive_fraction <= 1.0:
            raise ValueError("AnchorLabeler needs num_samples >= 1 and 0 <= positive_fraction <= 1")
        self.positive_threshold = float(positive_threshold)
        self.negative_threshold = float(negative_threshold)
        self.allow_low_quality_matches = bool(allow_low_quality_matches)
        self.num_samples = int(num_samples)
        self.positive_fraction = float(positive_fraction)
        self.box_coder = box_ops.BoxCoder.coerce(box_coder, box_ops.RPN_WEIGHTS)

    def call(self, anchors, gt_boxes, gt_valid, seeds=None):
        gt_boxes = tf.cast(gt_boxes, tf.float32)
        batch = tf.shape(gt_boxes)[0]
        tiled = tf.tile(tf.cast(anchors, tf.float32)[None], [batch, 1, 1])
        matched, max_iou, iou = sampling.match_boxes(tiled, gt_boxes, gt_valid)
        labels = sampling.label_by_iou(
            max_iou, self.positive_threshold, self.negative_threshold, iou, self.allow_low_quality_matches
        )
        indices, positive, valid = sampling.balanced_sample(
            labels, self.num_samples, self.positive_fraction, seeds
        )
        sampled_anchors = tf.gather(tf.cast(anchors, tf.float32), indices)
        matched_gt = tf.gather(gt_boxes, tf.gather(matched, indices, batch_dims=1), batch_dims=1)
        targets = self.box_coder.encode(matched_gt, sampled_anchors)
        targets = tf.where(positive[..., None], targets, 0.0)
        return {"indices": indices, "positive": positive, "valid": valid, "box_targets": targets}

    def get_config(self):
        config = super().get_config()
        config.update(
            positive_threshold=self.positive_threshold,
            negative_threshold=self.negative_threshold,
            allow_low_quality_matches=self.allow_low_quality_matches,
            num_samples=self.num_samples,
            positive_fraction=self.positive_fraction,
            box_coder=self.box_coder.get_config(),
        )
        return config
