"""One registry per component role.

Registering a class is one decorator::

    from mrcnn_tf.registries import BACKBONES

    @BACKBONES.register()
    class MyBackbone(keras.layers.Layer):
        ...

The same decorator registers Keras layers and losses with
``keras.saving.register_keras_serializable`` (package ``mrcnn_tf.<role>s``), so saved models
reload without ``custom_objects``. Each registry names the config keys ("slots") whose
``{type: ...}`` value it supplies: a backbone named under ``mask_head:`` is rejected when
the config is loaded.

This module imports no TensorFlow itself.
"""

from __future__ import annotations

import importlib
import sys

from registry import Registry

PLUGIN_GROUP = "mrcnn_tf.plugins"


def _keras_serializable(cls: type, name: str, registry: Registry) -> type:
    """Register Keras objects for serialization; leave other classes alone."""
    keras = sys.modules.get("keras")
    if keras is None:  # keras not imported yet, so ``cls`` cannot be a Keras object
        return cls
    serializable = (
        keras.layers.Layer,
        keras.losses.Loss,
        keras.optimizers.Optimizer,
        keras.optimizers.schedules.LearningRateSchedule,
    )
    if issubclass(cls, serializable):
        return keras.saving.register_keras_serializable(package=f"mrcnn_tf.{registry.name}", name=name)(cls)
    return cls


def _make(name: str, *slots: str, base: str | None = None, required: tuple[str, ...] = ()) -> Registry:
    return Registry(
        name,
        slots=slots,
        base=base,
        required=required,
        plugin_group=PLUGIN_GROUP,
        on_register=_keras_serializable,
    )


# Role contracts (mrcnn_tf.modeling.base): imported at the first registration, not here.
BACKBONES = _make("backbone", "backbone", base="mrcnn_tf.modeling.base:Backbone", required=("output_specs",))
NECKS = _make("neck", "neck", "fpn", base="mrcnn_tf.modeling.base:Neck", required=("output_specs",))
ANCHOR_GENERATORS = _make("anchor_generator", "anchor_generator", "anchors")
RPN_HEADS = _make("rpn_head", "rpn_head")
PROPOSAL_GENERATORS = _make("proposal_generator", "proposal_generator", "proposals")
ANCHOR_LABELERS = _make("anchor_labeler", "anchor_labeler")
ROI_ALIGNERS = _make(
    "roi_aligner", "roi_aligner", "box_roi_aligner", "mask_roi_aligner", "keypoint_roi_aligner"
)
ROI_SAMPLERS = _make("roi_sampler", "roi_sampler")
BOX_HEADS = _make("box_head", "box_head")
MASK_HEADS = _make("mask_head", "mask_head")
KEYPOINT_HEADS = _make("keypoint_head", "keypoint_head")
DETECTION_GENERATORS = _make("detection_generator", "detection_generator")
LOSSES = _make("loss", "loss", "*_loss")
DETECTORS = _make("detector", "model", "detector")
DATASETS = _make("dataset", "dataset", "*_dataset", "train", "val", "test")
OPTIMIZERS = _make("optimizer", "optimizer")
SCHEDULES = _make("schedule", "schedule")

#: Every role, in the order ``mrcnn-tf list`` prints them.
ALL: dict[str, Registry] = {
    r.name: r
    for r in (
        BACKBONES,
        NECKS,
        ANCHOR_GENERATORS,
        RPN_HEADS,
        PROPOSAL_GENERATORS,
        ANCHOR_LABELERS,
        ROI_ALIGNERS,
        ROI_SAMPLERS,
        BOX_HEADS,
        MASK_HEADS,
        KEYPOINT_HEADS,
        DETECTION_GENERATORS,
        LOSSES,
        DETECTORS,
        DATASETS,
        OPTIMIZERS,
        SCHEDULES,
    )
}

#: Modules whose import registers the built-in components.
BUILTIN_MODULES = (
    "mrcnn_tf.modeling.backbones.resnet",
    "mrcnn_tf.modeling.backbones.keras_application",
    "mrcnn_tf.modeling.necks.fpn",
    "mrcnn_tf.modeling.necks.identity",
    "mrcnn_tf.modeling.anchors.anchor_generator",
    "mrcnn_tf.modeling.rpn.rpn_head",
    "mrcnn_tf.modeling.rpn.proposal_generator",
    "mrcnn_tf.modeling.rpn.anchor_labeler",
    "mrcnn_tf.modeling.roi_heads.roi_aligner",
    "mrcnn_tf.modeling.roi_heads.roi_pool",
    "mrcnn_tf.modeling.roi_heads.roi_sampler",
    "mrcnn_tf.modeling.roi_heads.fc_box_head",
    "mrcnn_tf.modeling.roi_heads.res5_box_head",
    "mrcnn_tf.modeling.roi_heads.detection_generator",
    "mrcnn_tf.modeling.mask_heads.fcn_mask_head",
    "mrcnn_tf.modeling.mask_heads.mlp_mask_head",
    "mrcnn_tf.modeling.keypoint_heads.krcnn_head",
    "mrcnn_tf.losses.box_losses",
    "mrcnn_tf.losses.classification_losses",
    "mrcnn_tf.losses.mask_losses",
    "mrcnn_tf.modeling.detectors.mask_rcnn",
    "mrcnn_tf.data.coco",
    "mrcnn_tf.data.synthetic",
    "mrcnn_tf.data.synthetic_keypoints",
    "mrcnn_tf.data.tfrecord",
    "mrcnn_tf.training.optimizers",
    "mrcnn_tf.training.schedules",
)


def load_builtins() -> None:
    """Import the built-in components so that they are registered (imports TensorFlow)."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def registry_for_role(role: str) -> Registry:
    """The registry for a role name (``backbone`` or ``backbones``)."""
    key = role[:-1] if role.endswith("s") and role[:-1] in ALL else role
    if key not in ALL:
        from registry import RegistryError

        raise RegistryError(f"unknown role '{role}'; roles: {', '.join(ALL)}")
    return ALL[key]
