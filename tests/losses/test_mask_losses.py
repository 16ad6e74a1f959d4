"""The multinomial (softmax) mask loss of the paper's Table 2b vs float64 formulas."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_tf.losses.classification_losses import SigmoidCrossEntropyLoss
from mrcnn_tf.losses.mask_losses import MultinomialMaskLoss


def _softmax_with_background(z):
    z = np.concatenate([np.zeros_like(z[..., :1]), z.astype(np.float64)], axis=-1)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_loss_is_the_cross_entropy_of_a_softmax_with_a_zero_background_logit():
    rng = np.random.default_rng(0)
    z = (rng.normal(size=(2, 3, 4, 4, 5)) * 3).astype(np.float32)
    y = rng.dirichlet(np.ones(6), size=(2, 3, 4, 4)).astype(np.float32)
    expect = -(y * np.log(_softmax_with_background(z))).sum(-1)
    out = MultinomialMaskLoss(reduction="none")(y, z).numpy()
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-5)


def test_with_one_channel_it_equals_the_sigmoid_loss():
    rng = np.random.default_rng(1)
    z = (rng.normal(size=(2, 3, 4, 4, 1)) * 4).astype(np.float32)
    t = (rng.random((2, 3, 4, 4)) < 0.5).astype(np.float32)
    targets = MultinomialMaskLoss.targets(t, np.ones((2, 3), "int32"), 1)
    multinomial = MultinomialMaskLoss(reduction="none")(targets, z).numpy()
    sigmoid = SigmoidCrossEntropyLoss(reduction="none")(t, z[..., 0]).numpy()
    np.testing.assert_allclose(multinomial, sigmoid, rtol=1e-5, atol=1e-6)


def test_targets_put_t_on_the_class_channel_and_the_rest_on_background():
    t = np.array([[[[0.0, 1.0], [0.25, 1.0]]], [[[1.0, 0.0], [0.0, 0.0]]]], "float32")  # [2, 1, 2, 2]
    classes = np.array([[3], [1]], "int32")
    out = np.asarray(MultinomialMaskLoss.targets(t, classes, 3))  # [2, 1, 2, 2, 4]
    assert out.shape == (2, 1, 2, 2, 4)
    np.testing.assert_allclose(out[0, 0, 1, 0], [0.75, 0.0, 0.0, 0.25])
    np.testing.assert_allclose(out[0, 0, 0, 1], [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(out[1, 0, 0, 0], [0.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(out.sum(-1), 1.0)


@pytest.mark.parametrize("channels", [3, 1])
def test_soft_masks_are_the_class_against_its_strongest_rival(channels):
    rng = np.random.default_rng(2)
    z = (rng.normal(size=(2, 4, 3, 3, channels)) * 2).astype(np.float32)
    classes = np.array([[1, 2, 3, 0], [3, 3, 1, 2]], "int32")
    out = np.asarray(MultinomialMaskLoss.probabilities(z, classes))
    probs = _softmax_with_background(z)
    for b in range(2):
        for n in range(4):
            c = 1 if channels == 1 else max(classes[b, n], 1)
            rival = np.delete(probs[b, n], c, axis=-1).max(-1)
            expect = probs[b, n, :, :, c] / (probs[b, n, :, :, c] + rival)
            np.testing.assert_allclose(out[b, n], expect, rtol=1e-5, atol=1e-6)
            wins = probs[b, n].argmax(-1) == c
            np.testing.assert_array_equal(out[b, n] >= 0.5, wins)  # 0.5 threshold = argmax labelling
