"""Detections in COCO results format, and the official COCO metrics from pycocotools.

Model outputs live in the frame of the resized, padded input; COCO results live in the
original image with the dataset's own category ids. :func:`detections_to_coco` maps one to
the other; :func:`coco_metrics` runs ``COCOeval`` for ``bbox``, ``segm`` and ``keypoints`` (OKS).
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Mapping, Sequence

import numpy as np

#: The 12 numbers of ``COCOeval.summarize()``, in its order.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
#: The 10 numbers of ``COCOeval.summarize()`` for ``keypoints`` (no small objects: too few pixels).
KEYPOINT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
IOU_TYPES = ("bbox", "segm")
ALL_IOU_TYPES = ("bbox", "segm", "keypoints")


def encode_crop(crop: np.ndarray, y0: int, x0: int, height: int, width: int) -> dict:
    """Compressed RLE (``counts`` a str) of a mask that is ``crop`` at ``(y0, x0)`` of a
    ``height × width`` image and 0 elsewhere; one image-sized uint8 buffer at a time."""
    from pycocotools import mask as mask_utils

    full = np.zeros((height, width), np.uint8, order="F")
    full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
    rle = mask_utils.encode(full)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def detections_to_coco(
    outputs: Mapping[str, np.ndarray],
    batch: Mapping[str, np.ndarray],
    to_dataset_ids: Sequence[int],
    mask_threshold: float = 0.5,
    mask_paste: str = "detectron2",
) -> list[dict]:
    """COCO result dicts for one batch of detections.

    Args:
        outputs: the model's inference outputs (NumPy): ``boxes [B, D, 4]`` ``[y1, x1, y2, x2]``
            in input pixels, ``scores [B, D]``, ``classes [B, D]`` (1..K), ``num_detections [B]``
            and optionally ``masks [B, D, M, M]`` box-relative probabilities and ``keypoints
            [B, D, K, 3]`` ``(x, y, score)`` in input pixels (continuous).
        batch: the evaluation batch: ``image_id [B]``, ``original_size [B, 2]`` and
            ``image_scale [B, 2]`` (input pixels per original pixel, y and x).
        to_dataset_ids: ``to_dataset_ids[k]`` is the dataset's category id of class ``k``
            (index 0 unused), e.g. ``[0] + category_map.dataset_ids``.
        mask_threshold: pasted masks are binarised at ``>=`` this.
        mask_paste: the paste rule (:func:`mrcnn_tf.ops.masks.paste_mask_crop`).

    Returns:
        One dict per detection: ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]`` in
        original pixels (clipped to the image), ``score`` and, with masks, ``segmentation`` as
        compressed RLE of the mask pasted into the original image. Masks are pasted one at a
        time over their box's region (memory: one image-sized mask, whatever the image size).
        With keypoints, ``keypoints`` ``[x, y, score, ...]`` in original pixels in COCO's integer
        pixel-index frame (continuous ``x - 0.5``, as Detectron2 writes them).
    """
    from mrcnn_tf.ops.masks import paste_mask_crop

    results = []
    for b in range(len(batch["image_id"])):
        n = int(outputs["num_detections"][b])
        if n == 0:
            continue
        height, width = (round(float(v)) for v in batch["original_size"][b])
        sy, sx = (float(v) for v in batch["image_scale"][b])
        boxes = np.asarray(outputs["boxes"][b, :n], np.float64) / np.array([sy, sx, sy, sx])
        boxes = np.clip(boxes, 0.0, [height, width, height, width])
        for i in range(n):
            y1, x1, y2, x2 = boxes[i]
            result = {
                "image_id": int(batch["image_id"][b]),
                "category_id": int(to_dataset_ids[int(outputs["classes"][b, i])]),
                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                "score": float(outputs["scores"][b, i]),
            }
            if "masks" in outputs:
                crop, y0, x0 = paste_mask_crop(
                    outputs["masks"][b, i],
                    boxes[i].astype(np.float32),
                    (height, width),
                    mask_threshold,
                    mask_paste,
                )
                result["segmentation"] = encode_crop(crop, y0, x0, height, width)
            if "keypoints" in outputs:
                kp = np.asarray(outputs["keypoints"][b, i], np.float64)
                xy = kp[:, :2] / np.array([sx, sy]) - 0.5
                result["keypoints"] = [float(v) for v in np.concatenate([xy, kp[:, 2:]], 1).reshape(-1)]
            results.append(result)
    return results


def coco_metrics(
    ground_truth: Mapping,
    results: Sequence[Mapping],
    iou_types: Sequence[str] = IOU_TYPES,
    keypoint_sigmas: Sequence[float] | None = None,
) -> tuple[dict[str, dict[str, float]], str]:
    """Run ``COCOeval`` and return ``({iou_type: {AP: ..., AP50: ..., ...}}, summary text)``.

    Args:
        ground_truth: a COCO dict (``images``, ``annotations``, ``categories``), e.g. a
            dataset's :meth:`~mrcnn_tf.data.base.DetectionDataset.coco_dict`.
        results: COCO result dicts (see :func:`detections_to_coco`); may be empty (every AP is
            then 0 and the summary says so; pycocotools itself cannot load an empty list).
        iou_types: ``bbox``, ``segm`` and/or ``keypoints`` (segm needs ``segmentation`` in the
            results, keypoints ``keypoints``; keypoint AP is over the categories that have
            ``keypoints``, with OKS sigmas ``keypoint_sigmas``, COCO's 17 by default).

    Values are pycocotools' (-1 where a number is undefined, e.g. no large objects).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    gt.dataset = copy.deepcopy(dict(ground_truth))
    gt.dataset.setdefault("annotations", [])
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    metrics: dict[str, dict[str, float]] = {}
    lines = []
    for iou_type in iou_types:
        if iou_type not in ALL_IOU_TYPES:
            raise ValueError(f"iou_type must be one of {ALL_IOU_TYPES}, got '{iou_type}'")
        names = KEYPOINT_STAT_NAMES if iou_type == "keypoints" else STAT_NAMES
        lines.append(f"{iou_type}:")
        if not results:
            metrics[iou_type] = dict.fromkeys(names, 0.0)
            lines.append("  no detections: every AP and AR is 0")
            continue
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            dt = gt.loadRes(copy.deepcopy(list(results)))
            evaluator = COCOeval(gt, dt, iou_type)
            if iou_type == "keypoints":
                _keypoint_params(evaluator, gt, keypoint_sigmas)
            evaluator.evaluate()
            evaluator.accumulate()
        summary = io.StringIO()
        with contextlib.redirect_stdout(summary):
            evaluator.summarize()
        lines.extend("  " + line for line in summary.getvalue().splitlines() if line.strip())
        metrics[iou_type] = {name: float(v) for name, v in zip(names, evaluator.stats, strict=True)}
    return metrics, "\n".join(lines)


def _keypoint_params(evaluator, gt, sigmas: Sequence[float] | None) -> None:
    """Keypoint AP over the categories with keypoints, with the dataset's OKS sigmas."""
    with_kp = [c for c in gt.dataset.get("categories", []) if c.get("keypoints")]
    if not with_kp:
        raise ValueError("keypoint AP needs ground truth whose categories have 'keypoints'")
    k = len(with_kp[0]["keypoints"])
    if sigmas is not None:
        if len(sigmas) != k:
            raise ValueError(f"keypoint AP: {len(sigmas)} OKS sigmas for {k} keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
    elif k != len(evaluator.params.kpt_oks_sigmas):
        raise ValueError(f"keypoint AP: the ground truth has {k} keypoints; give their OKS sigmas")
    evaluator.params.catIds = sorted(c["id"] for c in with_kp)
