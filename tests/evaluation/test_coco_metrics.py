"""The COCO evaluator against pycocotools run by hand on the same case.

The case has non-contiguous category ids (3, 7, 42), a crowd region, an image without ground
truth, and detections in a resized frame (the model's) that must be mapped back.
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_tf.evaluation.coco_metrics import STAT_NAMES, coco_metrics, detections_to_coco

SIZES = {10: (40, 60), 20: (30, 30), 30: (20, 20)}  # image id -> (height, width)
SCALES = {10: 2.0, 20: 0.5, 30: 1.0}  # model input pixels per original pixel


def rect_rle(xywh, size):
    x, y, w, h = xywh
    mask = np.zeros(size, np.uint8)
    mask[y : y + h, x : x + w] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def ground_truth():
    def ann(i, image, cat, xywh, crowd=0):
        x, y, w, h = xywh
        seg = rect_rle(xywh, SIZES[image]) if crowd else [[x, y, x + w, y, x + w, y + h, x, y + h]]
        return {
            "id": i,
            "image_id": image,
            "category_id": cat,
            "bbox": list(xywh),
            "area": w * h,
            "iscrowd": crowd,
            "segmentation": seg,
        }

    return {
        "images": [
            {"id": i, "height": h, "width": w, "file_name": f"{i}.png"} for i, (h, w) in SIZES.items()
        ],
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 42, "name": "eel"}],
        "annotations": [
            ann(1, 10, 3, (5, 4, 10, 8)),
            ann(2, 10, 7, (20, 10, 16, 12)),
            ann(3, 10, 42, (40, 20, 15, 15), crowd=1),
            ann(4, 20, 42, (2, 2, 10, 10)),
        ],
    }


#: (image, contiguous class, [x, y, w, h] in original pixels, score)
DETECTIONS = [
    (10, 1, (5, 4, 10, 8), 0.9),  # exact cat
    (10, 2, (22, 11, 16, 12), 0.8),  # dog, shifted
    (10, 3, (42, 22, 10, 10), 0.7),  # inside the crowd region: ignored
    (10, 1, (30, 30, 6, 6), 0.6),  # false positive
    (20, 3, (2, 2, 10, 10), 0.95),  # exact eel
    (20, 2, (14, 14, 8, 8), 0.3),  # false positive
    (30, 1, (4, 4, 6, 6), 0.5),  # false positive on the image without ground truth
]
DATASET_IDS = [0, 3, 7, 42]


def model_outputs(mask_size=14):
    """Batch of 3 images as the model would return them (input frame), plus the batch info."""
    d = 5
    out = {
        "boxes": np.zeros((3, d, 4), np.float32),
        "scores": np.zeros((3, d), np.float32),
        "classes": np.zeros((3, d), np.int32),
        "num_detections": np.zeros(3, np.int32),
        "masks": np.zeros((3, d, mask_size, mask_size), np.float32),
    }
    ids = [10, 20, 30]
    for image, cls, (x, y, w, h), score in DETECTIONS:
        b = ids.index(image)
        k = out["num_detections"][b]
        s = SCALES[image]
        out["boxes"][b, k] = [y * s, x * s, (y + h) * s, (x + w) * s]
        out["scores"][b, k], out["classes"][b, k] = score, cls
        out["masks"][b, k] = 1.0
        out["num_detections"][b] += 1
    batch = {
        "image_id": np.array(ids, np.int64),
        "original_size": np.array([SIZES[i] for i in ids], np.float32),
        "image_scale": np.array([[SCALES[i]] * 2 for i in ids], np.float32),
    }
    return out, batch


def reference_results():
    return [
        {
            "image_id": image,
            "category_id": DATASET_IDS[cls],
            "bbox": [float(v) for v in xywh],
            "score": score,
            "segmentation": rect_rle(xywh, SIZES[image]),
        }
        for image, cls, xywh, score in DETECTIONS
    ]


def pycocotools_stats(gt_dict, results, iou_type):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(gt_dict)
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def test_results_are_in_the_original_frame_with_dataset_category_ids():
    outputs, batch = model_outputs()
    results = detections_to_coco(outputs, batch, DATASET_IDS)
    reference = reference_results()
    assert len(results) == len(reference)
    for got, want in zip(results, reference, strict=True):
        assert got["image_id"] == want["image_id"] and got["category_id"] == want["category_id"]
        np.testing.assert_allclose(got["bbox"], want["bbox"], atol=1e-4)
        assert got["score"] == pytest.approx(want["score"])
        assert got["segmentation"]["size"] == want["segmentation"]["size"]
        decoded = mask_utils.decode(got["segmentation"])
        np.testing.assert_array_equal(decoded, mask_utils.decode(want["segmentation"]))


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_metrics_equal_pycocotools_on_the_hand_made_case(iou_type):
    outputs, batch = model_outputs()
    gt = ground_truth()
    metrics, summary = coco_metrics(gt, detections_to_coco(outputs, batch, DATASET_IDS), [iou_type])
    expected = pycocotools_stats(gt, reference_results(), iou_type)
    np.testing.assert_allclose([metrics[iou_type][k] for k in STAT_NAMES], expected, atol=1e-9)
    # sanity of the case itself: the crowd detection is ignored, the shifted dog matches at 0.5
    assert 0.3 < metrics[iou_type]["AP50"] < 1.0
    assert "Average Precision" in summary


def test_no_detections_gives_zeros_without_crashing():
    metrics, summary = coco_metrics(ground_truth(), [])
    assert metrics["bbox"]["AP"] == 0.0 and metrics["segm"]["AP50"] == 0.0
    assert "no detections" in summary


def test_boxes_beyond_the_image_are_clipped():
    outputs, batch = model_outputs()
    outputs["boxes"][1, 0] = [-10.0, -10.0, 100.0, 100.0]  # image 20 (30x30) at scale 0.5
    results = [r for r in detections_to_coco(outputs, batch, DATASET_IDS) if r["image_id"] == 20]
    np.testing.assert_allclose(results[0]["bbox"], [0.0, 0.0, 30.0, 30.0])
