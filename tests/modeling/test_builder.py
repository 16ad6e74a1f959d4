"""The builder: config -> parts -> MaskRCNN, its cross-part checks, and round-one run directories.

``tests/fixtures/round_one_run`` was written by the round-one code (commit e7876e2, before
the detector became a composition of parts): its ``config.yaml`` has the old model keys
(``score_threshold``, ``max_detections``, ``roi_sampler.box_weights``), ``model.weights.h5``
the weights of a tiny R18-FPN, and ``detections.npz`` an image and what that code detected on
it. The detections are the independent reference here: the old code computed them.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

import mrcnn_tf
from mrcnn_tf.config import load_config, migrate_config
from mrcnn_tf.losses.box_losses import SmoothL1Loss
from mrcnn_tf.losses.classification_losses import SigmoidCrossEntropyLoss, SoftmaxCrossEntropyLoss
from mrcnn_tf.modeling.anchors.anchor_generator import AnchorGenerator
from mrcnn_tf.modeling.backbones.resnet import ResNet
from mrcnn_tf.modeling.builder import build_model
from mrcnn_tf.modeling.detectors.mask_rcnn import MaskRCNN
from mrcnn_tf.modeling.mask_heads.fcn_mask_head import FCNMaskHead
from mrcnn_tf.modeling.necks.fpn import FPN
from mrcnn_tf.modeling.roi_heads.detection_generator import DetectionGenerator
from mrcnn_tf.modeling.roi_heads.fc_box_head import FCBoxHead
from mrcnn_tf.modeling.roi_heads.roi_aligner import MultiLevelRoIAlign
from mrcnn_tf.modeling.roi_heads.roi_sampler import RoISampler
from mrcnn_tf.modeling.rpn.anchor_labeler import AnchorLabeler
from mrcnn_tf.modeling.rpn.proposal_generator import ProposalGenerator
from mrcnn_tf.modeling.rpn.rpn_head import RPNHead
from mrcnn_tf.ops.boxes import BoxCoder
from registry import ConfigError

RUN = Path(__file__).resolve().parent.parent / "fixtures" / "round_one_run"
REFERENCE = np.load(RUN / "detections.npz")


def _python_model() -> MaskRCNN:
    """The fixture's detector assembled from constructors: no YAML, no registry."""
    rpn_coder, box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0)), BoxCoder((10.0, 10.0, 5.0, 5.0))
    return MaskRCNN(
        backbone=ResNet(depth=18, norm="bn", freeze_at=0, width=8),
        neck=FPN(num_channels=16),
        anchor_generator=AnchorGenerator(sizes=[16, 32, 64, 128, 256]),
        rpn_head=RPNHead(num_anchors=3),
        proposal_generator=ProposalGenerator(post_nms_topk_test=50, box_coder=rpn_coder),
        anchor_labeler=AnchorLabeler(box_coder=rpn_coder),
        roi_sampler=RoISampler(num_samples=128, box_coder=box_coder),
        box_roi_aligner=MultiLevelRoIAlign(output_size=7),
        box_head=FCBoxHead(num_classes=3, fc_dim=32),
        mask_roi_aligner=MultiLevelRoIAlign(output_size=14),
        mask_head=FCNMaskHead(num_classes=3, conv_dim=8),
        detection_generator=DetectionGenerator(score_threshold=0.0, max_detections=10, box_coder=box_coder),
        num_classes=3,
        rpn_objectness_loss=SigmoidCrossEntropyLoss(),
        rpn_box_loss=SmoothL1Loss(beta=0.0),
        box_cls_loss=SoftmaxCrossEntropyLoss(),
        box_reg_loss=SmoothL1Loss(beta=0.0),
        mask_loss=SigmoidCrossEntropyLoss(),
    )


def _assert_reference_detections(model):
    out = {k: np.asarray(v) for k, v in model({"images": REFERENCE["image"]}).items()}
    np.testing.assert_array_equal(out["num_detections"], REFERENCE["num_detections"])
    np.testing.assert_array_equal(out["classes"], REFERENCE["classes"])
    np.testing.assert_allclose(out["boxes"], REFERENCE["boxes"], atol=1e-3)
    np.testing.assert_allclose(out["scores"], REFERENCE["scores"], atol=1e-5)
    np.testing.assert_allclose(out["masks"], REFERENCE["masks"], atol=1e-4)


def test_round_one_run_directory_loads_and_detects_what_the_old_code_detected():
    cfg = load_config(RUN / "config.yaml")  # old keys are migrated while loading
    assert "score_threshold" not in cfg["model"] and "box_weights" not in cfg["model"]["roi_sampler"]
    assert cfg["model"]["detection_generator"]["max_detections"] == 10
    assert cfg["model"]["detection_generator"]["box_coder"] == {"weights": [10.0, 10.0, 5.0, 5.0]}
    model = mrcnn_tf.build_model(cfg)  # K from the old config's data.num_classes
    model.build()
    model.load_weights(str(RUN / "model.weights.h5"))
    _assert_reference_detections(model)


def test_model_assembled_in_python_equals_the_config_built_model():
    model = _python_model()
    model.build()
    model.load_weights(str(RUN / "model.weights.h5"))
    _assert_reference_detections(model)
    built = mrcnn_tf.build_model(load_config(RUN / "config.yaml"))
    built.build()
    built.set_weights(model.get_weights())  # same parts in the same order: same weight list
    image = REFERENCE["image"]
    for key, value in built({"images": image}).items():
        np.testing.assert_array_equal(
            np.asarray(value), np.asarray(model({"images": image})[key]), err_msg=key
        )


def test_builder_shares_one_box_coder_per_encode_decode_pair_and_takes_strides_from_the_neck():
    model = mrcnn_tf.build_model(load_config("mask_rcnn_r50_c4_1x_coco"))
    assert model.anchor_labeler.box_coder is model.proposal_generator.box_coder
    assert model.roi_sampler.box_coder is model.detection_generator.box_coder
    assert model.roi_sampler.box_coder.weights == (10.0, 10.0, 5.0, 5.0)
    assert model.anchor_generator.strides == {"P4": 16}  # the C4 model's one level
    assert model.mask_roi_aligner is None and model.shares_roi_features


def test_model_serializes_its_parts_and_reloads_from_its_config():
    model = _python_model()
    config = model.get_config()
    assert config["detection_generator"]["config"]["max_detections"] == 10
    clone = MaskRCNN.from_config(config)
    assert clone.detection_generator.box_coder == model.detection_generator.box_coder
    assert clone.get_config()["backbone"] == config["backbone"]


def test_mask_rcnn_takes_built_layers_only():
    with pytest.raises(TypeError, match=r"MaskRCNN backbone must be a built Keras layer, got dict"):
        MaskRCNN(**{**_python_model_kwargs(), "backbone": {"type": "ResNet"}})
    with pytest.raises(TypeError):  # keyword-only
        MaskRCNN(ResNet(depth=18))


def _python_model_kwargs() -> dict:
    model = _python_model()
    parts = {k: getattr(model, k) for k in model.get_config() if hasattr(model, k) and k != "name"}
    parts.update({f"{n}_loss": loss for n, loss in model.losses_by_name.items()})
    parts.update(num_classes=3, mask_roi_aligner=model.mask_roi_aligner)
    return {k: v for k, v in parts.items() if k not in ("trainable", "dtype")}


BASE = "mask_rcnn_r18_fpn_synthetic"


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        (["model.neck.min_level=3"], "model.anchor_generator", r"levels \['P2'\] have no stride"),
        (["model.backbone.out_features=[C3,C4,C5]"], "model.neck", r"FPN needs backbone features \['C2'\]"),
        (
            ["model.mask_roi_aligner.max_level=7"],
            "model.mask_roi_aligner",
            r"reads pyramid levels \['P7'\]",
        ),
        (
            ["model.anchor_labeler.box_coder={weights: [2, 2, 2, 2]}"],
            "model.anchor_labeler.box_coder",
            "set proposal_generator.box_coder",
        ),
        (["model.num_classes=0"], "model.num_classes", "must be a positive integer"),
    ],
)
def test_parts_that_do_not_fit_are_refused_naming_the_key(overrides, key, message):
    cfg = load_config(BASE, overrides)
    with pytest.raises(ConfigError, match=message) as caught:
        mrcnn_tf.build_model(cfg)
    assert caught.value.key == key


def test_shared_roi_features_need_a_box_head_that_gives_maps():
    model = mrcnn_tf.build_model(load_config(BASE, ["model.mask_roi_aligner=null"]))
    with pytest.raises(
        ValueError, match="FCBoxHead gives 1-d vectors per RoI, not maps: give a mask_roi_aligner"
    ):
        model.build()


def test_a_plugin_part_without_its_roles_call_arguments_is_refused_at_build_time():
    from mrcnn_tf.registries import MASK_HEADS

    @MASK_HEADS.register(name="_NoClassesHead", injected=("num_classes",))
    class NoClassesHead(keras.layers.Layer):
        def __init__(self, num_classes, **kwargs):
            super().__init__(**kwargs)
            self.num_classes = num_classes

        def call(self, features, training=None):
            return features

    try:
        cfg = load_config(BASE, ["model.mask_head={type: _NoClassesHead}"])
        with pytest.raises(ConfigError, match=r"NoClassesHead.call must accept classes="):
            mrcnn_tf.build_model(cfg)
    finally:
        MASK_HEADS.unregister("_NoClassesHead")


def test_num_classes_is_explicit_and_checked_against_the_config():
    cfg = load_config(BASE, ["model.num_classes=3"])
    assert build_model(cfg).num_classes == 3
    assert build_model(load_config(BASE), num_classes=5).box_head.num_classes == 5
    with pytest.raises(ConfigError, match="built for 4 classes"):
        build_model(cfg, num_classes=4)


def test_migration_refuses_contradicting_old_and_new_keys():
    cfg = {
        "model": {
            "max_detections": 5,
            "detection_generator": {"type": "DetectionGenerator", "max_detections": 7},
        }
    }
    with pytest.raises(ConfigError, match=r"detection_generator\.max_detections is 7"):
        migrate_config(cfg)
    cfg = {
        "model": {
            "proposal_generator": {"box_weights": [1, 1, 1, 1]},
            "anchor_labeler": {"box_weights": [2, 2, 1, 1]},
        }
    }
    with pytest.raises(ConfigError, match="the RPN decodes with the weights it was trained with"):
        migrate_config(cfg)
