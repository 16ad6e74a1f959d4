"""A neck that passes one backbone map through as a pyramid level (ResNet-C4 models)."""

from __future__ import annotations

import keras

from mrcnn_tf.registries import NECKS


@NECKS.register()
class IdentityNeck(keras.layers.Layer):
    """Rename the backbone's ``feature`` to ``P{level}``, unchanged.

    The paper's ResNet-C4 model runs the RPN and RoIAlign on C4 (stride 16); with this neck
    the rest of the detector sees a pyramid of one level ``P4``.

    Args:
        feature: the backbone output to pass on (``C4``).
        level: its pyramid level, ``log2(stride)`` (4 for C4).

    Call:
        inputs: the backbone's dict, holding ``feature`` ``[B, H/2**level, W/2**level, C]``.

    Returns:
        ``{"P{level}": that map}``.
    """

    def __init__(self, feature: str = "C4", level: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.feature = feature
        self.level = int(level)

    @property
    def output_strides(self) -> dict[str, int]:
        return {f"P{self.level}": 2**self.level}

    def call(self, inputs):
        if self.feature not in inputs:
            raise ValueError(
                f"IdentityNeck passes on '{self.feature}', but the backbone gives {sorted(inputs)}"
            )
        return {f"P{self.level}": inputs[self.feature]}

    def get_config(self):
        config = super().get_config()
        config.update(feature=self.feature, level=self.level)
        return config
