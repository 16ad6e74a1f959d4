"""Learning-rate schedules: linear warmup, then step or cosine decay (Detectron2's ``WarmupMultiStepLR``
and ``WarmupCosineLR``).

Both are functions of the optimizer step (``optimizer.iterations``), so a run restored from a
checkpoint continues at the same point of its schedule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import tensorflow as tf

from mrcnn_tf.registries import SCHEDULES


def _warmup(step: tf.Tensor, warmup_steps: int, warmup_factor: float) -> tf.Tensor:
    """Detectron2's linear warmup factor: ``warmup_factor`` at step 0, 1 at ``warmup_steps``."""
    if warmup_steps <= 0:
        return tf.constant(1.0)
    alpha = tf.minimum(step / float(warmup_steps), 1.0)
    return warmup_factor * (1.0 - alpha) + alpha


class _Warmup(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, base_learning_rate: float, warmup_steps: int, warmup_factor: float):
        if base_learning_rate <= 0:
            raise ValueError(f"base_learning_rate must be > 0, got {base_learning_rate}")
        if warmup_steps < 0 or not 0 <= warmup_factor <= 1:
            raise ValueError("warmup_steps must be >= 0 and warmup_factor in [0, 1]")
        self.base_learning_rate = float(base_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)

    def scaled(self, factor: float) -> _Warmup:
        """The same schedule with ``base_learning_rate`` multiplied by ``factor``."""
        config = self.get_config()
        config["base_learning_rate"] *= factor
        return type(self)(**config)

    def decay(self, step: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        factor = _warmup(step, self.warmup_steps, self.warmup_factor) * self.decay(step)
        return self.base_learning_rate * factor

    def get_config(self) -> dict:
        return {
            "base_learning_rate": self.base_learning_rate,
            "warmup_steps": self.warmup_steps,
            "warmup_factor": self.warmup_factor,
        }


@SCHEDULES.register(aliases=("step", "multistep"))
class WarmupStepDecay(_Warmup):
    """Linear warmup, then the rate is multiplied by ``gamma`` at each milestone.

    ``lr(t) = base_learning_rate * w(t) * gamma ** (number of milestones <= t)`` with
    ``w(t) = warmup_factor * (1 - a) + a``, ``a = min(t / warmup_steps, 1)``.

    Args:
        base_learning_rate: the rate after warmup (before any scaling with the batch size).
        milestones: optimizer steps at which the rate drops (increasing).
        gamma: the factor of each drop.
        warmup_steps, warmup_factor: linear warmup from ``warmup_factor * base`` to ``base``.
    """

    def __init__(
        self,
        base_learning_rate: float = 0.02,
        milestones: Sequence[int] = (),
        gamma: float = 0.1,
        warmup_steps: int = 1000,
        warmup_factor: float = 0.001,
    ):
        super().__init__(base_learning_rate, warmup_steps, warmup_factor)
        self.milestones = [int(m) for m in milestones]
        if self.milestones != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")
        self.gamma = float(gamma)

    def decay(self, step):
        if not self.milestones:
            return tf.constant(1.0)
        passed = tf.reduce_sum(tf.cast(step >= tf.constant(self.milestones, tf.float32), tf.float32))
        return tf.pow(self.gamma, passed)

    def get_config(self) -> dict:
        return {**super().get_config(), "milestones": list(self.milestones), "gamma": self.gamma}


@SCHEDULES.register(aliases=("cosine",))
class WarmupCosineDecay(_Warmup):
    """Linear warmup, then a half cosine from the base rate to ``final_factor`` × base at ``total_steps``.

    ``lr(t) = base_learning_rate * w(t) * (f + (1 - f) * (1 + cos(pi * min(t, T) / T)) / 2)``
    (``f = final_factor``, ``T = total_steps``; Detectron2 also measures the cosine from step 0).

    Args:
        base_learning_rate: the peak rate.
        total_steps: where the cosine ends; the trainer fills in ``train.max_steps`` when 0.
        final_factor: the rate at the end, as a fraction of the base.
        warmup_steps, warmup_factor: as for :class:`WarmupStepDecay`.
    """

    def __init__(
        self,
        base_learning_rate: float = 0.02,
        total_steps: int = 0,
        final_factor: float = 0.0,
        warmup_steps: int = 1000,
        warmup_factor: float = 0.001,
    ):
        super().__init__(base_learning_rate, warmup_steps, warmup_factor)
        self.total_steps = int(total_steps)
        self.final_factor = float(final_factor)

    def decay(self, step):
        if self.total_steps <= 0:
            return tf.constant(1.0)
        progress = tf.minimum(step, float(self.total_steps)) / float(self.total_steps)
        cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
        return self.final_factor + (1.0 - self.final_factor) * cosine

    def get_config(self) -> dict:
        return {**super().get_config(), "total_steps": self.total_steps, "final_factor": self.final_factor}
