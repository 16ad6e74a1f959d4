"""COCO segmentations as run-length encodings, sampled on a grid without decoding the image.

COCO stores an instance mask as polygons, an uncompressed RLE (``counts`` a list of ints) or
a compressed RLE (``counts`` a string). All three become an uncompressed run list here:
``counts[0]`` zeros, then ``counts[1]`` ones, ... in **column-major** order over an
``height × width`` image (pycocotools' layout).

:func:`sample_rle` reads the mask at arbitrary pixels straight from the runs (a binary search
per sample), so a ``S × S`` box crop of a 4000 × 3000 mask costs ``S²·log(runs)`` and never
allocates the full image. Pixel ``(r, c)`` covers ``[r, r+1) × [c, c+1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pycocotools.mask as mask_utils

__all__ = [
    "box_sample_indices",
    "crop_rle",
    "decompress_counts",
    "sample_rle",
    "segmentation_to_counts",
    "segmentation_to_rle",
]


def decompress_counts(counts: bytes | str) -> np.ndarray:
    """Run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``), vectorised.

    Each run is a little-endian base-32 number written 5 bits per character (offset 48,
    bit 0x20 = more characters follow, bit 0x10 of the last one = negative); runs from the
    fourth on are stored as differences to the run two places back.

    Returns:
        int64 ``[R]`` run lengths.

    Raises:
        ValueError: characters outside the encoding's alphabet.
    """
    raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    c = np.frombuffer(raw, np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, np.int64)
    if c.min() < 0 or c.max() > 63:
        raise ValueError("compressed RLE counts contain characters outside '0'..'o'")
    last = (c & 0x20) == 0
    if not last[-1]:
        raise ValueError("compressed RLE counts end in the middle of a number")
    group = np.concatenate([[0], np.cumsum(last)[:-1]])
    starts = np.flatnonzero(np.concatenate([[True], last[:-1]]))
    k = np.arange(c.size) - starts[group]
    if k.max() > 11:
        raise ValueError("compressed RLE counts hold a number too long to be a run length")
    values = np.zeros(starts.size, np.int64)
    np.add.at(values, group, (c & 0x1F) << (5 * k))
    negative = last & ((c & 0x10) != 0)
    values[group[negative]] -= np.int64(1) << (5 * (k[negative] + 1))
    # runs 3, 4, ... are deltas to the run two places back (pycocotools: ``if (m > 2)``)
    values[3::2] = np.cumsum(values[1::2])[1:]
    values[2::2] = np.cumsum(values[2::2])
    return values


def segmentation_to_rle(segmentation: object, height: int, width: int) -> dict:
    """A COCO ``segmentation`` as a compressed pycocotools RLE ``{"size", "counts": bytes}``.

    Polygons are rasterised by pycocotools (a pixel is inside when its centre is, up to
    pycocotools' 5× edge supersampling); several polygons are merged (union). The input is
    assumed valid (see :mod:`mrcnn_tf.data.coco_checks`).
    """
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    counts = segmentation["counts"]  # type: ignore[index]
    if isinstance(counts, list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return {
        "size": [height, width],
        "counts": counts.encode("ascii") if isinstance(counts, str) else bytes(counts),
    }


def segmentation_to_counts(segmentation: object, height: int, width: int) -> np.ndarray:
    """Uncompressed run lengths of a COCO ``segmentation`` (see :func:`segmentation_to_rle`).

    Returns:
        int64 ``[R]`` run lengths summing to ``height * width``.
    """
    if isinstance(segmentation, dict) and isinstance(segmentation["counts"], list):
        return np.asarray(segmentation["counts"], np.int64)  # already runs
    return decompress_counts(segmentation_to_rle(segmentation, height, width)["counts"])


def box_sample_indices(start: float, stop: float, size: int, limit: int) -> np.ndarray:
    """Pixel indices under the centres of ``size`` equal cells spanning ``[start, stop)``.

    Cell ``i`` has its centre at ``start + (i + 0.5) * (stop - start) / size`` (float64);
    the pixel under it is ``floor`` of that, clamped to ``[0, limit - 1]``.
    """
    centres = start + (np.arange(size, dtype=np.float64) + 0.5) * ((stop - start) / size)
    return np.clip(np.floor(centres), 0, limit - 1).astype(np.int64)


def sample_rle(counts: np.ndarray, height: int, width: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The mask's values at every ``(rows[i], cols[j])``: uint8 ``[len(rows), len(cols)]`` of 0/1."""
    ends = np.cumsum(np.asarray(counts, np.int64))
    flat = np.asarray(cols, np.int64)[None, :] * height + np.asarray(rows, np.int64)[:, None]
    run = np.searchsorted(ends, flat, side="right")
    return (run % 2).astype(np.uint8)


def crop_rle(counts: np.ndarray, height: int, width: int, box: Sequence[float], size: int) -> np.ndarray:
    """Crop a mask to a box at ``size × size`` by sampling it at the cell centres.

    Args:
        counts: run lengths (see :func:`segmentation_to_counts`).
        height, width: the image's size in pixels.
        box: ``[y1, x1, y2, x2]`` in pixels (pixel ``i`` covers ``[i, i + 1)``).
        size: the output resolution ``S``.

    Returns:
        uint8 ``[S, S]``: cell ``(i, j)`` covers ``1/S`` of the box in each direction and holds
        the mask's value at the pixel under its centre. Resizing the image leaves this crop
        unchanged, and a horizontal flip reverses its columns.
    """
    y1, x1, y2, x2 = (float(v) for v in box)
    rows = box_sample_indices(y1, y2, size, height)
    cols = box_sample_indices(x1, x2, size, width)
    return sample_rle(counts, height, width, rows, cols)
