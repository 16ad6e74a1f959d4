"""Reading a COCO file's top level and its image entries: the records :class:`CocoDataset` keeps.

Every check reports to a :class:`~mrcnn_tf.data.report.DataReport` (file, image id, annotation
id) instead of stopping at the first bad item.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrcnn_tf.data.category_map import CategoryMap
from mrcnn_tf.data.coco_checks import check_file_name, is_int
from mrcnn_tf.data.images import load_rgb, probe_image
from mrcnn_tf.data.report import DataReport, DatasetError

__all__ = [
    "BACKGROUND_NAMES",
    "ImageRecord",
    "Instance",
    "category_map_of",
    "foreground_categories",
    "load_coco_json",
    "read_image_entry",
]


@dataclass
class Instance:
    """One checked annotation.

    Attributes:
        annotation_id: the annotation's ``id`` (``"annotations[i]"`` when it has none).
        class_id: contiguous class id ``1..K``.
        box: ``[y1, x1, y2, x2]`` in pixels, clipped to the image.
        segmentation: polygons (bad ones removed) or RLE, in the file's frame.
        raw: the annotation as it was in the file (for :meth:`CocoDataset.coco_dict`).
        keypoints: float32 ``[K, 3]`` checked keypoints (:mod:`mrcnn_tf.data.coco_keypoints`),
            None when the dataset has no keypoints.
    """

    annotation_id: object
    class_id: int
    box: list[float]
    segmentation: object
    raw: dict
    keypoints: np.ndarray | None = None


@dataclass
class ImageRecord:
    """One checked image and its instances.

    Attributes:
        image_id: the image's ``id`` (any int, 0 included).
        path: the file, inside the image folder.
        height, width: the size the annotations are drawn on.
        apply_orientation: turn the pixels by their EXIF orientation when decoding.
        instances: the training targets (``iscrowd`` 0).
        crowd: ``iscrowd`` 1 regions (evaluation only).
        raw: the image entry as it was in the file.
    """

    image_id: int
    path: Path
    height: int
    width: int
    apply_orientation: bool = True
    instances: list[Instance] = field(default_factory=list)
    crowd: list[Instance] = field(default_factory=list)
    raw: dict = field(default_factory=dict)


def load_coco_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: annotation file not found") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the annotation file: {exc}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: a COCO file is a JSON object with 'images', 'annotations', 'categories'")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: key '{key}' is missing or not a list (COCO instances format)")
    if not isinstance(data.get("annotations", []), list):
        raise DatasetError(f"{path}: key 'annotations' is not a list")
    return data


#: Names that labelme-style exports give a category 0 that stands for the background.
BACKGROUND_NAMES = ("_background_", "background", "__background__", "bg")


def foreground_categories(path: Path, categories: list, report: DataReport) -> list:
    """``categories`` without a category 0 named like the background (labelme exports one):
    class 0 is the background already, so it must not become a foreground class."""
    kept = []
    for cat in categories:
        if (
            isinstance(cat, dict)
            and cat.get("id") == 0
            and str(cat.get("name", "")).strip().lower() in BACKGROUND_NAMES
        ):
            report.add(
                "background_category",
                "dropped",
                f"category 0 {cat.get('name')!r} is the background, not an object class: it is left out "
                "(its annotations, if any, are dropped as unknown_category); delete it from 'categories'",
            )
            continue
        kept.append(cat)
    return kept


def category_map_of(path: Path, categories: list) -> CategoryMap:
    for k, cat in enumerate(categories):
        if not isinstance(cat, dict) or not is_int(cat.get("id")):
            raise DatasetError(f"{path}: categories[{k}] needs an integer 'id', got {cat!r}")
    ids = [c["id"] for c in categories]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DatasetError(f"{path}: category ids {duplicates} appear more than once in 'categories'")
    if not categories:
        raise DatasetError(f"{path}: 'categories' is empty; a detector needs at least one class")
    return CategoryMap.from_categories(categories)


def read_image_entry(
    images_dir: Path, report: DataReport, k: int, entry: Any, known_ids: set, verify_images: bool = False
) -> ImageRecord | None:
    """Check ``images[k]`` of a COCO file: id, file name, size against the file's header (EXIF
    orientation included), and with ``verify_images`` a full decode. Findings go to ``report``;
    None when the image is left out."""
    if not isinstance(entry, dict) or not is_int(entry.get("id")):
        got = entry.get("id") if isinstance(entry, dict) else entry
        report.add("bad_image_entry", "dropped", f"images[{k}] needs an integer 'id', got {got!r}")
        return None
    image_id = entry["id"]
    if image_id in known_ids:
        report.add(
            "duplicate_image_id", "dropped", f"images[{k}] repeats image id {image_id}", image_id=image_id
        )
        return None
    known_ids.add(image_id)
    path, finding = check_file_name(images_dir, entry.get("file_name"))
    if finding is not None:
        report.add(*finding, image_id=image_id)
        return None
    try:
        header = probe_image(path)
    except (FileNotFoundError, IsADirectoryError):
        report.add(
            "missing_file",
            "dropped",
            f"image file {path} does not exist (file_name {entry['file_name']!r})",
            image_id=image_id,
        )
        return None
    except PermissionError:
        report.add(
            "unreadable_file",
            "dropped",
            f"image file {path} cannot be read (permission denied)",
            image_id=image_id,
        )
        return None
    except (ValueError, OSError) as exc:
        report.add("not_an_image", "dropped", f"{path}: {exc}", image_id=image_id)
        return None
    width, height = entry.get("width"), entry.get("height")
    if width is None and height is None:
        width, height = header.width, header.height
        report.add(
            "size_from_file",
            "fixed",
            f"{path.name}: no width/height in the file; took {width}x{height} from the image",
            image_id=image_id,
        )
    if not (is_int(width) and is_int(height) and width > 0 and height > 0):
        report.add(
            "bad_image_entry",
            "dropped",
            f"{path.name}: width/height must be positive integers, got {width!r}x{height!r}",
            image_id=image_id,
        )
        return None
    apply_orientation = True
    if (width, height) != (header.width, header.height):
        if header.orientation != 1 and (width, height) == header.stored_size:
            apply_orientation = False
            report.add(
                "exif_ignored",
                "fixed",
                f"{path.name}: the annotation size {width}x{height} matches the stored pixels, "
                f"not their EXIF orientation {header.orientation}; the annotations are taken to be "
                "on the stored pixels",
                image_id=image_id,
            )
        else:
            report.add(
                "size_mismatch",
                "dropped",
                f"{path.name}: the annotation file says {width}x{height} but the image is "
                f"{header.width}x{header.height}; fix 'width'/'height' or the file",
                image_id=image_id,
            )
            return None
    if verify_images:
        try:
            load_rgb(path, apply_orientation)
        except (ValueError, OSError) as exc:
            report.add("corrupt_image", "dropped", f"{path}: {exc}", image_id=image_id)
            return None
    return ImageRecord(image_id, path, height, width, apply_orientation, raw=entry)
