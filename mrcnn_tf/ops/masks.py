"""Instance masks: training targets from box-cropped masks, and pasting predictions into images.

Masks travel **cropped to their boxes** at a fixed resolution: ``masks[g]`` is an ``S × S``
grid over ``boxes[g]``, its cell ``(i, j)`` covering ``[y1 + i * h / S, y1 + (i + 1) * h / S)``
× ``[x1 + j * w / S, ...)`` with its value at the cell centre (pixel i covers [i, i+1)). Memory
then does not grow with the image size (as in TF Model Garden and matterport's "mini masks").

Both directions are bilinear interpolation of such a grid with **zeros outside it**: a mask is
zero outside its box, so a sample half a cell beyond the last centre gets half the border
value. This is what Detectron2 gets from ``ROIAlign(aligned=True)`` on a full-image bitmask
(targets) and from ``grid_sample(align_corners=False)`` with zero padding (pasting).
Bilinear interpolation is separable, so every resampling here is two small matrix products
``Wy @ mask @ Wx^T`` with interpolation matrices from :func:`interpolation_matrix` — exact, and
without a full-image tensor per RoI.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf


def interpolation_matrix(positions: tf.Tensor, size: int) -> tf.Tensor:
    """Linear-interpolation weights ``[..., P, size]`` for sample positions ``[..., P]``.

    ``positions`` are in index units of a grid of ``size`` values (value j sits at j). Row p
    has weight ``1 - f`` on ``floor(p)`` and ``f`` on ``floor(p) + 1`` (``f`` the fraction);
    weights on indices outside ``[0, size)`` are dropped, i.e. the grid is zero outside.
    """
    positions = tf.cast(positions, tf.float32)
    low = tf.floor(positions)
    frac = positions - low
    index = tf.range(size, dtype=tf.float32)
    low = low[..., None]
    return (
        tf.cast(tf.equal(index, low), tf.float32) * (1.0 - frac[..., None])
        + tf.cast(tf.equal(index, low + 1.0), tf.float32) * frac[..., None]
    )


def _grid_positions(start: tf.Tensor, length: tf.Tensor, count: int, sampling_ratio: int) -> tf.Tensor:
    """Sample positions ``[..., count, sampling_ratio]`` at sub-cell centres of ``count`` bins."""
    n = count * sampling_ratio
    steps = (tf.range(n, dtype=tf.float32) + 0.5) / float(n)
    points = start[..., None] + length[..., None] * steps
    return tf.reshape(points, tf.concat([tf.shape(start), [count, sampling_ratio]], axis=0))


def crop_mask_targets(
    masks: tf.Tensor,
    mask_boxes: tf.Tensor,
    rois: tf.Tensor,
    output_size: int,
    sampling_ratio: int = 2,
    threshold: float | None = 0.5,
) -> tf.Tensor:
    """Mask targets: each box-cropped mask resampled to its RoI at ``output_size`` (He et al. 2017).

    Args:
        masks: ``[..., S, S]`` float masks (0/1) cropped to ``mask_boxes`` (see module doc).
        mask_boxes: ``[..., 4]`` float32 ``[y1, x1, y2, x2]`` input pixels: the GT box of each mask.
        rois: ``[..., 4]`` float32 ``[y1, x1, y2, x2]`` input pixels: the RoI of each target.
        output_size: M, the mask head's output resolution (28 for the FPN head).
        sampling_ratio: bilinear samples per bin and axis, averaged (RoIAlign's average pooling).
        threshold: binarise at this value (Detectron2 uses ``>= 0.5``); ``None`` keeps the
            soft values.

    Returns:
        ``[..., M, M]`` float32 targets. An RoI equal to a rectangular GT box gives all ones;
        an RoI half outside it gives half ones.
    """
    masks = tf.cast(masks, tf.float32)
    size = masks.shape[-1]
    if size is None or masks.shape[-2] != size:
        raise ValueError(f"crop_mask_targets needs static square masks [..., S, S], got {masks.shape}")
    mask_boxes = tf.cast(mask_boxes, tf.float32)
    rois = tf.cast(rois, tf.float32)
    gy1, gx1, gy2, gx2 = tf.unstack(mask_boxes, axis=-1)
    ry1, rx1, ry2, rx2 = tf.unstack(rois, axis=-1)
    # Input pixel y -> mask index units: (y - gy1) / gh * S - 0.5 (cell centres at integers).
    cell_h = tf.maximum(gy2 - gy1, 1e-6) / size
    cell_w = tf.maximum(gx2 - gx1, 1e-6) / size
    ys = _grid_positions((ry1 - gy1) / cell_h - 0.5, (ry2 - ry1) / cell_h, output_size, sampling_ratio)
    xs = _grid_positions((rx1 - gx1) / cell_w - 0.5, (rx2 - rx1) / cell_w, output_size, sampling_ratio)
    wy = tf.reduce_mean(interpolation_matrix(ys, size), axis=-2)  # [..., M, S]
    wx = tf.reduce_mean(interpolation_matrix(xs, size), axis=-2)
    targets = tf.matmul(tf.matmul(wy, masks), wx, transpose_b=True)
    if threshold is not None:
        targets = tf.cast(targets >= threshold, tf.float32)
    return targets


def paste_masks(
    masks: tf.Tensor,
    boxes: tf.Tensor,
    image_size: tuple[int, int],
    threshold: float | None = 0.5,
) -> tf.Tensor:
    """Paste box-relative masks into full images (Detectron2's ``paste_masks_in_image``).

    Image pixel ``(y, x)`` has its centre at ``(y + 0.5, x + 0.5)``; it reads the mask at index
    ``(y + 0.5 - y1) / h * M - 0.5`` (and likewise for x) by bilinear interpolation, zero
    outside the mask. Boxes partly outside the image, or smaller than one pixel, are fine.

    Args:
        masks: ``[N, M, M]`` float mask probabilities, box-relative (the mask head's output).
        boxes: ``[N, 4]`` float32 ``[y1, x1, y2, x2]`` in the pixels of the target image.
        image_size: ``(height, width)`` of the target image (Python ints or int32 scalar tensors).
        threshold: binarise at ``>= threshold`` (0.5, as Detectron2); ``None`` returns the
            interpolated probabilities.

    Returns:
        ``[N, height, width]``: uint8 0/1 with a threshold, float32 otherwise.
    """
    masks = tf.cast(masks, tf.float32)
    size = masks.shape[-1]
    if size is None:
        raise ValueError("paste_masks needs a static mask size")
    height, width = (v if tf.is_tensor(v) else int(v) for v in image_size[:2])
    y1, x1, y2, x2 = tf.unstack(tf.cast(boxes, tf.float32), axis=-1)
    cell_h = tf.maximum(y2 - y1, 1e-6) / size
    cell_w = tf.maximum(x2 - x1, 1e-6) / size
    py = tf.range(height, dtype=tf.float32) + 0.5
    px = tf.range(width, dtype=tf.float32) + 0.5
    wy = interpolation_matrix((py[None, :] - y1[:, None]) / cell_h[:, None] - 0.5, size)  # [N, H, M]
    wx = interpolation_matrix((px[None, :] - x1[:, None]) / cell_w[:, None] - 0.5, size)  # [N, W, M]
    pasted = tf.matmul(tf.matmul(wy, masks), wx, transpose_b=True)
    if threshold is None:
        return pasted
    return tf.cast(pasted >= threshold, tf.uint8)


PASTE_RULES = ("detectron2", "torchvision")


def paste_mask_crop(
    mask: np.ndarray,
    box: Sequence[float],
    image_size: tuple[int, int],
    threshold: float = 0.5,
    rule: str = "detectron2",
) -> tuple[np.ndarray, int, int]:
    """One box-relative mask pasted like :func:`paste_masks`, but only over the pixels it can
    touch: NumPy, float32 arithmetic, memory of the box's region instead of the image's.

    Args:
        mask: ``[M, M]`` float mask probabilities; box: ``[y1, x1, y2, x2]`` target-image pixels;
        image_size: ``(height, width)``; threshold: binarise at ``>= threshold``.
        rule: ``detectron2`` (the grid over the box, zero outside: :func:`paste_masks`) or
            ``torchvision`` (:func:`paste_mask_crop_torchvision`).

    Returns:
        ``(crop, y0, x0)``: bool ``[h, w]`` equal to ``paste_masks(...)[0][y0:y0+h, x0:x0+w]``;
        every pixel outside the crop is 0 there (the mask reads zero beyond half a cell outside
        its box). ``h`` or ``w`` may be 0 for a box outside the image.
    """
    if rule == "torchvision":
        return paste_mask_crop_torchvision(mask, box, image_size, threshold)
    if rule != "detectron2":
        raise ValueError(f"mask paste rule must be one of {PASTE_RULES}, got '{rule}'")
    mask = np.asarray(mask, np.float32)
    size = mask.shape[-1]
    height, width = int(image_size[0]), int(image_size[1])
    y1, x1, y2, x2 = (np.float32(v) for v in box)
    cell_h = np.maximum(y2 - y1, np.float32(1e-6)) / np.float32(size)
    cell_w = np.maximum(x2 - x1, np.float32(1e-6)) / np.float32(size)
    y0 = int(np.clip(np.floor(y1 - cell_h), 0, height))
    x0 = int(np.clip(np.floor(x1 - cell_w), 0, width))
    ye = int(np.clip(np.ceil(y2 + cell_h) + 1, y0, height))
    xe = int(np.clip(np.ceil(x2 + cell_w) + 1, x0, width))
    wy = _interpolation_matrix_np((np.arange(y0, ye, dtype=np.float32) + 0.5 - y1) / cell_h - 0.5, size)
    wx = _interpolation_matrix_np((np.arange(x0, xe, dtype=np.float32) + 0.5 - x1) / cell_w - 0.5, size)
    return (wy @ mask @ wx.T) >= threshold, y0, x0


def _torch_bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``[out, in]`` weights of ``F.interpolate(mode="bilinear", align_corners=False)`` along one
    axis (no antialiasing): source ``max((i + 0.5) * in / out - 0.5, 0)``, the upper neighbour
    clamped to the last index."""
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.maximum((np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), 0)
    low = src.astype(np.int64)  # src >= 0: truncation is floor
    high = np.minimum(low + 1, in_size - 1)
    frac = (src - low).astype(np.float32)
    weights = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    np.add.at(weights, (rows, low), 1 - frac)
    np.add.at(weights, (rows, high), frac)
    return weights


def paste_mask_crop_torchvision(
    mask: np.ndarray, box: Sequence[float], image_size: tuple[int, int], threshold: float = 0.5
) -> tuple[np.ndarray, int, int]:
    """torchvision's ``paste_masks_in_image``, for one mask: the ``M × M`` mask padded by one
    zero cell (``(M + 2) × (M + 2)``), the box scaled about its centre by ``(M + 2) / M`` (float32)
    and cast to integers (truncation), the padded mask resized to ``(y2 - y1 + 1, x2 - x1 + 1)``
    pixels (bilinear, half-pixel centres, at least 1) and pasted at ``[y1, x1]``, clipped to the
    image. Same returns as :func:`paste_mask_crop`."""
    mask = np.pad(np.asarray(mask, np.float32), 1)
    m = mask.shape[-1] - 2
    scale = np.float32((m + 2) / m)
    height, width = int(image_size[0]), int(image_size[1])
    y1, x1, y2, x2 = (np.float32(v) for v in box)
    half_h, half_w = (y2 - y1) * np.float32(0.5) * scale, (x2 - x1) * np.float32(0.5) * scale
    cy, cx = (y2 + y1) * np.float32(0.5), (x2 + x1) * np.float32(0.5)
    y1, x1, y2, x2 = (int(v) for v in (cy - half_h, cx - half_w, cy + half_h, cx + half_w))  # to int64
    h, w = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
    resized = _torch_bilinear_matrix(m + 2, h) @ mask @ _torch_bilinear_matrix(m + 2, w).T
    y0, ye = max(y1, 0), min(y2 + 1, height)
    x0, xe = max(x1, 0), min(x2 + 1, width)
    if ye <= y0 or xe <= x0:
        return np.zeros((0, 0), bool), min(max(y0, 0), height), min(max(x0, 0), width)
    return resized[y0 - y1 : ye - y1, x0 - x1 : xe - x1] >= threshold, y0, x0


def _interpolation_matrix_np(positions: np.ndarray, size: int) -> np.ndarray:
    """NumPy twin of :func:`interpolation_matrix` (float32)."""
    low = np.floor(positions)
    frac = (positions - low).astype(np.float32)
    low = low.astype(np.int64)
    weights = np.zeros((len(positions), size), np.float32)
    rows = np.arange(len(positions))
    for offset, w in ((0, 1.0 - frac), (1, frac)):
        index = low + offset
        inside = (index >= 0) & (index < size)
        weights[rows[inside], index[inside]] = w[inside]
    return weights
