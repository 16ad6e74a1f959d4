"""``MaskRCNN.build()``: the parts-only pass creates exactly the weights of a full inference pass."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import mrcnn_tf
from mrcnn_tf.config import load_config
from mrcnn_tf.modeling.detectors import mask_rcnn
from mrcnn_tf.modeling.rpn.proposal_generator import ProposalGenerator
from mrcnn_tf.registries import PROPOSAL_GENERATORS


def _weights(model) -> list[tuple[str, tuple[int, ...], bool]]:
    """(path, shape, trainable) of every weight; Keras's uniquifying ``_N`` suffixes removed."""
    return sorted((re.sub(r"_\d+(?=/|$)", "", v.path), tuple(v.shape), v.trainable) for v in model.weights)


def _full_pass_build(model, monkeypatch) -> None:
    """The old build: every part unbuilt counts as needing the full 128×128 inference pass."""
    with monkeypatch.context() as patch:
        patch.setattr(mask_rcnn, "_may_need_build", lambda part: part is not None)
        model.build()


@pytest.mark.parametrize(
    "config, overrides",
    [
        ("mask_rcnn_r18_fpn_synthetic.yaml", []),
        ("mask_rcnn_r50_c4_1x_coco.yaml", []),  # the mask head reads the box head's features
        ("keypoint_rcnn_r18_fpn_synthetic.yaml", []),
        ("mask_rcnn_r18_fpn_synthetic.yaml", ["model.mask_loss={type: MultinomialMaskLoss}"]),
    ],
)
def test_parts_only_build_creates_the_same_weights_as_a_full_inference_pass(config, overrides, monkeypatch):
    fast = mrcnn_tf.build_model(load_config(config, overrides))
    full = mrcnn_tf.build_model(load_config(config, overrides))
    fast.build()
    _full_pass_build(full, monkeypatch)
    assert len(fast.weights) > 20
    assert _weights(fast) == _weights(full)
    unbuilt = [k for k in mask_rcnn.COMPONENTS if mask_rcnn._may_need_build(getattr(fast, k))]
    assert unbuilt == []


def test_a_plugin_part_with_its_own_weights_outside_the_fast_pass_is_built_by_the_full_pass():
    @PROPOSAL_GENERATORS.register(name="_ScaledProposals", injected=("box_coder",))
    class ScaledProposals(ProposalGenerator):
        """Proposals from objectness times a learned scale (a weight the fast pass never calls)."""

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

        def call(self, objectness, deltas, anchors, image_size, **kwargs):
            scaled = {k: v * self.scale for k, v in objectness.items()}
            return super().call(scaled, deltas, anchors, image_size, **kwargs)

    try:
        plugin = ["model.proposal_generator.type=_ScaledProposals"]
        cfg = load_config("mask_rcnn_r18_fpn_synthetic.yaml", plugin)
        model = mrcnn_tf.build_model(cfg)
        model.build()
        assert [w.name for w in model.proposal_generator.weights] == ["scale"]  # before any call
        assert float(model.proposal_generator.scale.numpy()) == 1.0
        out = model({"images": np.zeros((1, 64, 64, 3), np.float32)}, training=False)
        assert out["boxes"].shape[-1] == 4
    finally:
        PROPOSAL_GENERATORS.unregister("_ScaledProposals")


def test_a_built_model_loads_weights_saved_from_a_model_built_by_the_full_pass(tmp_path, monkeypatch):
    """Checkpoints written before the parts-only build still load (same weight paths)."""
    cfg = load_config("mask_rcnn_r18_fpn_synthetic.yaml")
    keras.utils.set_random_seed(1)
    old = mrcnn_tf.build_model(cfg)
    _full_pass_build(old, monkeypatch)
    old.save_weights(tmp_path / "old.weights.h5")
    keras.utils.set_random_seed(2)
    new = mrcnn_tf.build_model(cfg)
    new.build()
    new.load_weights(tmp_path / "old.weights.h5")
    by_path = (sorted(m.weights, key=lambda v: v.path) for m in (old, new))
    for a, b in zip(*by_path, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    image = tf.random.uniform([1, 64, 64, 3], 0, 255, seed=3)
    np.testing.assert_allclose(old(image)["boxes"].numpy(), new(image)["boxes"].numpy(), atol=1e-4)
