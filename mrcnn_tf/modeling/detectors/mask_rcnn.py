"""Mask R-CNN (He et al. 2017) as a Keras model assembled from registered components."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import tensorflow as tf

from mrcnn_tf.modeling.detectors import targets as target_ops
from mrcnn_tf.modeling.detectors.helpers import LastValue, inside_mask, used_slots
from mrcnn_tf.ops.keypoints import decode_heatmaps
from mrcnn_tf.registries import DETECTORS

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
    "keypoint_roi_aligner",
    "keypoint_head",
    "detection_generator",
)
LOSS_NAMES = ("rpn_objectness", "rpn_box", "box_cls", "box_reg", "mask", "keypoint")
#: Parts that a model may leave out (``None``): no mask head makes a Keypoint R-CNN.
OPTIONAL_PARTS = ("mask_roi_aligner", "mask_head", "keypoint_roi_aligner", "keypoint_head")
#: Constructor arguments that hold a loss, by loss name.
LOSS_ARGS = {name: f"{name}_loss" for name in LOSS_NAMES}
#: Parts a config may leave out: the builder supplies these (``mrcnn_tf.modeling.builder``).
BUILDER_DEFAULTS = {
    "rpn_head": "RPNHead",
    "proposal_generator": "ProposalGenerator",
    "anchor_labeler": "AnchorLabeler",
    "roi_sampler": "RoISampler",
    "detection_generator": "DetectionGenerator",
    "rpn_objectness_loss": "SigmoidCrossEntropyLoss",
    "rpn_box_loss": "SmoothL1Loss",
    "box_cls_loss": "SoftmaxCrossEntropyLoss",
    "box_reg_loss": "SmoothL1Loss",
    "mask_loss": "SigmoidCrossEntropyLoss",
    "keypoint_loss": "SoftmaxCrossEntropyLoss",
}
MASK_SLOTS = ("used", "all")
#: torchvision's ImageNet statistics for RGB images in [0, 255].
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def _may_need_build(part: keras.layers.Layer | None) -> bool:
    """Whether ``part`` is unbuilt and may create weights when built (Keras's own test: it
    overrides ``build`` or holds unbuilt sub-layers)."""
    if part is None or part.built:
        return False
    own_build = not getattr(type(part).build, "_is_default", False)
    return own_build or any(not layer.built for layer in getattr(part, "_layers", []))


@DETECTORS.register(injected=("num_classes", *BUILDER_DEFAULTS))
class MaskRCNN(keras.Model):
    """Backbone -> neck -> RPN -> RoIAlign -> box head, and mask/keypoint heads on the final boxes.

    A composition of built parts: every argument is a constructed layer or loss (keyword-only),
    so a detector can be assembled in Python without a config, as torchvision's
    ``MaskRCNN(backbone, ...)``. :func:`mrcnn_tf.modeling.builder.build_model` is the one place
    that turns a config into these parts and checks that they fit each other. Training targets
    are computed in the graph from padded ground truth with fixed numbers of proposals, samples
    and detections, so ``model.fit`` works as is under ``tf.distribute``; the training step
    compiles with XLA when the RoI aligners use ``backend: gather``, the detection generator's
    ``nms_backend`` is ``padded`` and ``mask_slots`` is ``all``.

    Args:
        backbone: a :class:`~mrcnn_tf.modeling.base.Backbone`; neck: a
            :class:`~mrcnn_tf.modeling.base.Neck` (its outputs ``P{k}`` feed everything below).
        anchor_generator, rpn_head, proposal_generator: the RPN; anchor_labeler: its training
            targets (same box coder as the proposal generator).
        roi_sampler: the RoI head's training samples; box_roi_aligner, box_head: the box head;
            detection_generator: inference post-processing of the box head (same box coder as
            the RoI sampler).
        mask_roi_aligner, mask_head: the mask head. ``mask_roi_aligner=None`` makes the mask
            head read the box head's RoI features (``box_head.extract``; the C4 ``Res5BoxHead``).
            ``mask_head=None``: no masks (with a keypoint head: Keypoint R-CNN).
        keypoint_roi_aligner, keypoint_head: the keypoint head (He et al. 2017, §5), run like the
            mask head on the positive RoIs (training) and the final detections (inference);
            ``None`` (default): no keypoints.
        num_classes: K foreground classes (class 0 is background); must equal the heads'.
        num_keypoints: keypoints per instance (the keypoint head's); 0 without one.
        rpn_objectness_loss, rpn_box_loss, box_cls_loss, box_reg_loss, mask_loss,
            keypoint_loss: losses with ``reduction: sum`` (the detector applies Detectron2's
            normalisers: sampled anchors per batch for the RPN, sampled RoIs for the box head,
            pixels of positive RoIs for the mask loss, labelled keypoints inside positive RoIs
            for the keypoint loss, a softmax cross-entropy over each heatmap's cells).
        loss_weights: a weight per loss name (``rpn_objectness``, ``rpn_box``, ``box_cls``,
            ``box_reg``, ``mask``, ``keypoint``); 1.0 where absent.
        pixel_mean, pixel_std: per-channel normalisation of the input images.
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
            split between replicas); with a keypoint head, ``gt_keypoints`` ``[B, G, K, 3]``
            float32 ``(x, y, v)`` in input pixels (see :mod:`mrcnn_tf.ops.keypoints`).
        training: training returns the tensors the losses need (see ``compute_loss``);
            inference returns the detections.

    Returns (inference):
        ``boxes [B, D, 4]`` float32 ``[y1, x1, y2, x2]`` input pixels, ``scores [B, D]``,
        ``classes [B, D]`` int32 (1..K, 0 for empty slots), ``num_detections [B]`` int32 and
        ``masks [B, D, M, M]`` float32 box-relative probabilities (D =
        ``detection_generator.max_detections``; paste them with
        :func:`mrcnn_tf.ops.masks.paste_masks`) with a mask head; ``keypoints [B, D, K, 3]``
        float32 ``(x, y, score)`` in input pixels with a keypoint head (score: the spatial
        softmax probability of the heatmap's peak; :func:`mrcnn_tf.ops.keypoints.decode_heatmaps`).
        Empty slots hold zeros.
    """

    #: Parts a config may leave out, and what the builder then builds.
    default_parts = BUILDER_DEFAULTS

    def __init__(
        self,
        *,
        backbone: keras.layers.Layer,
        neck: keras.layers.Layer,
        anchor_generator: keras.layers.Layer,
        rpn_head: keras.layers.Layer,
        proposal_generator: keras.layers.Layer,
        anchor_labeler: keras.layers.Layer,
        roi_sampler: keras.layers.Layer,
        box_roi_aligner: keras.layers.Layer,
        box_head: keras.layers.Layer,
        mask_head: keras.layers.Layer | None,
        detection_generator: keras.layers.Layer,
        num_classes: int,
        rpn_objectness_loss: keras.losses.Loss,
        rpn_box_loss: keras.losses.Loss,
        box_cls_loss: keras.losses.Loss,
        box_reg_loss: keras.losses.Loss,
        mask_loss: keras.losses.Loss | None = None,
        mask_roi_aligner: keras.layers.Layer | None = None,
        keypoint_roi_aligner: keras.layers.Layer | None = None,
        keypoint_head: keras.layers.Layer | None = None,
        keypoint_loss: keras.losses.Loss | None = None,
        num_keypoints: int = 0,
        loss_weights: Mapping[str, float] | None = None,
        pixel_mean: Sequence[float] = IMAGENET_MEAN,
        pixel_std: Sequence[float] = IMAGENET_STD,
        mask_slots: str = "used",
        **kwargs,
    ):
        super().__init__(**kwargs)
        parts = {
            "backbone": backbone,
            "neck": neck,
            "anchor_generator": anchor_generator,
            "rpn_head": rpn_head,
            "proposal_generator": proposal_generator,
            "anchor_labeler": anchor_labeler,
            "roi_sampler": roi_sampler,
            "box_roi_aligner": box_roi_aligner,
            "box_head": box_head,
            "mask_roi_aligner": mask_roi_aligner,
            "mask_head": mask_head,
            "keypoint_roi_aligner": keypoint_roi_aligner,
            "keypoint_head": keypoint_head,
            "detection_generator": detection_generator,
        }
        for key, part in parts.items():
            if not (part is None and key in OPTIONAL_PARTS) and not isinstance(part, keras.layers.Layer):
                raise TypeError(
                    f"MaskRCNN {key} must be a built Keras layer, got {type(part).__name__}; to build "
                    "from a config use mrcnn_tf.build_model(config)"
                )
            setattr(self, key, part)
        if int(num_classes) < 1:
            raise ValueError(f"MaskRCNN num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        if mask_head is None and keypoint_head is None:
            raise ValueError("MaskRCNN needs a mask_head, a keypoint_head or both")
        if (keypoint_head is None) != (keypoint_roi_aligner is None):
            raise ValueError(
                "MaskRCNN keypoint_head and keypoint_roi_aligner come together (both or neither)"
            )
        self.num_keypoints = int(num_keypoints)
        if (
            keypoint_head is not None
            and getattr(keypoint_head, "num_keypoints", num_keypoints) != num_keypoints
        ):
            raise ValueError(
                f"MaskRCNN num_keypoints is {num_keypoints}, "
                f"its keypoint_head's {keypoint_head.num_keypoints}"
            )
        self.shares_roi_features = mask_roi_aligner is None
        if (
            mask_head is not None
            and self.shares_roi_features
            and not callable(getattr(box_head, "extract", None))
        ):
            raise ValueError(
                f"MaskRCNN has no mask_roi_aligner, so the mask head reads the box head's RoI "
                f"features, but {type(box_head).__name__} has no extract(); give a mask_roi_aligner"
            )
        given = {
            "rpn_objectness": rpn_objectness_loss,
            "rpn_box": rpn_box_loss,
            "box_cls": box_cls_loss,
            "box_reg": box_reg_loss,
        }
        if mask_head is not None:
            given["mask"] = mask_loss
        if keypoint_head is not None:
            given["keypoint"] = keypoint_loss
        for name, loss in given.items():
            if not isinstance(loss, keras.losses.Loss):
                raise TypeError(
                    f"MaskRCNN {name}_loss must be a built keras.losses.Loss, got {type(loss).__name__}"
                )
            if getattr(loss, "reduction", "sum") != "sum":
                raise ValueError(f"MaskRCNN {name}_loss needs reduction 'sum' (the detector normalises)")
        self.losses_by_name = given
        #: The losses this model trains (its heads'), in ``LOSS_NAMES`` order.
        self.loss_names = tuple(name for name in LOSS_NAMES if name in given)
        loss_weights = dict(loss_weights or {})
        unknown = sorted(set(loss_weights) - set(LOSS_NAMES))
        if unknown:
            raise ValueError(f"MaskRCNN loss_weights has unknown keys {unknown}; known: {list(LOSS_NAMES)}")
        self.loss_weights = {name: float(loss_weights.get(name, 1.0)) for name in self.loss_names}
        if len(pixel_mean) != 3 or len(pixel_std) != 3 or min(pixel_std) <= 0:
            raise ValueError("MaskRCNN pixel_mean and pixel_std need 3 values (std > 0)")
        self.pixel_mean = [float(v) for v in pixel_mean]
        self.pixel_std = [float(v) for v in pixel_std]
        if mask_slots not in MASK_SLOTS:
            raise ValueError(f"MaskRCNN mask_slots must be one of {MASK_SLOTS}, got '{mask_slots}'")
        self.mask_slots = mask_slots
        self.loss_trackers = [keras.metrics.Mean(name=f"{name}_loss") for name in self.loss_names]
        self.learning_rate_tracker = LastValue(name="learning_rate")

    @property
    def max_detections(self) -> int:
        """Detection slots per image (the detection generator's ``max_detections``)."""
        return self.detection_generator.max_detections

    # ------------------------------------------------------------------------ forward
    def build(self, input_shape=None):
        """Create every weight by running the parts once on a blank 64×64 image.

        Weight shapes do not depend on the image size, so this builds the model for any input;
        it is what lets a saved ``.keras`` model reload its weights. The backbone, neck and RPN
        head run on the image and the RoI heads on 4 fixed boxes: the proposal and detection
        generators (NMS loops, dispatched op by op from Python when eager) are skipped, which
        cuts the build of an R50-FPN from ~5 s to ~2 s (2-core VM). A part that overrides
        ``build`` and is still unbuilt after that (a plugin whose proposal or detection
        generator has weights) gets the full inference pass instead, on a 128×128 image keeping
        16 proposals and 4 detections (arguments of this call only).
        """
        if self.built:
            return
        self.built = True  # set first: the calls below must not build again
        _, _, pyramid, *_ = self._pyramid({"images": tf.zeros([1, 64, 64, 3])}, False)
        boxes = tf.constant([[[0, 0, 32, 32], [8, 8, 40, 56], [16, 0, 64, 64], [0, 24, 48, 64]]], tf.float32)
        self.box_head(self.box_roi_aligner(pyramid, boxes), training=False)
        if self.mask_head is not None:
            classes = self._class_kwargs(tf.ones([1, 4], tf.int32))
            self.mask_head(self._mask_features(pyramid, boxes), training=False, **classes)
        if self.keypoint_head is not None:
            self.keypoint_head(self.keypoint_roi_aligner(pyramid, boxes), training=False)
        # parts with their own build() that the pass above did not call: the full pass
        if any(_may_need_build(getattr(self, key)) for key in COMPONENTS):
            _, image_size, pyramid, _, _, _, proposals = self._features(
                {"images": tf.zeros([1, 128, 128, 3])}, False, post_nms_topk=16
            )
            self._detect(pyramid, proposals, image_size, max_detections=4)

    def _pyramid(self, inputs, training):
        """Normalised images -> backbone -> neck -> anchors and RPN outputs."""
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
            x = x * inside_mask(tf.cast(image_size, tf.float32), shape)
        pyramid = self.neck(self.backbone(x, training=training), training=training)
        anchors = self.anchor_generator(pyramid)
        objectness, deltas = self.rpn_head({k: pyramid[k] for k in anchors}, training=training)
        return inputs, tf.cast(image_size, tf.float32), pyramid, anchors, objectness, deltas

    def _features(self, inputs, training, post_nms_topk=None):
        inputs, image_size, pyramid, anchors, objectness, deltas = self._pyramid(inputs, training)
        proposals = self.proposal_generator(
            objectness,
            deltas,
            anchors,
            image_size,
            training=training,
            post_nms_topk=post_nms_topk,
        )
        return inputs, image_size, pyramid, anchors, objectness, deltas, proposals

    def call(self, inputs, training=False):
        inputs, image_size, pyramid, anchors, objectness, deltas, proposals = self._features(inputs, training)
        if training:
            return self._training_outputs(inputs, pyramid, anchors, objectness, deltas, proposals)
        return self._detect(pyramid, proposals, image_size)

    def _mask_features(self, pyramid, boxes, box_features=None):
        if self.shares_roi_features:
            if box_features is None:
                box_features = self.box_head.extract(self.box_roi_aligner(pyramid, boxes), training=False)
            if box_features.shape.rank != 5:
                raise ValueError(
                    f"MaskRCNN has no mask_roi_aligner, so the mask head reads the box head's RoI "
                    f"features, but {type(self.box_head).__name__} gives {box_features.shape.rank - 2}-d "
                    "vectors per RoI, not maps: give a mask_roi_aligner"
                )
            return box_features
        return self.mask_roi_aligner(pyramid, boxes)

    def _training_outputs(self, inputs, pyramid, anchors, objectness, deltas, proposals):
        needed = ("gt_boxes", "gt_classes")
        needed += ("gt_masks",) if self.mask_head is not None else ()
        needed += ("gt_keypoints",) if self.keypoint_head is not None else ()
        missing = [k for k in needed if k not in inputs]
        if missing:
            raise ValueError(f"MaskRCNN training needs {missing} in its inputs (got {sorted(inputs)})")
        gt_boxes = tf.cast(inputs["gt_boxes"], tf.float32)
        gt_classes = tf.cast(inputs["gt_classes"], tf.int32)
        seeds = inputs.get("sample_seed")
        out = target_ops.rpn_outputs(
            self.anchor_labeler, anchors, objectness, deltas, gt_boxes, gt_classes, seeds
        )
        boxes, _, valid = proposals
        samples = self.roi_sampler(boxes, valid, gt_boxes, gt_classes, **target_ops.seeded_kwargs(seeds, 2))
        head = self.box_head(self.box_roi_aligner(pyramid, samples["rois"]), training=True)
        out.update(target_ops.box_outputs(head, samples))
        m = min(self.roi_sampler.max_positives, samples["rois"].shape[1])
        if self.mask_slots == "used":
            m = used_slots(samples["positive"][:, :m])
        if self.mask_head is not None:
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
        if self.keypoint_head is not None:
            heatmaps = self.keypoint_head(
                self.keypoint_roi_aligner(pyramid, samples["rois"][:, :m]), training=True
            )
            out.update(target_ops.keypoint_outputs(heatmaps, samples, m, inputs["gt_keypoints"]))
        return out

    def _detect(self, pyramid, proposals, image_size, max_detections=None):
        rois, _, valid = proposals
        head = self.box_head(self.box_roi_aligner(pyramid, rois), training=False)
        out = self.detection_generator(
            head["logits"], head["deltas"], rois, valid, image_size, max_detections=max_detections
        )
        classes, count = out["classes"], out["num_detections"]
        slots = classes.shape[1]
        present = classes > 0
        n = used_slots(present) if self.mask_slots == "used" else slots
        out = {**out, "num_detections": count}
        if self.mask_head is not None:
            mask_logits = self.mask_head(
                self._mask_features(pyramid, out["boxes"][:, :n]),
                training=False,
                **self._class_kwargs(classes[:, :n]),
            )
            masks = self._all_slots(self._mask_probabilities(mask_logits, classes[:, :n]), slots)
            out["masks"] = tf.where(present[..., None, None], masks, 0.0)
        if self.keypoint_head is not None:
            boxes = out["boxes"][:, :n]
            heatmaps = self.keypoint_head(self.keypoint_roi_aligner(pyramid, boxes), training=False)
            decode = getattr(self.keypoint_head, "decode", None) or decode_heatmaps  # the head's own, if any
            keypoints = self._all_slots(decode(heatmaps, boxes), slots)
            out["keypoints"] = tf.where(present[..., None, None], keypoints, 0.0)
        return out

    def _all_slots(self, values, slots: int):
        """``[B, n, ...]`` per-slot values of the first ``n`` slots -> ``[B, slots, ...]`` (zeros after)."""
        if self.mask_slots != "used":
            return values
        rest = values.shape[2:]
        values = tf.pad(values, [[0, 0], [0, slots - tf.shape(values)[1]]] + [[0, 0]] * len(rest))
        return tf.reshape(values, [-1, slots, *rest])  # static shape; a TFLite builtin

    def _class_kwargs(self, classes) -> dict:
        """``{"classes": ...}`` unless the mask loss couples the classes (a softmax across them),
        in which case the mask head must compute every class's channel. Mask heads take
        ``classes`` (the role's contract, checked by the builder) and may compute only the
        detected class's channel."""
        if getattr(self.losses_by_name["mask"], "class_coupled", False):
            return {}
        return {"classes": classes}

    def _mask_probabilities(self, mask_logits, classes):
        """``[B, N, M, M]`` probabilities: the mask loss's own, else sigmoid of the class's channel."""
        loss = self.losses_by_name["mask"]
        if getattr(loss, "class_coupled", False):
            return loss.probabilities(mask_logits, classes)
        return tf.sigmoid(target_ops.select_class(mask_logits, classes))

    def xla_blockers(self) -> list[str]:
        """The config overrides an XLA-compiled training step needs and this model lacks.

        ``crop_and_resize`` and the fused ``CombinedNonMaxSuppression`` have no XLA kernel (use
        the ``gather`` RoIAlign and the ``padded`` proposal NMS) and XLA needs static shapes
        (``mask_slots: all``); empty when the training step compiles.
        """
        fixes = [
            f"model.{key}.backend=gather"
            for key in ("box_roi_aligner", "mask_roi_aligner", "keypoint_roi_aligner")
            if getattr(getattr(self, key), "backend", None) == "crop_and_resize"
        ]
        if getattr(self.proposal_generator, "nms_backend", None) == "combined":
            fixes.append("model.proposal_generator.nms_backend=padded")
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
        return {name: raw[name] * self.loss_weights[name] for name in self.loss_names}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        terms = self.loss_terms(y_pred)
        for tracker, name in zip(self.loss_trackers, self.loss_names, strict=True):
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
        for name in LOSS_NAMES:
            loss = self.losses_by_name.get(name)
            config[LOSS_ARGS[name]] = None if loss is None else serialize(loss)
        config.update(
            num_classes=self.num_classes,
            loss_weights=dict(self.loss_weights),
            pixel_mean=list(self.pixel_mean),
            pixel_std=list(self.pixel_std),
            mask_slots=self.mask_slots,
            num_keypoints=self.num_keypoints,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        deserialize = keras.saving.deserialize_keras_object
        for key in (*COMPONENTS, *LOSS_ARGS.values()):
            value = config.get(key)
            if isinstance(value, Mapping):
                config[key] = deserialize(value)
        return cls(**config)
