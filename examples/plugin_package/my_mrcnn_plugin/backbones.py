"""A tiny backbone, registered by name so that configs can select it with ``type: SimpleConvNet``."""

from __future__ import annotations

import keras

from mrcnn_tf.modeling.base import Backbone, FeatureSpec
from mrcnn_tf.registries import BACKBONES


@BACKBONES.register()
class SimpleConvNet(Backbone):
    """A plain stride-2 conv stack returning C2–C5 (an example plugin, not a good backbone).

    Args:
        width: channels of C2; each later level doubles them.

    Call:
        inputs: ``[B, H, W, 3]`` float32 normalised images.

    Returns:
        ``{"C2": [B, H/4, W/4, width], ..., "C5": [B, H/32, W/32, 8 * width]}``.
    """

    def __init__(self, width: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.convs = [
            keras.layers.Conv2D(width * 2 ** max(i - 1, 0), 3, strides=2, padding="same", activation="relu")
            for i in range(5)
        ]

    def output_specs(self) -> dict[str, FeatureSpec]:
        """C2..C5 at strides 4..32 with width, 2·width, 4·width, 8·width channels."""
        return {f"C{k}": FeatureSpec(self.width * 2 ** (k - 2), 2**k) for k in range(2, 6)}

    def call(self, inputs):
        x = inputs
        out = {}
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i >= 1:
                out[f"C{i + 1}"] = x
        return out

    def get_config(self):
        return {**super().get_config(), "width": self.width}
