"""Box ops against float64 NumPy formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.ops.boxes import BBOX_XFORM_CLIP, clip_boxes, decode_boxes, encode_boxes, pairwise_iou


def np_iou(a, b):
    out = np.zeros((len(a), len(b)))
    for i, (ay1, ax1, ay2, ax2) in enumerate(a.astype(np.float64)):
        for j, (by1, bx1, by2, bx2) in enumerate(b.astype(np.float64)):
            ih = max(min(ay2, by2) - max(ay1, by1), 0)
            iw = max(min(ax2, bx2) - max(ax1, bx1), 0)
            union = max(ay2 - ay1, 0) * max(ax2 - ax1, 0) + max(by2 - by1, 0) * max(bx2 - bx1, 0) - ih * iw
            out[i, j] = ih * iw / union if union > 0 else 0.0
    return out


def test_iou_known_values_and_reference():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 20], [5, 5, 5, 5], [0, 0, 0, 0]], "float32")
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]], "float32")
    iou = pairwise_iou(a, b).numpy()
    assert iou[0, 0] == pytest.approx(1.0)
    assert iou[0, 1] == pytest.approx(50 / 150)  # half overlap
    assert iou[1, 0] == pytest.approx(0.5)
    assert iou[0, 2] == 0.0 and iou[3, 3] == 0.0  # disjoint; padded pair: 0, not NaN
    np.testing.assert_allclose(iou, np_iou(a, b), atol=1e-6)
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 50, size=(2, 30, 2))
    rand = np.concatenate([boxes, boxes + rng.uniform(0, 40, size=(2, 30, 2))], -1).astype("float32")
    batched = pairwise_iou(rand, rand[:, :7]).numpy()
    for i in range(2):
        np.testing.assert_allclose(batched[i], np_iou(rand[i], rand[i, :7]), atol=1e-6)


def np_encode(g, p, w):
    ph, pw = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
    gh, gw = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
    py, px = p[:, 0] + 0.5 * ph, p[:, 1] + 0.5 * pw
    gy, gx = g[:, 0] + 0.5 * gh, g[:, 1] + 0.5 * gw
    return np.stack(
        [w[0] * (gy - py) / ph, w[1] * (gx - px) / pw, w[2] * np.log(gh / ph), w[3] * np.log(gw / pw)], -1
    )


@pytest.mark.parametrize("weights", [(10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0)])
def test_encode_matches_formula_and_decode_inverts_it(weights):
    rng = np.random.default_rng(1)
    anchors = np.concatenate([(a := rng.uniform(0, 100, (40, 2))), a + rng.uniform(4, 80, (40, 2))], -1)
    gt = np.concatenate([(g := rng.uniform(0, 100, (40, 2))), g + rng.uniform(4, 80, (40, 2))], -1)
    deltas = encode_boxes(gt.astype("float32"), anchors.astype("float32"), weights).numpy()
    np.testing.assert_allclose(deltas, np_encode(gt, anchors, weights), rtol=1e-4, atol=1e-4)
    back = decode_boxes(deltas, anchors.astype("float32"), weights).numpy()
    np.testing.assert_allclose(back, gt, rtol=1e-4, atol=1e-3)


def test_known_delta_values_no_plus_one():
    # a 10×20 anchor and a box shifted by (1, 2) and twice as tall: no "+1" in sizes.
    anchor = np.array([[0, 0, 10, 20]], "float32")
    box = np.array([[-4, 2, 16, 22]], "float32")
    deltas = encode_boxes(box, anchor, (1, 1, 1, 1)).numpy()[0]
    np.testing.assert_allclose(deltas, [0.1, 0.1, math.log(2.0), 0.0], atol=1e-6)


def test_decode_clamps_log_scale_deltas():
    anchor = np.array([[0, 0, 16, 16]], "float32")
    huge = np.array([[0, 0, 1e4, 1e4]], "float32")  # dh = dw = 1e4 / 5 before clamping
    box = decode_boxes(huge, anchor).numpy()[0]
    side = 16 * math.exp(BBOX_XFORM_CLIP)  # = 1000
    np.testing.assert_allclose(box, [8 - side / 2, 8 - side / 2, 8 + side / 2, 8 + side / 2], rtol=1e-5)
    assert np.all(np.isfinite(box))


def test_clip_boxes_single_and_per_image_sizes():
    boxes = tf.constant(
        [[[-5.0, -1.0, 50.0, 70.0], [3.0, 4.0, 5.0, 6.0]], [[-5.0, -1.0, 50.0, 70.0], [3.0, 4.0, 5.0, 6.0]]]
    )
    out = clip_boxes(boxes, [[40.0, 60.0], [20.0, 30.0]]).numpy()
    np.testing.assert_allclose(out[0, 0], [0, 0, 40, 60])
    np.testing.assert_allclose(out[1, 0], [0, 0, 20, 30])
    np.testing.assert_allclose(out[:, 1], [[3, 4, 5, 6]] * 2)
    np.testing.assert_allclose(clip_boxes(boxes[0], (10.0, 10.0)).numpy()[0], [0, 0, 10, 10])
