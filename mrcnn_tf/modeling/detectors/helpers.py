"""Small pieces of the detector: slot counting, the padding mask, the learning-rate metric."""

from __future__ import annotations

import keras
import tensorflow as tf

__all__ = ["LastValue", "inside_mask", "used_slots"]


class LastValue(keras.metrics.Metric):
    """A metric that shows the last value it was given (the learning rate in the progress bar)."""

    def __init__(self, name: str = "learning_rate", **kwargs):
        super().__init__(name=name, **kwargs)
        self.value = self.add_variable(shape=(), initializer="zeros", name="value", aggregation="mean")

    def update_state(self, value):
        self.value.assign(keras.ops.cast(value, self.dtype))

    def result(self):
        return self.value


def used_slots(used: tf.Tensor) -> tf.Tensor:
    """int32 scalar: the largest number of used slots in a row of ``used`` ``[B, N]`` bool, >= 1.

    Used slots come first in every row (the sampler puts positives first, NMS fills the
    detections from slot 0), so ``[:, :n]`` keeps every used slot of the batch. At least one
    slot, so that the mask head never gets an empty batch.
    """
    return tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(used, tf.int32), axis=1)), 1)


def inside_mask(image_size: tf.Tensor, shape: tf.Tensor) -> tf.Tensor:
    """float32 ``[B, H, W, 1]``: 1 on each image's valid ``image_size`` region, 0 on padding."""
    rows = tf.cast(tf.range(shape[1]), tf.float32)[None, :, None]
    cols = tf.cast(tf.range(shape[2]), tf.float32)[None, None, :]
    inside = (rows < image_size[:, 0, None, None]) & (cols < image_size[:, 1, None, None])
    return tf.cast(inside, tf.float32)[..., None]
