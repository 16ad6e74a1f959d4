"""Mask R-CNN (He et al. 2017) as a Keras model assembled from registered components."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from mrcnn_tf.modeling.detectors import targets as target_ops
from mrcnn_tf.ops import boxes as box_ops
from mrcnn_tf.ops.nms import BACKENDS as NMS_BACKENDS
from mrcnn_tf.ops.nms import per_class_nms
from mrcnn_tf.registries import (
    ANCHOR_GENERATORS,
    ANCHOR_LABELERS,
    BACKBONES,
    BOX_HEADS,
    DETECTORS,
    LOSSES,
    MASK_HEADS,
    NECKS,
    PROPOSAL_GENERATORS,
    ROI_ALIGNERS,
    ROI_SAMPLERS,
    RPN_HEADS,
)

#: Constructor arguments that hold a component layer (serialized as nested Keras objects).
COMPONENTS = (
    "backbone",
    "neck",
    "anchor_generator",
    "rpn_head",
    "proposal_generator",
    "anchor_labeler",
    "box_roi_aligner",
    "roi_sampler",
    "box_head",
    "mask_roi_aligner",
    "mask_head",
)
LOSS_NAMES = ("rpn_objectness", "rpn_box", "box_cls", "box_reg", "mask")
MASK_SLOTS = ("used", "all")
#: torchvision's ImageNet statistics for RGB images in [0, 255].
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


class _LastValue(keras.metrics.Metric):
    """A metric that shows the last value it was given (the learning rate in the progress bar)."""

    def __init__(self, name: str = "learning_rate", **kwargs):
        super().__init__(name=name, **kwargs)
        self.value = self.add_variable(shape=(), initializer="zeros", name="value", aggregation="mean")

    def update_state(self, value):
        self.value.assign(keras.ops.cast(value, self.dtype))

    def result(self):
        return self.value


def _build(registry, spec, **offers):
    """Build ``spec``, passing those ``offers`` the entry declares as injected."""
    if isinstance(spec, (str, Mapping)):
        name = spec if isinstance(spec, str) else spec.get("type")
        if name is not None:
            injected = registry.entry(name).injected
            return registry.build(spec, **{k: v for k, v in offers.items() if k in injected})
    return registry.build(spec)


def _used_slots(used: tf.Tensor) -> tf.Tensor:
    """int32 scalar: the largest number of used slots in a row of ``used`` ``[B, N]`` bool, >= 1.

    Used slots come first in every row (the sampler puts positives first, NMS fills the
    detections from slot 0), so ``[:, :n]`` keeps every used slot of the batch. At least one
    slot, so that the mask head never gets an empty batch.
    """
    return tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(used, tf.int32), axis=1)), 1)


def _inside_mask(image_size: tf.Tensor, shape: tf.Tensor) -> tf.Tensor:
    """float32 ``[B, H, W, 1]``: 1 on each image's valid ``image_size`` region, 0 on padding."""
    rows = tf.cast(tf.range(shape[1]), tf.float32)[None, :, None]
    cols = tf.cast(tf.range(shape[2]), tf.float32)[None, None, :]
    inside = (rows < image_size[:, 0, None, None]) & (cols < image_size[:, 1, None, None])
    return tf.cast(inside, tf.float32)[..., None]


@DETECTORS.register(injected=("num_classes",))
class MaskRCNN(keras.Model):
    """Backbone -> neck -> RPN -> RoIAlign -> box head, and a mask head on the final boxes.

    Every component argument is a registered layer given as ``{type: Name, ...}`` (or a built
    instance); losses likewise. Training targets are computed in the graph from padded ground
    truth with fixed numbers of proposals, samples and detections, so ``model.fit`` works as is
    under ``tf.distribute``; the training step compiles with XLA when the RoI aligners use
    ``backend: gather``, ``nms_backend`` is ``padded`` and ``mask_slots`` is ``all``.

    Args:
        backbone, neck, anchor_generator, rpn_head, proposal_generator, anchor_labeler,
            box_roi_aligner, roi_sampler, box_head, mask_head: the components.
        num_classes: K foreground classes (class 0 is background).
        mask_roi_aligner: the mask head's RoI features; unused (may be omitted) when the box
            head shares its RoI features (the C4 ``Res5BoxHead``).
        rpn_objectness_loss, rpn_box_loss, box_cls_loss, box_reg_loss, mask_loss: registered
            losses with ``reduction: sum`` (the detector applies Detectron2's normalisers:
            sampled anchors per batch for the RPN, sampled RoIs for the box head, pixels of
            positive RoIs for the mask loss).
        loss_weights: a weight per loss name (``rpn_objectness``, ``rpn_box``, ``box_cls``,
            ``box_reg``, ``mask``); 1.0 where absent.
        pixel_mean, pixel_std: per-channel normalisation of the input images.
        score_threshold, nms_iou_threshold, max_detections: inference (0.05, 0.5, 100).
        nms_backend: ``combined`` (TF's fused per-class NMS; GPU/CPU) or ``padded`` (static
            shapes: inference then compiles with XLA too, with ``gather`` RoI aligners).
        mask_slots: ``used`` (default) runs the mask head only on the slots that hold a
            positive RoI (training) or a detection (inference), up to the largest count in the
            batch, as Detectron2 does: the same losses, gradients and masks for less work (in
            training often 3-10x fewer RoIs than the 128 positive slots per image). ``all``
            runs it on every slot (static shapes: needed for XLA and TPUs).

    Call:
        inputs: a dict with ``images`` ``[B, H, W, 3]`` (RGB in [0, 255], any float or uint8
            dtype; H and W multiples of the largest stride), optionally ``image_size``
            ``[B, 2]`` (height, width) of each image before padding (the padding is set to 0
            after normalisation, i.e. to the mean colour), and for training the
            padded ground truth: ``gt_boxes`` ``[B, G, 4]`` float32 ``[y1, x1, y2, x2]`` input
            pixels, ``gt_classes`` ``[B, G]`` int32 (1..K, 0 = padding) and ``gt_masks``
            ``[B, G, S, S]`` masks cropped to their boxes (see :mod:`mrcnn_tf.ops.masks`) — or,
            if given, to ``gt_mask_boxes`` ``[B, G, 4]`` (boxes before a crop cut them, which
            may reach outside the image; the input pipeline's scale jitter sends these), and
            optionally ``sample_seed`` int32 ``[B, 2]``: per-example seeds of the anchor and RoI
            sampling (the pipeline sends them; results then do not depend on how a batch is
            split between replicas).
        training: training returns the tensors the losses need (see ``compute_loss``);
            inference returns the detections.

    Returns (inference):
        ``boxes [B, D, 4]`` float32 ``[y1, x1, y2, x2]`` input pixels, ``scores [B, D]``,
        ``classes [B, D]`` int32 (1..K, 0 for empty slots), ``num_detections [B]`` int32 and
        ``masks [B, D, M, M]`` float32 box-relative probabilities (D = max_detections; paste
        them with :func:`mrcnn_tf.ops.masks.paste_masks`).
    """

    def __init__(
        self,
        backbone: Any,
        neck: Any,
        anchor_generator: Any,
        box_roi_aligner: Any,
        box_head: Any,
        mask_head: Any,
        num_classes: int,
        rpn_head: Any = "RPNHead",
        proposal_generator: Any = "ProposalGenerator",
        anchor_labeler: Any = "AnchorLabeler",
        roi_sampler: Any = "RoISampler",
        mask_roi_aligner: Any = None,
        rpn_objectness_loss: Any = "SigmoidCrossEntropyLoss",
        rpn_box_loss: Any = "SmoothL1Loss",
        box_cls_loss: Any = "SoftmaxCrossEntropyLoss",
        box_reg_loss: Any = "SmoothL1Loss",
        mask_loss: Any = "SigmoidCrossEntropyLoss",
        loss_weights: Mapping[str, float] | None = None,
        pixel_mean: Sequence[float] = IMAGENET_MEAN,
        pixel_std: Sequence[float] = IMAGENET_STD,
        score_threshold: float = 0.05,
        nms_iou_threshold: float = 0.5,
        max_detections: int = 100,
        nms_backend: str = "combined",
        mask_slots: str = "used",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_classes) < 1:
            raise ValueError(f"MaskRCNN num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.backbone = _build(BACKBONES, backbone)
        self.neck = _build(NECKS, neck)
        self.anchor_generator = _build(ANCHOR_GENERATORS, anchor_generator)
        self.rpn_head = _build(
            RPN_HEADS, rpn_head, num_anchors=self.anchor_generator.num_anchors_per_location
        )
        self.proposal_generator = _build(PROPOSAL_GENERATORS, proposal_generator)
        self.anchor_labeler = _build(ANCHOR_LABELERS, anchor_labeler)
        self.box_roi_aligner = _build(ROI_ALIGNERS, box_roi_aligner)
        self.roi_sampler = _build(ROI_SAMPLERS, roi_sampler)
        self.box_head = _build(BOX_HEADS, box_head, num_classes=self.num_classes)
        self.mask_head = _build(MASK_HEADS, mask_head, num_classes=self.num_classes)
        self.shares_roi_features = bool(getattr(self.box_head, "shares_roi_features", False))
        if mask_roi_aligner is None and not self.shares_roi_features:
            raise ValueError("MaskRCNN needs a mask_roi_aligner unless the box head shares its RoI features")
        self.mask_roi_aligner = None if mask_roi_aligner is None else _build(ROI_ALIGNERS, mask_roi_aligner)
        rpn_decode = getattr(self.proposal_generator, "box_weights", None)
        rpn_encode = getattr(self.anchor_labeler, "box_weights", None)
        if rpn_decode is not None and rpn_encode is not None and tuple(rpn_decode) != tuple(rpn_encode):
            raise ValueError(
                f"anchor_labeler.box_weights {list(rpn_encode)} must equal proposal_generator.box_weights "
                f"{list(rpn_decode)}: the RPN decodes with the weights it was trained with"
            )
        self.losses_by_name = {
            "rpn_objectness": _build(LOSSES, rpn_objectness_loss),
            "rpn_box": _build(LOSSES, rpn_box_loss),
            "box_cls": _build(LOSSES, box_cls_loss),
            "box_reg": _build(LOSSES, box_reg_loss),
            "mask": _build(LOSSES, mask_loss),
        }
        for name, loss in self.losses_by_name.items():
            if getattr(loss, "reduction", "sum") != "sum":
                raise ValueError(f"MaskRCNN {name}_loss needs reduction 'sum' (the detector normalises)")
        loss_weights = dict(loss_weights or {})
        unknown = sorted(set(loss_weights) - set(LOSS_NAMES))
        if unknown:
            raise ValueError(f"MaskRCNN loss_weights has unknown keys {unknown}; known: {list(LOSS_NAMES)}")
        self.loss_weights = {name: float(loss_weights.get(name, 1.0)) for name in LOSS_NAMES}
        if len(pixel_mean) != 3 or len(pixel_std) != 3 or min(pixel_std) <= 0:
            raise ValueError("MaskRCNN pixel_mean and pixel_std need 3 values (std > 0)")
        self.pixel_mean = [float(v) for v in pixel_mean]
        self.pixel_std = [float(v) for v in pixel_std]
        self.score_threshold = float(score_threshold)
        self.nms_iou_threshold = float(nms_iou_threshold)
        self.max_detections = int(max_detections)
        if nms_backend not in NMS_BACKENDS:
            raise ValueError(f"MaskRCNN nms_backend must be one of {NMS_BACKENDS}, got '{nms_backend}'")
        self.nms_backend = nms_backend
        if mask_slots not in MASK_SLOTS:
            raise ValueError(f"MaskRCNN mask_slots must be one of {MASK_SLOTS}, got '{mask_slots}'")
        self.mask_slots = mask_slots
        self.loss_trackers = [keras.metrics.Mean(name=f"{name}_loss") for name in LOSS_NAMES]
        self.learning_rate_tracker = _LastValue(name="learning_rate")

    # ------------------------------------------------------------------------ forward
    def build(self, input_shape=None):
        """Create every weight by running inference once on a blank 128×128 image (16 proposals).

        Weight shapes do not depend on the image size, so this builds the model for any input;
        it is what lets a saved ``.keras`` model reload its weights.
        """
        if self.built:
            return
        self.built = True  # set first: the call below must not build again
        # Few proposals and detections: the weights are the same, and the eager pass takes
        # ~1 s less and leaves no 1000-RoI buffers in the allocator's cache (~350 MB).
        generator = self.proposal_generator
        saved = getattr(generator, "post_nms_topk_test", None), self.max_detections
        if saved[0] is not None:
            generator.post_nms_topk_test = min(saved[0], 16)
        self.max_detections = min(saved[1], 4)
        try:
            _, image_size, pyramid, _, _, _, proposals = self._features(
                {"images": tf.zeros([1, 128, 128, 3])}, False
            )
            self._detect(pyramid, proposals, image_size)
        finally:
            if saved[0] is not None:
                generator.post_nms_topk_test = saved[0]
            self.max_detections = saved[1]

    def _features(self, inputs, training):
        if not isinstance(inputs, Mapping):
            inputs = {"images": inputs}
        if "images" not in inputs:
            raise ValueError(f"MaskRCNN inputs need an 'images' key; got {sorted(inputs)}")
        images = tf.cast(inputs["images"], tf.float32)
        if images.shape.rank != 4 or images.shape[-1] != 3:
            raise ValueError(f"MaskRCNN images must be [B, H, W, 3], got {images.shape}")
        shape = tf.shape(images)
        image_size = inputs.get("image_size")
        x = (images - tf.constant(self.pixel_mean)) / tf.constant(self.pixel_std)
        if image_size is None:
            image_size = tf.tile(tf.cast(shape[1:3], tf.float32)[None], [shape[0], 1])
        else:  # padding is 0 after normalisation (the mean colour), as in Detectron2
            x = x * _inside_mask(tf.cast(image_size, tf.float32), shape)
        pyramid = self.neck(self.backbone(x, training=training), training=training)
        anchors = self.anchor_generator(pyramid)
        objectness, deltas = self.rpn_head({k: pyramid[k] for k in anchors}, training=training)
        proposals = self.proposal_generator(
            objectness, deltas, anchors, tf.cast(image_size, tf.float32), training=training
        )
        return inputs, tf.cast(image_size, tf.float32), pyramid, anchors, objectness, deltas, proposals

    def call(self, inputs, training=False):
        inputs, image_size, pyramid, anchors, objectness, deltas, proposals = self._features(inputs, training)
        if training:
            return self._training_outputs(inputs, pyramid, anchors, objectness, deltas, proposals)
        return self._detect(pyramid, proposals, image_size)

    def _mask_features(self, pyramid, boxes, box_features=None):
        if self.shares_roi_features:
            if box_features is None:
                box_features = self.box_head.extract(self.box_roi_aligner(pyramid, boxes), training=False)
            return box_features
        return self.mask_roi_aligner(pyramid, boxes)

    def _training_outputs(self, inputs, pyramid, anchors, objectness, deltas, proposals):
        missing = [k for k in ("gt_boxes", "gt_classes", "gt_masks") if k not in inputs]
        if missing:
            raise ValueError(f"MaskRCNN training needs {missing} in its inputs (got {sorted(inputs)})")
        gt_boxes = tf.cast(inputs["gt_boxes"], tf.float32)
        gt_classes = tf.cast(inputs["gt_classes"], tf.int32)
        seeds = inputs.get("sample_seed")
        out = target_ops.rpn_outputs(
            self.anchor_labeler, anchors, objectness, deltas, gt_boxes, gt_classes, seeds
        )
        boxes, _, valid = proposals
        samples = self.roi_sampler(
            boxes, valid, gt_boxes, gt_classes, **target_ops.seeded_kwargs(self.roi_sampler, seeds, 2)
        )
        head = self.box_head(self.box_roi_aligner(pyramid, samples["rois"]), training=True)
        out.update(target_ops.box_outputs(head, samples))
        m = min(self.roi_sampler.max_positives, samples["rois"].shape[1])
        if self.mask_slots == "used":
            m = _used_slots(samples["positive"][:, :m])
        shared = head["features"][:, :m] if self.shares_roi_features else None
        mask_logits = self.mask_head(
            self._mask_features(pyramid, samples["rois"][:, :m], shared), training=True
        )
        mask_boxes = tf.cast(inputs.get("gt_mask_boxes", gt_boxes), tf.float32)
        out.update(
            target_ops.mask_outputs(
                mask_logits, samples, m, mask_boxes, inputs["gt_masks"], self.losses_by_name["mask"]
            )
        )
        return out

    def _detect(self, pyramid, proposals, image_size):
        rois, _, valid = proposals
        head = self.box_head(self.box_roi_aligner(pyramid, rois), training=False)
        probs = tf.nn.softmax(tf.cast(head["logits"], tf.float32), axis=-1)
        decoded = box_ops.decode_boxes(head["deltas"], rois[:, :, None, :], self.roi_sampler.box_weights)
        decoded = box_ops.clip_boxes(decoded, image_size)
        scores = probs[..., 1:] * tf.cast(valid, tf.float32)[..., None]
        det_boxes, det_scores, det_classes, count = per_class_nms(
            decoded,
            scores,
            self.max_detections,
            self.nms_iou_threshold,
            self.score_threshold,
            backend=self.nms_backend,
        )
        present = tf.range(self.max_detections)[None, :] < count[:, None]
        classes = tf.where(present, det_classes + 1, 0)
        det_boxes = tf.where(present[..., None], det_boxes, 0.0)
        n = self.max_detections
        if self.mask_slots == "used":
            n = _used_slots(present)
        mask_logits = self.mask_head(
            self._mask_features(pyramid, det_boxes[:, :n]),
            training=False,
            **self._class_kwargs(classes[:, :n]),
        )
        masks = self._mask_probabilities(mask_logits, classes[:, :n])
        if self.mask_slots == "used":  # empty slots get zeros below
            masks = tf.pad(masks, [[0, 0], [0, self.max_detections - n], [0, 0], [0, 0]])
            masks = tf.ensure_shape(masks, [None, self.max_detections, *mask_logits.shape[2:4]])
        return {
            "boxes": det_boxes,
            "scores": tf.where(present, det_scores, 0.0),
            "classes": classes,
            "num_detections": count,
            "masks": tf.where(present[..., None, None], masks, 0.0),
        }

    def _class_kwargs(self, classes) -> dict:
        """``{"classes": ...}`` when the mask head can compute only the detected class's channel
        (its ``call`` takes ``classes``) and the mask loss reads that channel alone."""
        if getattr(self.losses_by_name["mask"], "class_coupled", False):
            return {}
        return {"classes": classes} if "classes" in inspect.signature(self.mask_head.call).parameters else {}

    def _mask_probabilities(self, mask_logits, classes):
        """``[B, N, M, M]`` probabilities: the mask loss's own, else sigmoid of the class's channel."""
        loss = self.losses_by_name["mask"]
        if getattr(loss, "class_coupled", False):
            return loss.probabilities(mask_logits, classes)
        return tf.sigmoid(target_ops.select_class(mask_logits, classes))

    def xla_blockers(self) -> list[str]:
        """The config overrides an XLA-compiled training step needs and this model lacks.

        ``crop_and_resize`` has no XLA kernel (use the ``gather`` RoIAlign) and XLA needs
        static shapes (``mask_slots: all``); empty when the training step compiles.
        """
        fixes = [
            f"model.{key}.backend=gather"
            for key in ("box_roi_aligner", "mask_roi_aligner")
            if getattr(getattr(self, key), "backend", None) == "crop_and_resize"
        ]
        return fixes + (["model.mask_slots=all"] if self.mask_slots != "all" else [])

    # ------------------------------------------------------------------------- losses
    def loss_terms(self, outputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The weighted scalar losses by name from the training outputs of ``call``."""
        if "rpn_logits" not in outputs:
            raise ValueError(
                "MaskRCNN losses need the outputs of call(..., training=True); inference outputs "
                "have no targets (evaluate with COCO AP instead of model.evaluate)"
            )
        raw = target_ops.losses(self.losses_by_name, outputs)
        return {name: raw[name] * self.loss_weights[name] for name in LOSS_NAMES}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        terms = self.loss_terms(y_pred)
        for tracker, name in zip(self.loss_trackers, LOSS_NAMES, strict=True):
            tracker.update_state(terms[name])
        if training and getattr(self, "optimizer", None) is not None:
            self.learning_rate_tracker.update_state(self.optimizer.learning_rate)
        total = tf.add_n(list(terms.values()))
        if self.losses:
            total += tf.add_n([tf.cast(v, tf.float32) for v in self.losses])
        # Keras sums the gradients of the replicas and expects each replica's loss scaled by
        # 1/R (its built-in losses do this); the terms above are already global values (their
        # normalisers are global), so the trackers show the loss of the whole batch.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return total / float(replicas) if replicas > 1 else total

    # -------------------------------------------------------------------- serialization
    def get_config(self):
        config = super().get_config()
        serialize = keras.saving.serialize_keras_object
        for key in COMPONENTS:
            layer = getattr(self, key)
            config[key] = None if layer is None else serialize(layer)
        for name, loss in self.losses_by_name.items():
            config[f"{name}_loss"] = serialize(loss)
        config.update(
            num_classes=self.num_classes,
            loss_weights=dict(self.loss_weights),
            pixel_mean=list(self.pixel_mean),
            pixel_std=list(self.pixel_std),
            score_threshold=self.score_threshold,
            nms_iou_threshold=self.nms_iou_threshold,
            max_detections=self.max_detections,
            nms_backend=self.nms_backend,
            mask_slots=self.mask_slots,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        deserialize = keras.saving.deserialize_keras_object
        for key in (*COMPONENTS, *(f"{n}_loss" for n in LOSS_NAMES)):
            value = config.get(key)
            if isinstance(value, Mapping) and "class_name" in value:
                config[key] = deserialize(value)
        return cls(**config)
