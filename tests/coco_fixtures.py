"""Hand-written COCO files for the data tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Write a random RGB PNG and return its pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def write_coco(root: Path, images: list[dict], annotations: list[dict], categories: list[dict] | None = None):
    """Write ``root/ann.json``; images listed with ``"_pixels": (h, w)`` get a PNG too.

    Returns:
        ``(annotation_file, image_folder)``.
    """
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for k, image in enumerate(images):
        image = dict(image)
        size = image.pop("_pixels", None)
        if size is not None:
            write_image(image_dir / image["file_name"], *size, seed=k)
        entries.append(image)
    categories = categories if categories is not None else [{"id": 1, "name": "thing"}]
    path = root / "ann.json"
    path.write_text(json.dumps({"images": entries, "annotations": annotations, "categories": categories}))
    return path, image_dir


def image(
    image_id: int, height: int = 40, width: int = 50, name: str | None = None, write: bool = True
) -> dict:
    """An ``images`` entry (and, with ``write``, a PNG of that size)."""
    entry = {"id": image_id, "file_name": name or f"img{image_id}.png", "height": height, "width": width}
    if write:
        entry["_pixels"] = (height, width)
    return entry


def box_ann(ann_id: int, image_id: int, bbox, category_id: int = 1, **extra) -> dict:
    """An annotation whose polygon is its box."""
    x, y, w, h = bbox
    polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": list(bbox),
        "segmentation": [polygon],
        "area": w * h,
        "iscrowd": 0,
        **extra,
    }
