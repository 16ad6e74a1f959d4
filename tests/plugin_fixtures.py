"""Helpers that lay out a fake installed distribution with an ``mrcnn_tf.plugins`` entry point."""

from __future__ import annotations

import textwrap
from pathlib import Path

TINY_BACKBONE = '''
import keras
from mrcnn_tf.modeling.base import Backbone, FeatureSpec
from mrcnn_tf.registries import BACKBONES


@BACKBONES.register()
class TinyPluginNet(Backbone):
    """A one-conv backbone from a third-party plugin package."""

    def output_specs(self):
        return {"C2": FeatureSpec(self.channels, 4)}

    def __init__(self, channels=8, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.conv = keras.layers.Conv2D(channels, 3, strides=4, padding="same")

    def call(self, inputs):
        return {"C2": self.conv(inputs)}

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}
'''


def make_distribution(
    root: Path, module_source: str, *, module: str = "tiny_plugin_pkg", name: str = "tiny"
) -> Path:
    """Write ``module`` and a ``.dist-info`` declaring it under ``mrcnn_tf.plugins``; return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(module_source), encoding="utf-8")
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[mrcnn_tf.plugins]\n{name} = {module}\n", encoding="utf-8")
    return root
