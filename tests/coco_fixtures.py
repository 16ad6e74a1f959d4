"""Hand-written COCO files for the data tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

#: The colour of each class in :func:`write_solid_shapes`.
COLOURS = {1: (230, 30, 30), 2: (30, 230, 30), 3: (40, 40, 240)}


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


def write_solid_shapes(root: Path):
    """Three images of solid-coloured shapes on black: polygons, compressed RLE, an L shape."""
    (root / "images").mkdir()
    h, w = 60, 80
    images, anns = [], []
    for image_id in range(3):
        pixels = np.zeros((h, w, 3), np.uint8)
        segs = [
            [[5.0 + 3 * image_id, 8.0, 35.0, 8.0, 35.0, 28.0, 5.0 + 3 * image_id, 28.0]],  # rectangle
            [[50.0, 5.0, 75.0, 40.0, 45.0 + image_id, 35.0]],  # triangle
        ]
        lshape = np.zeros((h, w), np.uint8)
        lshape[35:58, 10:20] = 1
        lshape[48:58, 20:45] = 1
        lshape_rle = mask_utils.encode(np.asfortranarray(lshape))
        segs.append({"size": [h, w], "counts": lshape_rle["counts"].decode()})
        for k, seg in enumerate(segs):
            if isinstance(seg, list):
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            else:
                rle = lshape_rle
            mask = mask_utils.decode(rle).astype(bool)
            pixels[mask] = COLOURS[k + 1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": k + 1,
                    "segmentation": seg,
                    "bbox": mask_utils.toBbox(rle).tolist(),
                    "iscrowd": 0,
                }
            )
        Image.fromarray(pixels).save(root / "images" / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": h, "width": w})
    cats = [{"id": k, "name": f"c{k}"} for k in COLOURS]
    (root / "ann.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root / "ann.json", root / "images"
