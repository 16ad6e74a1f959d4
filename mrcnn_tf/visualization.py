"""Drawing instances (masks, boxes, class names, scores) on images, with NumPy and Pillow.

Used by ``mrcnn-tf data show`` (ground truth after the input pipeline) and by prediction
pictures. Boxes are ``[y1, x1, y2, x2]`` in pixels of the image drawn on.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["draw_instances", "draw_keypoints", "instance_colours", "paste_box_masks"]


def instance_colours(n: int) -> np.ndarray:
    """``n`` well separated, saturated colours (golden-ratio hues), uint8 ``[n, 3]``."""
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    return np.array(
        [[int(255 * c) for c in colorsys.hsv_to_rgb(h, 0.85, 0.95)] for h in hues], np.uint8
    ).reshape(n, 3)


def paste_box_masks(masks: np.ndarray, boxes: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Box-cropped masks ``[N, S, S]`` back onto an image of ``size`` (nearest cell), bool ``[N, H, W]``.

    Pixel ``(r, c)`` (centre ``r + 0.5, c + 0.5``) inside box ``n`` takes the cell under it;
    pixels outside the box are False.
    """
    h, w = int(size[0]), int(size[1])
    out = np.zeros((len(masks), h, w), bool)
    for n, (mask, (y1, x1, y2, x2)) in enumerate(zip(masks, boxes, strict=True)):
        s = mask.shape[0]
        rows = (np.arange(h) + 0.5 - y1) / max(y2 - y1, 1e-6) * s
        cols = (np.arange(w) + 0.5 - x1) / max(x2 - x1, 1e-6) * s
        r_in, c_in = (rows >= 0) & (rows < s), (cols >= 0) & (cols < s)
        ri = np.clip(rows.astype(np.int64), 0, s - 1)
        ci = np.clip(cols.astype(np.int64), 0, s - 1)
        out[n] = (mask[ri][:, ci] > 0.5) & r_in[:, None] & c_in[None]
    return out


def draw_instances(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: Sequence[str],
    masks: np.ndarray | None = None,
    alpha: float = 0.45,
    keypoints: np.ndarray | None = None,
    skeleton: Sequence[Sequence[int]] = (),
    keypoint_threshold: float = 0.05,
) -> np.ndarray:
    """The image with each instance's mask tinted, its box outlined and its label written.

    Args:
        image: uint8 ``[H, W, 3]``.
        boxes: ``[N, 4]`` ``[y1, x1, y2, x2]`` pixels.
        labels: ``N`` strings (class name, and score if any).
        masks: bool ``[N, H, W]`` full-image masks, or None.
        alpha: mask opacity.
        keypoints: ``[N, K, 3]`` ``(x, y, score or v)`` in continuous pixels, or None: each
            keypoint above ``keypoint_threshold`` is a dot, and ``skeleton`` (0-based index
            pairs) joins them with lines.

    Returns:
        uint8 ``[H, W, 3]``.
    """
    colours = instance_colours(len(boxes))
    if masks is not None:
        canvas = image.astype(np.float32)
        for mask, colour in zip(masks, colours, strict=True):
            tint(canvas, mask, 0, 0, colour, alpha)
        image = np.clip(canvas, 0, 255, out=canvas).astype(np.uint8)
    picture = Image.fromarray(np.ascontiguousarray(image, np.uint8))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    for (y1, x1, y2, x2), label, colour in zip(boxes, labels, colours, strict=True):
        colour = tuple(int(c) for c in colour)
        x1, y1 = float(x1), float(y1)  # a box thinner than a pixel is still drawn (PIL refuses x2 < x1)
        draw.rectangle([x1, y1, max(float(x2) - 1, x1), max(float(y2) - 1, y1)], outline=colour, width=2)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        tx, ty = float(x1), max(float(y1) - (bottom - top) - 4, 0.0)
        draw.rectangle([tx, ty, tx + right - left + 4, ty + bottom - top + 4], fill=colour)
        dark = sum(colour) > 382
        draw.text((tx + 2, ty + 2 - top), label, fill=(0, 0, 0) if dark else (255, 255, 255), font=font)
    if keypoints is not None:
        for points, colour in zip(np.asarray(keypoints), colours, strict=True):
            draw_keypoints(draw, points, skeleton, tuple(int(c) for c in colour), keypoint_threshold)
    return np.asarray(picture)


def draw_keypoints(draw, points: np.ndarray, skeleton, colour, threshold: float = 0.05) -> None:
    """One instance's ``[K, 3]`` keypoints as dots joined by its ``skeleton`` lines (Pillow draw).

    Keypoints whose score (or ``v``) is at most ``threshold`` are left out, with their lines.
    Dots are white-rimmed so that they show on the instance's own tinted mask.
    """
    shown = points[:, 2] > threshold
    for a, b in skeleton:
        if 0 <= a < len(points) and 0 <= b < len(points) and shown[a] and shown[b]:
            draw.line([tuple(points[a, :2]), tuple(points[b, :2])], fill=colour, width=2)
    for x, y, _ in points[shown]:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour, outline=(255, 255, 255))


def tint(canvas: np.ndarray, crop: np.ndarray, y0: int, x0: int, colour, alpha: float = 0.45) -> None:
    """Blend ``colour`` into float ``canvas [H, W, 3]`` where the bool ``crop`` at ``(y0, x0)`` is set."""
    region = canvas[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]]  # a view: changed in place
    where = crop[..., None]
    np.multiply(region, np.float32(1 - alpha), out=region, where=where)
    np.add(region, alpha * np.asarray(colour, np.float32), out=region, where=where)


def legible(image: np.ndarray, boxes: np.ndarray, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The image scaled up by a whole factor (nearest) until its short side is ``min_size``, and
    the boxes with it: labels drawn on a 128-pixel image are cut off and unreadable."""
    factor = int(np.ceil(min_size / max(min(image.shape[:2]), 1))) if min_size else 1
    if factor <= 1:
        return image, boxes
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1), np.asarray(boxes) * factor


def prediction_picture(
    image: np.ndarray,
    outputs: dict,
    b: int,
    names,
    score_threshold: float = 0.5,
    min_size: int = 0,
    mask_threshold: float = 0.5,
    on_mask: Callable[[np.ndarray, int, int], None] | None = None,
    mask_paste: str = "detectron2",
    skeleton: Sequence[Sequence[int]] = (),
) -> np.ndarray:
    """Detections of image ``b`` of a batch drawn on its (unpadded) input image, uint8 ``[H, W, 3]``.

    Args:
        image: uint8 ``[H, W, 3]``, the model's input image without padding.
        outputs: inference outputs of the batch (NumPy): ``boxes [B, D, 4]`` ``[y1, x1, y2, x2]``
            pixels of ``image``, ``scores``, ``classes``, ``num_detections`` and optionally
            ``masks [B, D, M, M]`` box-relative probabilities and ``keypoints [B, D, K, 3]``.
        names: a callable from class id (1..K) to a name.
        score_threshold: detections below this score are not drawn.
        min_size: scale small pictures up (whole factors) to this short side, so that the
            labels are legible (0: the image's own size).
        mask_threshold: pasted masks are binarised at ``>=`` this.
        on_mask: called as ``on_mask(crop, y0, x0)`` with each drawn detection's pasted mask
            (see :func:`mrcnn_tf.ops.masks.paste_mask_crop`), e.g. to RLE-encode it without
            pasting it again.
        mask_paste: the paste rule (:func:`mrcnn_tf.ops.masks.paste_mask_crop`).
        skeleton: 0-based keypoint index pairs to join with lines (the label map's).

    Masks are pasted and drawn one at a time over their box (memory: the image and one mask).
    """
    from mrcnn_tf.ops.masks import paste_mask_crop

    n = int(outputs["num_detections"][b])
    keep = np.nonzero(outputs["scores"][b, :n] >= score_threshold)[0]
    boxes = outputs["boxes"][b, keep]
    canvas = image.astype(np.float32)
    if "masks" in outputs:
        for i, colour in zip(keep, instance_colours(len(keep)), strict=True):
            crop, y0, x0 = paste_mask_crop(
                outputs["masks"][b, i], outputs["boxes"][b, i], image.shape[:2], mask_threshold, mask_paste
            )
            tint(canvas, crop, y0, x0, colour)
            if on_mask is not None:
                on_mask(crop, y0, x0)
    labels = [
        f"{names(int(c))} {s:.2f}"
        for c, s in zip(outputs["classes"][b, keep], outputs["scores"][b, keep], strict=True)
    ]
    picture, boxes = legible(np.clip(canvas, 0, 255, out=canvas).astype(np.uint8), boxes, min_size)
    keypoints = None
    if "keypoints" in outputs:
        factor = picture.shape[0] / max(image.shape[0], 1)
        keypoints = np.asarray(outputs["keypoints"][b, keep], np.float32) * np.array([factor, factor, 1.0])
    return draw_instances(picture, boxes, labels, keypoints=keypoints, skeleton=skeleton)
