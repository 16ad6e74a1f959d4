"""The built-in synthetic dataset: coloured circles, squares and triangles on textured ground.

Written to disk as a real COCO instances file plus PNG images, so that training on it runs
through exactly the reader and checks that users' data does. Shapes overlap: a shape drawn
later hides part of an earlier one, whose mask is then the visible part only (stored as
compressed RLE; unoccluded shapes are stored as polygons, so both formats are exercised).
Image ids start at 0. Generation is deterministic in ``seed`` and ``split``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

from mrcnn_tf.data.coco import CocoDataset
from mrcnn_tf.data.report import DatasetError
from mrcnn_tf.registries import DATASETS

__all__ = [
    "CLASSES",
    "SyntheticDataset",
    "default_cache_dir",
    "generate_synthetic_coco",
    "random_model_batch",
]

#: Category names; their dataset ids are 1, 2, 3.
CLASSES = ("circle", "square", "triangle")
_SPLITS = {"train": 1, "val": 2, "test": 3}
#: A shape hidden beyond this fraction by later shapes is not drawn at all.
MIN_VISIBLE = 0.4


def default_cache_dir() -> Path:
    """``$MRCNN_TF_CACHE`` or ``~/.cache/mrcnn_tf``."""
    return Path(os.environ.get("MRCNN_TF_CACHE") or Path.home() / ".cache" / "mrcnn_tf")


def random_model_batch(batch: int, size: int, instances: int = 8, mask_size: int = 28, seed: int = 0) -> dict:
    """A random training batch in the model's input format, for benchmarks and smoke tests.

    Returns NumPy arrays: ``images`` float32 ``[B, size, size, 3]`` in 0..255, ``gt_boxes``
    float32 ``[B, G, 4]`` ``[y1, x1, y2, x2]`` pixels (sides 10–40 % of the image),
    ``gt_classes`` int32 ``[B, G]`` in 1..3, ``gt_masks`` float32 ``[B, G, M, M]`` 0/1 noise
    (box-cropped masks), with ``G = instances`` and ``M = mask_size``.
    """
    rng = np.random.default_rng(seed)
    yx = rng.uniform(0, size * 0.6, (batch, instances, 2))
    hw = rng.uniform(size * 0.1, size * 0.4, (batch, instances, 2))
    return {
        "images": rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32),
        "gt_boxes": np.concatenate([yx, yx + hw], -1).astype(np.float32),
        "gt_classes": rng.integers(1, 4, (batch, instances)).astype(np.int32),
        "gt_masks": (rng.random((batch, instances, mask_size, mask_size)) > 0.3).astype(np.float32),
    }


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A background: a colour gradient, soft stripes and pixel noise; float ``[H, W, 3]``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(30, 200, (2, 3))
    angle = rng.uniform(0, np.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    image = c0 + (c1 - c0) * ramp[..., None] * 0.8
    freq, phase, stripe_angle = rng.uniform(3, 12), rng.uniform(0, 2 * np.pi), rng.uniform(0, np.pi)
    stripes = np.sin(2 * np.pi * freq * (np.cos(stripe_angle) * xx + np.sin(stripe_angle) * yy) + phase)
    image = image + 18.0 * stripes[..., None] + rng.normal(0, 6, (size, size, 3))
    return image


def _polygon(rng: np.random.Generator, kind: int, size: int, crowding: float) -> list[float]:
    """A random circle (48-gon), square or triangle, rotated, as a flat ``[x, y, ...]`` list.

    Shapes shrink by ``1 / sqrt(crowding)`` so that many of them still fit (and stay visible).
    """
    scale = 1.0 / np.sqrt(max(crowding, 1.0))
    radius = rng.uniform(size / 14, size / 5) * scale
    cx, cy = rng.uniform(radius * 0.5, size - radius * 0.5, 2)
    corners = {1: 48, 2: 4, 3: 3}[kind]
    angles = rng.uniform(0, 2 * np.pi) + np.arange(corners) * 2 * np.pi / corners
    points = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], -1)
    points = np.clip(points, 0, size)
    return [round(float(v), 2) for v in points.reshape(-1)]


def drop_hidden(masks: list[np.ndarray], occluders: np.ndarray) -> tuple[list[int], list[np.ndarray]]:
    """Instances drawn in order (later ones on top, all under ``occluders``): drop the first one
    hidden beyond ``1 - MIN_VISIBLE`` until none is; returns (kept indices, their visible masks)."""
    kept = list(range(len(masks)))
    while True:
        covered = occluders.copy()
        visible = [None] * len(kept)
        for n in range(len(kept) - 1, -1, -1):
            visible[n] = masks[kept[n]] & ~covered
            covered |= masks[kept[n]]
        hidden = [n for n, v in enumerate(visible) if v.sum() < MIN_VISIBLE * masks[kept[n]].sum()]
        if not hidden:
            return kept, visible
        del kept[hidden[0]]


def paint(rng: np.random.Generator, size: int, masks_and_colours) -> tuple[np.ndarray, np.ndarray]:
    """The textured ground with each ``(mask, colour)`` painted over it in order, plus a little
    shading noise; returns (float image ``[size, size, 3]``, the shading ``[size, size, 1]``)."""
    image = _texture(rng, size)
    shade = rng.normal(0, 8, (size, size, 1))
    for mask, colour in masks_and_colours:
        image[mask] = colour + shade[mask]
    return image, shade


def _image_and_annotations(rng, image_id, size, min_instances, max_instances, next_ann_id):
    shapes = []
    for _ in range(int(rng.integers(min_instances, max_instances + 1))):
        kind = int(rng.integers(1, len(CLASSES) + 1))
        poly = _polygon(rng, kind, size, max_instances / 6)
        rle = mask_utils.frPyObjects([poly], size, size)[0]
        shapes.append((kind, poly, mask_utils.decode(rle).astype(bool), rng.uniform(0, 255, 3)))
    kept, visible = drop_hidden([s[2] for s in shapes], np.zeros((size, size), bool))
    shapes = [shapes[i] for i in kept]
    image, _ = paint(rng, size, [(s[2], s[3]) for s in shapes])
    annotations = []
    for (kind, poly, mask, _), vis in zip(shapes, visible, strict=True):
        rle = mask_utils.encode(np.asfortranarray(vis.astype(np.uint8)))
        occluded = vis.sum() < mask.sum()
        segmentation = {"size": [size, size], "counts": rle["counts"].decode("ascii")} if occluded else [poly]
        annotations.append(
            {
                "id": next_ann_id + len(annotations),
                "image_id": image_id,
                "category_id": kind,
                "segmentation": segmentation,
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "area": float(mask_utils.area(rle)),
                "iscrowd": 0,
            }
        )
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), annotations


def generate_synthetic_coco(
    root: str | os.PathLike,
    split: str = "train",
    num_images: int = 64,
    image_size: int = 128,
    min_instances: int = 1,
    max_instances: int = 6,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write (or reuse) one split of the synthetic dataset under ``root``.

    Layout: ``root/annotations/instances_<split>.json`` and ``root/<split>/<id>.png``. An
    existing split made with the same arguments is reused; one made with other arguments is
    never overwritten (:class:`DatasetError`).

    Returns:
        ``(annotations_file, images_dir)``.
    """
    root = Path(root)
    params = {
        "num_images": num_images,
        "image_size": image_size,
        "min_instances": min_instances,
        "max_instances": max_instances,
        "seed": seed,
        "split": split,
    }
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES)]

    def make(rng, image_id, next_ann_id):
        return _image_and_annotations(rng, image_id, image_size, min_instances, max_instances, next_ann_id)

    return write_coco_split(root, split, params, make, categories, "mrcnn_tf synthetic shapes")


def write_coco_split(root: Path, split: str, params: dict, make, categories: list, description: str):
    """Write (or reuse) ``root/annotations/instances_<split>.json`` and ``root/<split>/<id>.png``.

    ``make(rng, image_id, next_annotation_id)`` returns ``(uint8 image [H, W, 3], annotations)``
    for ``params["num_images"]`` images; ``rng`` is seeded with ``params["seed"]`` and the split.
    A split made with the same ``params`` is reused; one made with others is never overwritten
    (:class:`DatasetError`). The images go to a staging folder first and the annotation file
    last, so an interrupted run leaves no annotation file (and is redone).

    Raises:
        DatasetError: ``split`` is not a split, or the instance counts are not
            ``1 <= min_instances <= max_instances``; a split made with other ``params``.
    """
    low, high = params["min_instances"], params["max_instances"]
    if split not in _SPLITS:
        raise DatasetError(f"synthetic split must be one of {list(_SPLITS)}, got {split!r}")
    if not 1 <= low <= high:
        raise DatasetError(f"need 1 <= min_instances <= max_instances, got {low}, {high}")
    ann_path, images_dir = root / "annotations" / f"instances_{split}.json", root / split
    if ann_path.exists():
        with open(ann_path, encoding="utf-8") as handle:
            made_with = json.load(handle).get("info", {}).get("mrcnn_tf_synthetic")
        if made_with != params:
            raise DatasetError(
                f"{ann_path} exists and was not made with {params}; choose another root "
                "(nothing was overwritten)"
            )
        return ann_path, images_dir
    rng = np.random.default_rng([params["seed"], _SPLITS[split]])
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{split}-", dir=root))
    images, annotations = [], []
    for image_id in range(params["num_images"]):
        image, anns = make(rng, image_id, len(annotations) + 1)
        name = f"{image_id:06d}.png"
        Image.fromarray(image).save(staging / name)
        images.append({"id": image_id, "file_name": name, "width": image.shape[1], "height": image.shape[0]})
        annotations.extend(anns)
    data = {
        "info": {"description": description, "mrcnn_tf_synthetic": params},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    if images_dir.exists():  # left over from an interrupted run (there is no annotation file)
        shutil.rmtree(images_dir)
    os.replace(staging, images_dir)
    ann_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = ann_path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, ann_path)
    return ann_path, images_dir


@DATASETS.register()
class SyntheticDataset(CocoDataset):
    """The built-in synthetic shapes dataset (3 classes), generated on first use.

    Args:
        split: ``train``, ``val`` or ``test`` (different images for the same seed).
        num_images, image_size, min_instances, max_instances, seed: what to generate.
        root: where to write it; by default a folder under :func:`default_cache_dir` named
            after a hash of the arguments, so different settings never collide.
    """

    def __init__(
        self,
        split: str = "train",
        num_images: int = 64,
        image_size: int = 128,
        min_instances: int = 1,
        max_instances: int = 6,
        seed: int = 0,
        root: str | os.PathLike | None = None,
    ):
        params = (num_images, image_size, min_instances, max_instances, seed)
        if root is None:
            digest = hashlib.sha256(repr(params).encode()).hexdigest()[:10]
            root = default_cache_dir() / f"synthetic-{digest}"
        self.split = split
        self.root = Path(root)
        ann, images = generate_synthetic_coco(self.root, split, *params)
        super().__init__(ann, images, strict=True)
