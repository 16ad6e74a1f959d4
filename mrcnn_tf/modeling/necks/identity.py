"""A neck that passes one backbone map through as a pyramid level (ResNet-C4 models)."""

from __future__ import annotations

from collections.abc import Mapping

from mrcnn_tf.modeling.base import FeatureSpec, Neck
from mrcnn_tf.registries import NECKS


@NECKS.register()
class IdentityNeck(Neck):
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

    def output_levels(self) -> list[str]:
        return [f"P{self.level}"]

    def output_specs(self, input_specs: Mapping[str, FeatureSpec]) -> dict[str, FeatureSpec]:
        """``{"P{level}": the spec of feature}``; its stride must be ``2**level``."""
        if self.feature not in input_specs:
            raise ValueError(
                f"IdentityNeck passes on '{self.feature}', but the backbone gives {sorted(input_specs)}"
            )
        spec = input_specs[self.feature]
        if spec.stride != 2**self.level:
            raise ValueError(
                f"IdentityNeck level {self.level} means stride {2**self.level}, but the backbone's "
                f"'{self.feature}' is at stride {spec.stride}; set neck.level to log2 of it"
            )
        return {f"P{self.level}": spec}

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
