"""Smooth-L1 against the formula."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_tf.losses.box_losses import SmoothL1Loss


def reference(y_true, y_pred, beta):
    d = np.abs(y_pred.astype(np.float64) - y_true)
    per = d if beta == 0 else np.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta)
    return per.sum(-1)


@pytest.mark.parametrize("beta", [0.0, 1.0 / 9.0, 1.0])
def test_smooth_l1_matches_formula(beta):
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=(3, 5, 4)).astype("float32")
    y_pred = (y_true + rng.normal(scale=0.3, size=y_true.shape)).astype("float32")
    loss = SmoothL1Loss(beta=beta, reduction="none")
    np.testing.assert_allclose(np.asarray(loss(y_true, y_pred)), reference(y_true, y_pred, beta), rtol=1e-5)
    total = SmoothL1Loss(beta=beta)(y_true, y_pred)
    assert float(total) == pytest.approx(reference(y_true, y_pred, beta).sum(), rel=1e-5)


def test_sample_weight_masks_boxes():
    y_true = np.zeros((2, 4), "float32")
    y_pred = np.array([[1, 1, 1, 1], [2, 2, 2, 2]], "float32")
    assert float(SmoothL1Loss()(y_true, y_pred, sample_weight=np.array([1.0, 0.0]))) == pytest.approx(4.0)


def test_negative_beta_rejected():
    with pytest.raises(ValueError, match="beta must be >= 0"):
        SmoothL1Loss(beta=-1)
