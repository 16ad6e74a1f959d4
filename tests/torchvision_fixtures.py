"""Checkpoints with torchvision's real key names and shapes, without torch: the shapes were read
off torchvision 0.29.1 (``tests/fixtures/torchvision/*.json``); the values are random."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mrcnn_tf.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "torchvision"


def shapes(name: str) -> dict[str, list[int]]:
    return json.loads((FIXTURES / f"{name}.json").read_text())["state_dict_shapes"]


def state_dict(name: str, seed: int = 0, old_keys: bool = False) -> dict[str, np.ndarray]:
    """Random arrays with torchvision's key names and shapes (``old_keys``: its 2019 names)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in shapes(name).items():
        if old_keys:
            key = key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
            for i in range(4):
                key = key.replace(f"inner_blocks.{i}.0.", f"inner_blocks.{i}.").replace(
                    f"layer_blocks.{i}.0.", f"layer_blocks.{i}."
                )
                key = key.replace(f"roi_heads.mask_head.{i}.0.", f"roi_heads.mask_head.mask_fcn{i + 1}.")
        value = rng.normal(0, 0.01, shape).astype(np.float32)
        if key.endswith("running_var"):
            value = np.abs(value) + 1.0
        if key.endswith("num_batches_tracked"):
            value = np.asarray(0, np.int64)
        out[key] = value
    return out


def convert(checkpoint: Path, out: Path, *extra: str) -> int:
    return main(["convert", "torchvision", str(checkpoint), "--out", str(out), *extra])
