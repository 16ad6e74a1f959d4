"""Inference post-processing of the box head: decode, clip, score threshold, per-class NMS, top-k."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import tensorflow as tf

from mrcnn_tf.ops import boxes as box_ops
from mrcnn_tf.ops.nms import BACKENDS as NMS_BACKENDS
from mrcnn_tf.ops.nms import per_class_nms
from mrcnn_tf.registries import DETECTION_GENERATORS


@DETECTION_GENERATORS.register(injected=("box_coder",))
class DetectionGenerator(keras.layers.Layer):
    """Final detections from box-head logits and deltas (Detectron2's ``fast_rcnn_inference``).

    Softmax over the ``K + 1`` logits; class-specific deltas decoded with ``box_coder`` and
    clipped to the image; scores ``<= score_threshold`` dropped; NMS at ``nms_iou_threshold``
    within each class; the ``max_detections`` best over all classes kept (Mask R-CNN: 0.05, 0.5,
    100).

    Args:
        score_threshold, nms_iou_threshold, max_detections: see above.
        nms_backend: ``combined`` (TF's fused per-class op, no XLA kernel) or ``padded``
            (static shapes: compiles with XLA).
        min_size: boxes (after clipping) with a side below this many input pixels are not
            detected (torchvision: 0.01; Detectron2 drops only empty boxes: 0).
        box_coder: the :class:`~mrcnn_tf.ops.boxes.BoxCoder` of the box head's deltas
            (``(10, 10, 5, 5)``); the builder passes the RoI sampler's, which encoded the targets.

    Call:
        logits: ``[B, N, K + 1]`` class logits (index 0 = background); deltas: ``[B, N, K, 4]``
        or ``[B, N, 1, 4]`` (class-agnostic) ``[dy, dx, dh, dw]``; rois: ``[B, N, 4]`` float32
        ``[y1, x1, y2, x2]`` input pixels; valid: ``[B, N]`` bool (padding proposals are never
        detected); image_size: ``[B, 2]`` float32 (height, width) boxes are clipped to;
        max_detections: optional int, fewer slots for this call only.

    Returns:
        ``boxes [B, D, 4]`` float32 ``[y1, x1, y2, x2]`` input pixels, ``scores [B, D]``,
        ``classes [B, D]`` int32 (1..K; 0 in empty slots, whose boxes and scores are 0) and
        ``num_detections [B]`` int32, sorted by score; D = ``max_detections``.
    """

    def __init__(
        self,
        score_threshold: float = 0.05,
        nms_iou_threshold: float = 0.5,
        max_detections: int = 100,
        nms_backend: str = "combined",
        box_coder: box_ops.BoxCoder | Mapping | None = None,
        min_size: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not float(min_size) >= 0.0:
            raise ValueError(f"DetectionGenerator min_size must be >= 0, got {min_size}")
        self.min_size = float(min_size)
        if not 0.0 <= float(score_threshold) < 1.0:
            raise ValueError(f"DetectionGenerator score_threshold must be in [0, 1), got {score_threshold}")
        if not 0.0 < float(nms_iou_threshold) <= 1.0:
            raise ValueError(
                f"DetectionGenerator nms_iou_threshold must be in (0, 1], got {nms_iou_threshold}"
            )
        if int(max_detections) < 1:
            raise ValueError(f"DetectionGenerator max_detections must be >= 1, got {max_detections}")
        if nms_backend not in NMS_BACKENDS:
            raise ValueError(
                f"DetectionGenerator nms_backend must be one of {NMS_BACKENDS}, got '{nms_backend}'"
            )
        self.score_threshold = float(score_threshold)
        self.nms_iou_threshold = float(nms_iou_threshold)
        self.max_detections = int(max_detections)
        self.nms_backend = nms_backend
        self.box_coder = box_ops.BoxCoder.coerce(box_coder, box_ops.BOX_HEAD_WEIGHTS)

    def call(self, logits, deltas, rois, valid, image_size, max_detections=None):
        slots = (
            self.max_detections if max_detections is None else min(int(max_detections), self.max_detections)
        )
        probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        decoded = self.box_coder.decode(deltas, tf.cast(rois, tf.float32)[:, :, None, :])
        decoded = box_ops.clip_boxes(decoded, tf.cast(image_size, tf.float32))
        scores = probs[..., 1:] * tf.cast(valid, tf.float32)[..., None]
        if self.min_size > 0:  # [B, N, K]: the class's clipped box is big enough
            sides = tf.minimum(decoded[..., 2] - decoded[..., 0], decoded[..., 3] - decoded[..., 1])
            scores = tf.where(sides >= self.min_size, scores, 0.0)
        boxes, det_scores, det_classes, count = per_class_nms(
            decoded, scores, slots, self.nms_iou_threshold, self.score_threshold, backend=self.nms_backend
        )
        present = tf.range(slots)[None, :] < count[:, None]
        return {
            "boxes": tf.where(present[..., None], boxes, 0.0),
            "scores": tf.where(present, det_scores, 0.0),
            "classes": tf.where(present, det_classes + 1, 0),
            "num_detections": count,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            score_threshold=self.score_threshold,
            nms_iou_threshold=self.nms_iou_threshold,
            max_detections=self.max_detections,
            nms_backend=self.nms_backend,
            box_coder=self.box_coder.get_config(),
            min_size=self.min_size,
        )
        return config
