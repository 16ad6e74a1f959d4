"""Keypoint AP (OKS) through ``coco_metrics`` and keypoint results from ``detections_to_coco``,
against OKS computed here from its definition (Ronchi & Perona; the COCO keypoint task)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mrcnn_tf.evaluation.coco_metrics import KEYPOINT_STAT_NAMES, coco_metrics, detections_to_coco

NAMES = ["head", "left_hand", "right_hand"]
SIGMAS = [0.05, 0.1, 0.08]


def ground_truth(keypoints, area=900.0):
    return {
        "images": [{"id": 7, "width": 100, "height": 80}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 3,
                "bbox": [10.0, 10.0, 30.0, 30.0],
                "area": area,
                "iscrowd": 0,
                "keypoints": keypoints,
                "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0),
            }
        ],
        "categories": [
            {"id": 2, "name": "ball"},
            {"id": 3, "name": "figure", "keypoints": NAMES, "skeleton": [[1, 2], [1, 3]]},
        ],
    }


def oks(gt, dt, area, sigmas):
    """Object keypoint similarity, float64, over the labelled ground-truth keypoints."""
    terms = []
    for k, sigma in enumerate(sigmas):
        if gt[3 * k + 2] > 0:
            d2 = (gt[3 * k] - dt[3 * k]) ** 2 + (gt[3 * k + 1] - dt[3 * k + 1]) ** 2
            terms.append(math.exp(-d2 / (2 * area * (2 * sigma) ** 2)))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("shift", [0.0, 1.0, 2.5, 4.0])
def test_keypoint_ap_is_the_oks_threshold_count(shift):
    gt_kp = [20.0, 15.0, 2, 35.0, 30.0, 1, 0, 0, 0]  # the third keypoint is unlabelled
    dt_kp = [20.0 + shift, 15.0, 0.9, 35.0, 30.0 - shift, 0.8, 60.0, 60.0, 0.1]
    result = {
        "image_id": 7,
        "category_id": 3,
        "bbox": [10.0, 10.0, 30.0, 30.0],
        "score": 0.9,
        "keypoints": dt_kp,
    }
    metrics, summary = coco_metrics(ground_truth(gt_kp), [result], ("keypoints",), keypoint_sigmas=SIGMAS)
    similarity = oks(gt_kp, dt_kp, 900.0, SIGMAS)
    thresholds = np.linspace(0.5, 0.95, 10)
    want = float(np.mean([similarity >= t for t in thresholds]))
    assert set(metrics["keypoints"]) == set(KEYPOINT_STAT_NAMES)
    assert metrics["keypoints"]["AP"] == pytest.approx(want, abs=1e-6), (similarity, summary)
    if shift == 0:
        assert metrics["keypoints"]["AP"] == pytest.approx(1.0)


def test_keypoint_ap_uses_the_given_sigmas():
    gt_kp = [20.0, 15.0, 2, 35.0, 30.0, 2, 50.0, 30.0, 2]
    dt_kp = [22.0, 15.0, 1, 37.0, 30.0, 1, 52.0, 30.0, 1]
    result = {
        "image_id": 7,
        "category_id": 3,
        "bbox": [10.0, 10.0, 30.0, 30.0],
        "score": 0.9,
        "keypoints": dt_kp,
    }
    loose = coco_metrics(ground_truth(gt_kp), [result], ("keypoints",), keypoint_sigmas=[0.2] * 3)[0]
    tight = coco_metrics(ground_truth(gt_kp), [result], ("keypoints",), keypoint_sigmas=[0.02] * 3)[0]
    assert oks(gt_kp, dt_kp, 900.0, [0.2] * 3) > 0.95 and loose["keypoints"]["AP"] == pytest.approx(1.0)
    assert oks(gt_kp, dt_kp, 900.0, [0.02] * 3) < 0.5 and tight["keypoints"]["AP"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="2 OKS sigmas for 3 keypoints"):
        coco_metrics(ground_truth(gt_kp), [result], ("keypoints",), keypoint_sigmas=[0.1, 0.1])
    with pytest.raises(ValueError, match="give their OKS sigmas"):
        coco_metrics(ground_truth(gt_kp), [result], ("keypoints",))  # not COCO's 17


def test_detections_to_coco_maps_keypoints_to_original_pixel_indices():
    # input image = original scaled by (2, 4); continuous input x maps to x / 4 - 0.5
    outputs = {
        "boxes": np.array([[[10.0, 20.0, 50.0, 100.0]]], np.float32),
        "scores": np.array([[0.75]], np.float32),
        "classes": np.array([[1]], np.int32),
        "num_detections": np.array([1], np.int32),
        "keypoints": np.array([[[[42.0, 21.0, 0.5], [82.0, 41.0, 0.25], [20.0, 10.0, 0.125]]]], np.float32),
    }
    batch = {
        "image_id": np.array([7]),
        "original_size": np.array([[80.0, 100.0]]),
        "image_scale": np.array([[2.0, 4.0]]),
    }
    (result,) = detections_to_coco(outputs, batch, [0, 3])
    want = [
        42 / 4 - 0.5,
        21 / 2 - 0.5,
        0.5,
        82 / 4 - 0.5,
        41 / 2 - 0.5,
        0.25,
        20 / 4 - 0.5,
        10 / 2 - 0.5,
        0.125,
    ]
    np.testing.assert_allclose(result["keypoints"], want, atol=1e-6)
    assert result["category_id"] == 3 and result["bbox"] == pytest.approx([5.0, 5.0, 20.0, 20.0])
