"""Classification losses and the detector's loss normalisers vs float64 formulas."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.losses.box_losses import SmoothL1Loss
from mrcnn_tf.losses.classification_losses import SigmoidCrossEntropyLoss, SoftmaxCrossEntropyLoss
from mrcnn_tf.modeling.detectors import targets


def test_sigmoid_cross_entropy_matches_formula_including_extreme_logits():
    z = np.array([-100.0, -3.0, 0.0, 2.5, 80.0], np.float32)
    y = np.array([0.0, 1.0, 0.5, 0.0, 1.0], np.float32)
    p = 1 / (1 + np.exp(-z.astype(np.float64)))
    with np.errstate(divide="ignore", invalid="ignore"):
        expect = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    expect[0], expect[4] = 0.0, 0.0  # limits at the saturated ends (the stable form gets them)
    out = SigmoidCrossEntropyLoss(reduction="none")(y, z).numpy()
    np.testing.assert_allclose(out, expect, atol=1e-6)


def test_softmax_cross_entropy_matches_formula():
    z = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32) * 4
    y = np.array([0, 4, 2])
    z64 = z.astype(np.float64)
    expect = np.log(np.exp(z64).sum(axis=1)) - z64[np.arange(3), y]
    np.testing.assert_allclose(SoftmaxCrossEntropyLoss(reduction="none")(y, z).numpy(), expect, atol=1e-5)


def test_select_class_picks_the_gt_channel():
    per_class = tf.reshape(tf.range(2 * 3 * 2 * 4, dtype=tf.float32), [2, 3, 2, 4])
    classes = tf.constant([[1, 4, 2], [3, 0, 4]])
    out = targets.select_class(per_class, classes).numpy()
    values = per_class.numpy()
    for b in range(2):
        for n in range(3):
            np.testing.assert_array_equal(out[b, n], values[b, n, :, max(classes.numpy()[b, n], 1) - 1])


def test_detector_losses_use_detectron2_normalisers():
    rng = np.random.default_rng(1)
    b, s, r, m = 2, 8, 6, 3
    out = {
        "rpn_logits": rng.normal(size=(b, s)).astype(np.float32),
        "rpn_deltas": rng.normal(size=(b, s, 4)).astype(np.float32),
        "rpn_box_targets": rng.normal(size=(b, s, 4)).astype(np.float32),
        "rpn_positive": rng.random((b, s)) < 0.3,
        "rpn_valid": rng.random((b, s)) < 0.8,
        "box_logits": rng.normal(size=(b, r, 4)).astype(np.float32),
        "box_classes": rng.integers(0, 4, (b, r)).astype(np.int32),
        "box_deltas": rng.normal(size=(b, r, 4)).astype(np.float32),
        "box_targets": rng.normal(size=(b, r, 4)).astype(np.float32),
        "box_positive": rng.random((b, r)) < 0.4,
        "box_valid": rng.random((b, r)) < 0.9,
        "mask_logits": rng.normal(size=(b, 2, m, m)).astype(np.float32),
        "mask_targets": (rng.random((b, 2, m, m)) < 0.5).astype(np.float32),
        "mask_positive": np.array([[True, False], [True, True]]),
    }
    fns = {
        "rpn_objectness": SigmoidCrossEntropyLoss(),
        "rpn_box": SmoothL1Loss(),
        "box_cls": SoftmaxCrossEntropyLoss(),
        "box_reg": SmoothL1Loss(),
        "mask": SigmoidCrossEntropyLoss(),
    }
    got = {k: float(v) for k, v in targets.losses(fns, out).items()}

    def bce(z, y):
        z = z.astype(np.float64)
        return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))

    o = out
    rpn_pos = o["rpn_positive"]
    assert got["rpn_objectness"] == pytest.approx(
        (bce(o["rpn_logits"], rpn_pos) * o["rpn_valid"]).sum() / (b * s), rel=1e-5
    )
    l1 = np.abs(o["rpn_deltas"].astype(np.float64) - o["rpn_box_targets"]).sum(-1)
    assert got["rpn_box"] == pytest.approx((l1 * rpn_pos).sum() / (b * s), rel=1e-5)
    z = o["box_logits"].astype(np.float64)
    ce = np.log(np.exp(z).sum(-1)) - np.take_along_axis(z, o["box_classes"][..., None], -1)[..., 0]
    n = o["box_valid"].sum()
    assert got["box_cls"] == pytest.approx((ce * o["box_valid"]).sum() / n, rel=1e-5)
    l1 = np.abs(o["box_deltas"].astype(np.float64) - o["box_targets"]).sum(-1)
    assert got["box_reg"] == pytest.approx((l1 * o["box_positive"]).sum() / n, rel=1e-5)
    mask = bce(o["mask_logits"], o["mask_targets"]) * o["mask_positive"][..., None, None]
    assert got["mask"] == pytest.approx(mask.sum() / (3 * m * m), rel=1e-5)
