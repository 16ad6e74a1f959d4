"""Checks of single COCO entries: image paths, boxes and segmentations.

Each check returns the cleaned value (or ``None`` when the item must be dropped) and a list
of ``(kind, action, message)`` findings; :mod:`mrcnn_tf.data.coco` attaches the ids and the
file. Nothing here reads pixels.
"""

from __future__ import annotations

import math
import os
import posixpath
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrcnn_tf.data.rle import decompress_counts

__all__ = ["check_box", "check_file_name", "check_segmentation", "is_int"]

Finding = tuple[str, str, str]

#: Boxes may overshoot the image by this many pixels (float noise) without a finding.
BOX_TOLERANCE = 1e-3


def is_int(value: object) -> bool:
    """An int, not a bool (JSON ``true`` is not an id)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_file_name(images_dir: Path, file_name: object) -> tuple[Path | None, Finding | None]:
    """The image's path inside ``images_dir``, or a refusal for a name that escapes it.

    The check is lexical (``..`` and absolute paths, with either slash), so an image folder
    that holds symlinks to elsewhere still works.
    """
    if not isinstance(file_name, str) or not file_name.strip():
        return None, (
            "bad_image_entry",
            "dropped",
            f"'file_name' must be a non-empty string, got {file_name!r}",
        )
    normal = posixpath.normpath(file_name.replace("\\", "/"))
    if (
        normal.startswith("/")
        or os.path.isabs(file_name)
        or normal == ".."
        or normal.startswith("../")
        or (len(normal) > 1 and normal[1] == ":")
    ):
        return None, (
            "unsafe_path",
            "refused",
            f"file_name {file_name!r} points outside the image folder {images_dir}; file names must "
            "be relative paths inside --images (no '..', no absolute paths)",
        )
    return images_dir / normal, None


def check_box(bbox: object, width: int, height: int) -> tuple[list[float] | None, list[Finding]]:
    """A COCO ``[x, y, w, h]`` box as ``[y1, x1, y2, x2]`` clipped to the image.

    Dropped: not four finite numbers, zero or negative width/height, nothing left inside the
    image. Clipped (kept, reported): parts outside the image by more than
    :data:`BOX_TOLERANCE` pixels.
    """
    if not isinstance(bbox, Sequence) or isinstance(bbox, str) or len(bbox) != 4:
        return None, [("bad_box", "dropped", f"'bbox' must be [x, y, width, height], got {bbox!r}")]
    if not all(_is_number(v) for v in bbox):
        return None, [("bad_box", "dropped", f"'bbox' must hold four finite numbers, got {bbox!r}")]
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return None, [
            (
                "zero_area_box",
                "dropped",
                f"box {list(bbox)} has zero or negative width/height (COCO is [x, y, w, h])",
            )
        ]
    y1, x1, y2, x2 = max(y, 0.0), max(x, 0.0), min(y + h, float(height)), min(x + w, float(width))
    if y2 <= y1 or x2 <= x1:
        return None, [("box_outside", "dropped", f"box {list(bbox)} lies outside the {width}x{height} image")]
    overshoot = max(-x, -y, x + w - width, y + h - height)
    findings = []
    if overshoot > BOX_TOLERANCE:
        findings.append(
            (
                "box_clipped",
                "clipped",
                f"box {list(bbox)} extends {overshoot:.2f} px outside the {width}x{height} image",
            )
        )
    return [y1, x1, y2, x2], findings


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[0::2], points[1::2]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _check_polygons(polygons: list, width: int, height: int) -> tuple[list | None, list[Finding]]:
    kept, findings = [], []
    for k, polygon in enumerate(polygons):
        if not isinstance(polygon, list) or not all(_is_number(v) for v in polygon):
            findings.append(("bad_polygon", "dropped", f"polygon {k} is not a flat list of finite numbers"))
            continue
        if len(polygon) < 6 or len(polygon) % 2:
            findings.append(
                (
                    "short_polygon",
                    "dropped",
                    f"polygon {k} has {len(polygon)} coordinates; a polygon needs at least 3 (x, y) points",
                )
            )
            continue
        points = np.asarray(polygon, np.float64)
        x, y = points[0::2], points[1::2]
        # pycocotools rasterises a polygon in memory proportional to its extent: one with a
        # vertex far outside the image (a typo, a unit mix-up) could take gigabytes
        if x.min() < -width or x.max() > 2 * width or y.min() < -height or y.max() > 2 * height:
            findings.append(
                (
                    "polygon_outside_image",
                    "dropped",
                    f"polygon {k} reaches ({x.min():g}..{x.max():g}, {y.min():g}..{y.max():g}), far outside "
                    f"the {width}x{height} image; are its coordinates in pixels of this image?",
                )
            )
            continue
        if _polygon_area(points) <= 0:
            findings.append(("empty_mask", "dropped", f"polygon {k} encloses no area"))
            continue
        kept.append([float(v) for v in polygon])
    if not kept:
        return None, findings or [("no_segmentation", "dropped", "'segmentation' is an empty polygon list")]
    # the instance survives: findings about single polygons are corrections, not drops
    return kept, [(kind, "fixed", f"{message}; that polygon was left out") for kind, _, message in findings]


def _check_rle(rle: dict, width: int, height: int) -> tuple[dict | None, list[Finding]]:
    size, counts = rle.get("size"), rle.get("counts")
    if not isinstance(size, Sequence) or len(size) != 2 or [*size] != [height, width]:
        return None, [
            (
                "bad_rle",
                "dropped",
                f"RLE size {size!r} differs from the image's [height, width] = {[height, width]}",
            )
        ]
    try:
        if isinstance(counts, list):
            if not all(is_int(c) and c >= 0 for c in counts):
                raise ValueError("counts must be non-negative integers")
            runs = np.asarray(counts, np.int64)
        elif isinstance(counts, (str, bytes)):
            runs = decompress_counts(counts)
            if runs.size and runs.min() < 0:
                raise ValueError("negative run length")
        else:
            raise ValueError(f"counts must be a list or a string, got {type(counts).__name__}")
    except ValueError as exc:
        return None, [("bad_rle", "dropped", f"RLE counts are malformed: {exc}")]
    if int(runs.sum()) != width * height:
        return None, [
            ("bad_rle", "dropped", f"RLE runs cover {int(runs.sum())} pixels, the image has {width * height}")
        ]
    if int(runs[1::2].sum()) == 0:
        return None, [("empty_mask", "dropped", "the RLE mask has no foreground pixels")]
    return {"size": [height, width], "counts": counts}, []


def check_segmentation(segmentation: object, width: int, height: int) -> tuple[object | None, list[Finding]]:
    """A COCO ``segmentation`` (polygons, RLE or compressed RLE), cleaned.

    Dropped: missing or empty; no polygon with at least 3 points and some area; an RLE whose
    size differs from the image, whose runs do not cover the image, or that is empty.
    Fixed (kept, reported): single bad polygons of an instance that has good ones.
    """
    if segmentation is None or segmentation == [] or segmentation == {}:
        return None, [
            (
                "no_segmentation",
                "dropped",
                "has no 'segmentation'; Mask R-CNN needs a mask per instance (polygons or RLE)",
            )
        ]
    if isinstance(segmentation, list):
        return _check_polygons(segmentation, width, height)
    if isinstance(segmentation, dict):
        return _check_rle(segmentation, width, height)
    return None, [
        (
            "bad_segmentation",
            "dropped",
            f"'segmentation' must be polygons or RLE, got {type(segmentation).__name__}",
        )
    ]
