"""Helpers of the torch-tier parity tests: the torch interpreter, a test photo, comparisons."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def torch_python() -> str:
    python = os.environ.get("MRCNN_TF_TORCH_PYTHON", str(ROOT / ".venv-torch" / "bin" / "python"))
    if not Path(python).exists():
        pytest.fail(f"no torch environment at {python}: run `python3 dev.py test-torch`, which creates it")
    return python


def write_photo(path: Path, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A picture with smooth gradients and solid discs (structure for the RPN to find)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1).astype(
        np.uint8
    )
    for _ in range(8):
        cy, cx, r = rng.integers(40, height - 40), rng.integers(40, width - 40), rng.integers(20, 90)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
    Image.fromarray(img).save(path)
    return img


def close(ours, theirs, rtol: float = 1e-4, what: str = "") -> None:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    scale = max(np.abs(theirs).max(), 1e-6)
    err = np.abs(ours - theirs).max() / scale
    assert err <= rtol, f"{what}: max error {err:.2e} of the largest value {scale:.3g}"


def yxyx(xyxy: np.ndarray) -> np.ndarray:
    return xyxy[..., [1, 0, 3, 2]]


def match_detections(boxes, scores, classes, ref_boxes, ref_scores, ref_labels) -> list[tuple[int, int]]:
    """Pair each of our detections with torchvision's of the same class and the nearest box
    (detections whose scores differ by ~1e-6 may come in either order)."""
    pairs, taken = [], set()
    for i in range(len(scores)):
        same = [j for j in range(len(ref_scores)) if ref_labels[j] == classes[i] and j not in taken]
        assert same, f"our detection {i} (class {classes[i]}, score {scores[i]:.4f}) is not torchvision's"
        j = min(same, key=lambda j: np.abs(boxes[i] - ref_boxes[j]).max() + abs(scores[i] - ref_scores[j]))
        taken.add(j)
        pairs.append((i, j))
    return pairs
