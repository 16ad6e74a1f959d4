"""The examples run as documented (at a tiny size)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from mrcnn_tf.config import load_config
from mrcnn_tf.registries import BACKBONES, NECKS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_plugin_example_config_selects_the_plugin_backbone_and_runs(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES / "plugin_package"))
    cfg = load_config(EXAMPLES / "plugin_package" / "plugin_config.yaml")
    assert cfg["model"]["backbone"] == {
        "type": "SimpleConvNet",
        "width": 16,
    }  # _delete_ dropped ResNet's keys
    assert cfg["imports"] == ["my_mrcnn_plugin.backbones"]
    backbone = BACKBONES.build(cfg["model"]["backbone"])
    features = NECKS.build(cfg["model"]["neck"])(backbone(np.zeros((1, 64, 64, 3), "float32")))
    assert {k: tuple(v.shape) for k, v in features.items()}["P2"] == (1, 16, 16, 128)
    assert "my_mrcnn_plugin.backbones" in sys.modules
