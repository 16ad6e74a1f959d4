"""Learning-rate schedules against float64 formulas; weight decay skips norm and bias parameters."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from mrcnn_tf.registries import load_builtins

load_builtins()

from mrcnn_tf.training.optimizers import SGD, AdamW  # noqa: E402
from mrcnn_tf.training.schedules import WarmupCosineDecay, WarmupStepDecay  # noqa: E402


def reference_step(t, base, milestones, gamma, warmup, factor):
    alpha = min(t / warmup, 1.0) if warmup else 1.0
    w = factor * (1 - alpha) + alpha
    return base * w * gamma ** sum(t >= m for m in milestones)


def reference_cosine(t, base, total, final, warmup, factor):
    alpha = min(t / warmup, 1.0) if warmup else 1.0
    w = factor * (1 - alpha) + alpha
    p = min(t, total) / total
    return base * w * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * p)))


@pytest.mark.parametrize("step", [0, 1, 50, 99, 100, 101, 599, 600, 799, 800, 5000])
def test_warmup_step_decay_matches_the_formula(step):
    schedule = WarmupStepDecay(0.02, milestones=[600, 800], gamma=0.1, warmup_steps=100, warmup_factor=0.001)
    expected = reference_step(step, 0.02, [600, 800], 0.1, 100, 0.001)
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("step", [0, 10, 20, 21, 250, 500, 999, 1000, 1500])
def test_warmup_cosine_matches_the_formula(step):
    schedule = WarmupCosineDecay(
        0.01, total_steps=1000, final_factor=0.05, warmup_steps=20, warmup_factor=0.1
    )
    expected = reference_cosine(step, 0.01, 1000, 0.05, 20, 0.1)
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-9)


def test_schedule_scaling_and_serialization():
    schedule = WarmupStepDecay(0.02, milestones=[10], warmup_steps=0)
    assert float(schedule.scaled(0.5)(20)) == pytest.approx(0.001)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert type(restored) is WarmupStepDecay and restored.get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="increasing"):
        WarmupStepDecay(milestones=[20, 10])


def _model():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="dense")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, keras.layers.Dense(1, use_bias=False, name="out")(x))


@pytest.mark.parametrize("cls", [SGD, AdamW])
def test_weight_decay_skips_biases_and_norm_parameters(cls):
    model = _model()
    variables = model.trainable_variables
    before = {v.path: np.array(v.numpy(), np.float64) for v in variables}
    for v in variables:  # non-zero values everywhere, so decay would show
        v.assign(np.full(v.shape, 0.5, np.float32))
    lr, wd = 0.1, 0.01
    optimizer = cls(learning_rate=lr, weight_decay=wd)
    optimizer.apply_gradients([(np.zeros(v.shape, np.float32), v) for v in variables])
    for v in variables:
        name = v.path.split("/")[-1]
        value = np.asarray(v.numpy(), np.float64)
        if name in ("bias", "gamma", "beta"):
            np.testing.assert_allclose(value, 0.5, rtol=0, atol=1e-7, err_msg=v.path)
        else:  # decoupled decay: w -= lr * wd * w (zero gradient, zero moments)
            np.testing.assert_allclose(value, 0.5 * (1 - lr * wd), rtol=1e-6, err_msg=v.path)
    assert before  # the model had variables of each kind
    assert {v.path.split("/")[-1] for v in variables} == {"kernel", "bias", "gamma", "beta"}


def test_build_optimizer_scales_the_rate_with_the_batch_and_fills_cosine_length():
    from mrcnn_tf.training.settings import TrainSettings
    from mrcnn_tf.training.trainer import build_optimizer

    cfg = {
        "optimizer": {"type": "SGD", "momentum": 0.9},
        "schedule": {"type": "WarmupCosineDecay", "base_learning_rate": 0.02, "warmup_steps": 0},
    }
    settings = TrainSettings(max_steps=1000, steps_per_loop=100, reference_batch_size=16)
    optimizer = build_optimizer(cfg, settings, global_batch_size=64)
    schedule = optimizer.learning_rate if callable(optimizer.learning_rate) else optimizer._learning_rate
    assert isinstance(optimizer, SGD)
    assert float(schedule(0)) == pytest.approx(0.08)  # 0.02 * 64 / 16
    assert float(schedule(500)) == pytest.approx(0.04)  # half-way down the cosine over max_steps
    assert float(schedule(1000)) == pytest.approx(0.0, abs=1e-9)
    skip = build_optimizer(cfg, TrainSettings(max_steps=100, nonfinite="skip"), global_batch_size=16)
    assert type(skip).__name__ == "LossScaleOptimizer" and skip.initial_scale == 1.0
