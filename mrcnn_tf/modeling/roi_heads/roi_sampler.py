"""RoI head training targets: sample proposals and assign classes, boxes and masks (Girshick 2015)."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import tensorflow as tf

from mrcnn_tf.ops import boxes as box_ops
from mrcnn_tf.ops import sampling
from mrcnn_tf.registries import ROI_SAMPLERS


@ROI_SAMPLERS.register(injected=("box_coder",))
class RoISampler(keras.layers.Layer):
    """Sample ``num_samples`` RoIs per image (512) with up to ``positive_fraction`` (25%) positives.

    The ground-truth boxes are appended to the proposals (``add_gt_boxes``), so every GT box
    has at least one positive RoI. An RoI is foreground when its best IoU with a GT box is
    ``>= positive_threshold`` (0.5) and background below ``negative_threshold`` (0.5).
    Positives come first: the first ``max_positives`` slots hold every sampled positive, so
    the mask head trains on exactly those slots (fixed shapes, as in TF Model Garden).

    Args:
        num_samples, positive_fraction, positive_threshold, negative_threshold, add_gt_boxes:
            see above.
        box_coder: the :class:`~mrcnn_tf.ops.boxes.BoxCoder` of the box targets (``(10, 10, 5, 5)``);
            the builder passes the detection generator's, which decodes
            the box head's output with the same weights.

    Call:
        proposals: ``[B, P, 4]`` float32 ``[y1, x1, y2, x2]``; proposal_valid: ``[B, P]`` bool.
        gt_boxes: ``[B, G, 4]`` float32, padded; gt_classes: ``[B, G]`` int32, 1..K, 0 = padding.

    Returns:
        A dict of ``[B, S, ...]`` tensors (S = num_samples): ``rois`` float32 boxes,
        ``classes`` int32 (0 = background), ``box_targets`` float32 deltas (zero for
        background), ``matched`` int32 GT index, ``positive`` and ``valid`` bool.
    """

    def __init__(
        self,
        num_samples: int = 512,
        positive_fraction: float = 0.25,
        positive_threshold: float = 0.5,
        negative_threshold: float = 0.5,
        add_gt_boxes: bool = True,
        box_coder: box_ops.BoxCoder | Mapping | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if negative_threshold > positive_threshold:
            raise ValueError(
                f"RoISampler needs negative_threshold <= positive_threshold, got "
                f"{negative_threshold} > {positive_threshold}"
            )
        if num_samples < 1 or not 0.0 < positive_fraction <= 1.0:
            raise ValueError("RoISampler needs num_samples >= 1 and 0 < positive_fraction <= 1")
        self.num_samples = int(num_samples)
        self.positive_fraction = float(positive_fraction)
        self.positive_threshold = float(positive_threshold)
        self.negative_threshold = float(negative_threshold)
        self.add_gt_boxes = bool(add_gt_boxes)
        self.box_coder = box_ops.BoxCoder.coerce(box_coder, box_ops.BOX_HEAD_WEIGHTS)

    @property
    def max_positives(self) -> int:
        """Slots that can hold positives (the mask head's RoIs per image in training)."""
        return max(int(self.num_samples * self.positive_fraction), 1)

    def call(self, proposals, proposal_valid, gt_boxes, gt_classes, seeds=None):
        gt_boxes = tf.cast(gt_boxes, tf.float32)
        gt_classes = tf.cast(gt_classes, tf.int32)
        gt_valid = gt_classes > 0
        boxes = tf.cast(proposals, tf.float32)
        valid = tf.logical_and(proposal_valid, box_ops.box_area(boxes) > 0.0)
        if self.add_gt_boxes:
            boxes = tf.concat([boxes, gt_boxes], axis=1)
            valid = tf.concat([valid, gt_valid], axis=1)
        matched, max_iou, _ = sampling.match_boxes(boxes, gt_boxes, gt_valid)
        labels = sampling.label_by_iou(max_iou, self.positive_threshold, self.negative_threshold)
        labels = tf.where(valid, labels, sampling.IGNORE)
        indices, positive, sampled = sampling.balanced_sample(
            labels, self.num_samples, self.positive_fraction, seeds
        )
        rois = tf.gather(boxes, indices, batch_dims=1)
        matched = tf.gather(matched, indices, batch_dims=1)
        classes = tf.where(positive, tf.gather(gt_classes, matched, batch_dims=1), 0)
        targets = self.box_coder.encode(tf.gather(gt_boxes, matched, batch_dims=1), rois)
        targets = tf.where(positive[..., None], targets, 0.0)
        return {
            "rois": tf.stop_gradient(rois),
            "classes": classes,
            "box_targets": targets,
            "matched": matched,
            "positive": positive,
            "valid": sampled,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            num_samples=self.num_samples,
            positive_fraction=self.positive_fraction,
            positive_threshold=self.positive_threshold,
            negative_threshold=self.negative_threshold,
            add_gt_boxes=self.add_gt_boxes,
            box_coder=self.box_coder.get_config(),
        )
        return config
