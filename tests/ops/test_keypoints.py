"""Keypoint targets, heatmap decoding, flip maps and the keypoint loss vs float64 NumPy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.data.coco_keypoints import flip_map
from mrcnn_tf.modeling.detectors import targets as target_ops
from mrcnn_tf.ops import keypoints as kp_ops

#: torchvision's ``references/detection/transforms.py`` ``_flip_coco_person_keypoints``
#: (and Detectron2's COCO flip map) for COCO's 17 person keypoints.
COCO_NAMES = (
    "nose left_eye right_eye left_ear right_ear left_shoulder right_shoulder left_elbow right_elbow "
    "left_wrist right_wrist left_hip right_hip left_knee right_knee left_ankle right_ankle"
).split()
COCO_FLIP = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]


def ref_target(keypoint, roi, size):
    """The paper's discretisation in float64: (cell index, valid) of one keypoint in one RoI."""
    x, y, v = (float(t) for t in keypoint)
    y1, x1, y2, x2 = (float(t) for t in roi)
    if v <= 0 or x2 <= x1 or y2 <= y1:
        return 0, False
    gx = size - 1 if x == x2 else math.floor((x - x1) * size / (x2 - x1))
    gy = size - 1 if y == y2 else math.floor((y - y1) * size / (y2 - y1))
    if not (0 <= gx < size and 0 <= gy < size):
        return 0, False
    return gy * size + gx, True


def ref_decode(logits, box):
    """(x, y, score) of each keypoint from one RoI's ``[S, S, K]`` heatmaps, in float64."""
    logits = np.asarray(logits, np.float64)
    size = logits.shape[0]
    y1, x1, y2, x2 = (float(t) for t in box)
    out = []
    for k in range(logits.shape[-1]):
        m = logits[..., k]
        i, j = np.unravel_index(int(np.argmax(m)), m.shape)
        c = m[i, j]

        def vertex(before, after, inside, c=c):
            denom = before - 2 * c + after
            return (before - after) / (2 * denom) if inside and denom < 0 else 0.0

        dx = vertex(m[i, j - 1] if j > 0 else 0, m[i, j + 1] if j < size - 1 else 0, 0 < j < size - 1)
        dy = vertex(m[i - 1, j] if i > 0 else 0, m[i + 1, j] if i < size - 1 else 0, 0 < i < size - 1)
        score = math.exp(c - np.log(np.exp(m - m.max()).sum()) - m.max())
        out.append([x1 + (j + 0.5 + dx) * (x2 - x1) / size, y1 + (i + 0.5 + dy) * (y2 - y1) / size, score])
    return np.array(out)


def test_targets_match_the_float64_discretisation():
    rng = np.random.default_rng(0)
    size, n, k = 56, 40, 9
    y1x1 = rng.uniform(0, 100, (n, 2))
    hw = rng.uniform(5, 200, (n, 2))
    rois = np.concatenate([y1x1, y1x1 + hw], 1)
    # keypoints around each RoI (some outside), v in {0, 1, 2}
    frac = rng.uniform(-0.3, 1.3, (n, k, 2))
    xy = np.stack(
        [rois[:, None, 1] + frac[..., 0] * hw[:, None, 1], rois[:, None, 0] + frac[..., 1] * hw[:, None, 0]],
        -1,
    )
    kps = np.concatenate([xy, rng.integers(0, 3, (n, k, 1))], -1).astype(np.float32)
    # the paper's edge cases: on the left/top edge, on the right/bottom edge, invisible, empty RoI
    kps[0, 0] = [rois[0, 1], rois[0, 0], 2]
    kps[0, 1] = [rois[0, 3], rois[0, 2], 2]
    kps[0, 2] = [rois[0, 3], rois[0, 0], 1]
    kps[0, 3] = [(rois[0, 1] + rois[0, 3]) / 2, (rois[0, 0] + rois[0, 2]) / 2, 0]
    rois = rois.astype(np.float32)
    rois[1, 3] = rois[1, 1]  # zero width
    index, valid = kp_ops.keypoint_targets(tf.constant(kps), tf.constant(rois), size)
    index, valid = index.numpy(), valid.numpy()
    checked = 0
    for r in range(n):
        for j in range(k):
            # skip points within float32 rounding of a cell boundary (either answer is right)
            fx = (float(kps[r, j, 0]) - float(rois[r, 1])) * size / max(float(rois[r, 3] - rois[r, 1]), 1e-9)
            fy = (float(kps[r, j, 1]) - float(rois[r, 0])) * size / max(float(rois[r, 2] - rois[r, 0]), 1e-9)
            on_edge = (r, j) in ((0, 0), (0, 1), (0, 2))
            if not on_edge and min(abs(fx - round(fx)), abs(fy - round(fy))) < 1e-3:
                continue
            want = ref_target(kps[r, j], rois[r], size)
            assert (int(index[r, j]), bool(valid[r, j])) == want, (r, j, kps[r, j], rois[r])
            checked += 1
    assert checked > 0.95 * n * k
    assert (int(index[0, 0]), bool(valid[0, 0])) == (0, True)  # top-left edge: first cell
    assert (int(index[0, 1]), bool(valid[0, 1])) == (size * size - 1, True)  # bottom-right edge: last
    assert (int(index[0, 2]), bool(valid[0, 2])) == (size - 1, True)  # right edge, top row
    assert not valid[0, 3] and not valid[1].any()
    assert 0.2 < valid.mean() < 0.8


def test_a_keypoint_at_a_pixel_centre_lands_in_that_cell():
    # RoI = the 56x56 pixels at (10, 20): the cell of pixel (row 30, col 5) is 30 * 56 + 5
    index, valid = kp_ops.keypoint_targets(
        tf.constant([[[20 + 5.5, 10 + 30.5, 2.0]]]), tf.constant([[10.0, 20.0, 66.0, 76.0]]), 56
    )
    assert int(index[0, 0]) == 30 * 56 + 5 and bool(valid[0, 0])


def test_decode_matches_the_float64_reference():
    rng = np.random.default_rng(1)
    b, n, s, k = 2, 5, 56, 4
    logits = rng.normal(0, 2, (b, n, s, s, k)).astype(np.float32)
    logits[0, 0, 0, 7, 0] = 50.0  # peak on the top border: no refinement across rows
    logits[0, 0, 20, s - 1, 1] = 50.0  # on the right border
    logits[1, 2, 30, 30, 2] = 9.0
    logits[1, 2, 30, 31, 2] = 8.5  # strong neighbour: a large sub-cell shift
    y1x1 = rng.uniform(0, 300, (b, n, 2))
    boxes = np.concatenate([y1x1, y1x1 + rng.uniform(10, 300, (b, n, 2))], -1).astype(np.float32)
    got = kp_ops.decode_heatmaps(tf.constant(logits), tf.constant(boxes)).numpy()
    assert got.shape == (b, n, k, 3)
    for i in range(b):
        for j in range(n):
            want = ref_decode(logits[i, j], boxes[i, j])
            np.testing.assert_allclose(got[i, j, :, :2], want[:, :2], atol=2e-3, rtol=0)
            np.testing.assert_allclose(got[i, j, :, 2], want[:, 2], rtol=1e-4, atol=1e-7)
    # the border peaks are not refined along the border axis: exactly the cell centre
    y1, x1, y2, x2 = boxes[0, 0]
    assert got[0, 0, 0, 1] == pytest.approx(y1 + 0.5 * (y2 - y1) / s, abs=1e-3)
    assert got[0, 0, 1, 0] == pytest.approx(x1 + (s - 0.5) * (x2 - x1) / s, abs=1e-3)


def test_decode_recovers_a_gaussian_peak_between_cells():
    # log-Gaussian logits are a parabola in each axis: its vertex is the exact peak position
    s = 56
    box = np.array([10.0, 20.0, 66.0, 132.0])  # h 56 (1 px per cell), w 112 (2 px per cell)
    peaks = [(50.3, 30.7), (21.0 + 2 * 17.5, 10.0 + 40.5), (120.9, 64.6)]  # (x, y) in image pixels
    logits = np.zeros((1, 1, s, s, len(peaks)), np.float32)
    rows = np.arange(s) + 0.5
    for k, (x, y) in enumerate(peaks):
        cx, cy = (x - box[1]) * s / (box[3] - box[1]), (y - box[0]) * s / (box[2] - box[0])
        logits[0, 0, ..., k] = -((rows[:, None] - cy) ** 2 + (rows[None, :] - cx) ** 2) / (2 * 1.5**2)
    got = kp_ops.decode_heatmaps(tf.constant(logits), tf.constant(box[None, None], tf.float32)).numpy()
    np.testing.assert_allclose(got[0, 0, :, 0], [p[0] for p in peaks], atol=2e-3)
    np.testing.assert_allclose(got[0, 0, :, 1], [p[1] for p in peaks], atol=2e-3)


def test_coco_flip_map_from_names():
    assert flip_map(COCO_NAMES) == COCO_FLIP
    names = ["head", "hand_l", "hand_r", "l_foot", "r_foot", "LeftKnee", "RightKnee"]
    assert flip_map(names) == [0, 2, 1, 4, 3, 6, 5]
    assert flip_map(["a", "b", "c"], pairs=[["a", "c"]]) == [2, 1, 0]
    assert flip_map(["a", "b", "c"], pairs={"b": "c"}) == [0, 2, 1]
    with pytest.raises(ValueError, match="'z', which is not a keypoint"):
        flip_map(["a", "b"], pairs=[["a", "z"]])
    with pytest.raises(ValueError, match="two flip pairs"):
        flip_map(["a", "b", "c"], pairs=[["a", "b"], ["b", "c"]])


def test_flip_keypoints_mirrors_and_swaps_sides():
    names = ["nose", "left_eye", "right_eye"]
    kps = tf.constant(
        [[[10.5, 4.0, 2.0], [8.0, 3.0, 1.0], [12.25, 3.0, 2.0]], [[0, 0, 0], [5, 5, 2], [0, 0, 0]]]
    )
    got = kp_ops.flip_keypoints(kps, 40, flip_map(names)).numpy()
    want = np.array([[[29.5, 4, 2], [27.75, 3, 2], [32, 3, 1]], [[0, 0, 0], [0, 0, 0], [35, 5, 2]]])
    np.testing.assert_allclose(got, want)
    back = kp_ops.flip_keypoints(tf.constant(got), 40, flip_map(names)).numpy()
    np.testing.assert_allclose(back, kps.numpy())


def test_keypoint_loss_is_the_spatial_softmax_averaged_over_visible_keypoints():
    from mrcnn_tf.losses.box_losses import SmoothL1Loss
    from mrcnn_tf.losses.classification_losses import SigmoidCrossEntropyLoss, SoftmaxCrossEntropyLoss

    rng = np.random.default_rng(2)
    b, m, s, k = 2, 3, 8, 4
    heat = rng.normal(0, 1, (b, m, s, s, k)).astype(np.float32)
    rois = np.array([[[0, 0, 16, 16], [4, 4, 20, 36], [0, 0, 8, 8]]] * b, np.float32)
    gt = rng.uniform(0, 20, (b, 2, k, 3)).astype(np.float32)
    gt[..., 2] = rng.integers(0, 3, (b, 2, k))
    samples = {
        "rois": tf.constant(rois),
        "matched": tf.constant([[0, 1, 1], [1, 0, 0]], tf.int32),
        "positive": tf.constant([[True, True, False], [True, False, True]]),
    }
    out = target_ops.keypoint_outputs(tf.constant(heat), samples, m, tf.constant(gt))
    total, count = 0.0, 0
    for i in range(b):
        for r in range(m):
            if not samples["positive"][i, r]:
                continue
            g = int(samples["matched"][i, r])
            for j in range(k):
                index, valid = ref_target(gt[i, g, j], rois[i, r], s)
                if valid:
                    z = heat[i, r, :, :, j].astype(np.float64).reshape(-1)
                    total += np.log(np.exp(z - z.max()).sum()) + z.max() - z[index]
                    count += 1
    assert count >= 4
    dummy = {
        "rpn_valid": tf.ones([1, 1]),
        "rpn_positive": tf.zeros([1, 1]),
        "rpn_logits": tf.zeros([1, 1]),
        "rpn_box_targets": tf.zeros([1, 1, 4]),
        "rpn_deltas": tf.zeros([1, 1, 4]),
        "box_valid": tf.ones([1, 1]),
        "box_positive": tf.zeros([1, 1]),
        "box_classes": tf.zeros([1, 1], tf.int32),
        "box_logits": tf.zeros([1, 1, 2]),
        "box_targets": tf.zeros([1, 1, 4]),
        "box_deltas": tf.zeros([1, 1, 4]),
    }
    fns = {
        "rpn_objectness": SigmoidCrossEntropyLoss(),
        "rpn_box": SmoothL1Loss(),
        "box_cls": SoftmaxCrossEntropyLoss(),
        "box_reg": SmoothL1Loss(),
        "keypoint": SoftmaxCrossEntropyLoss(),
    }
    got = float(target_ops.losses(fns, {**dummy, **out})["keypoint"])
    assert got == pytest.approx(total / count, rel=1e-5)


def ref_bicubic_resize(m, out_h, out_w, a=-0.75):
    """PyTorch's bicubic ``interpolate(align_corners=False)`` of a 2-D map, in float64."""

    def matrix(n, out):
        mat = np.zeros((out, n))
        for d in range(out):
            real = n / out * (d + 0.5) - 0.5
            base = math.floor(real)
            t = real - base
            near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # noqa: E731
            far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # noqa: E731
            for tap, w in zip((-1, 0, 1, 2), (far(t + 1), near(t), near(1 - t), far(2 - t)), strict=True):
                mat[d, min(max(base + tap, 0), n - 1)] += w
        return mat

    return matrix(m.shape[0], out_h) @ m @ matrix(m.shape[1], out_w).T


def ref_torchvision_decode(logits, box):
    """torchvision's ``heatmaps_to_keypoints`` for one RoI ``[S, S, K]``, float64, full resize."""
    y1, x1, y2, x2 = (float(v) for v in box)
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    out_w, out_h = math.ceil(w), math.ceil(h)
    out = []
    for k in range(logits.shape[-1]):
        big = ref_bicubic_resize(logits[..., k].astype(np.float64), out_h, out_w)
        yi, xi = np.unravel_index(int(np.argmax(big)), big.shape)
        out.append([x1 + (xi + 0.5) * w / out_w, y1 + (yi + 0.5) * h / out_h, big[yi, xi]])
    return np.array(out)


def test_torchvision_decode_matches_the_full_bicubic_resize():
    rng = np.random.default_rng(3)
    s, k = 56, 3
    # smooth heatmaps (a few Gaussian bumps): one clear maximum each, as trained heads give
    yy, xx = np.mgrid[0:s, 0:s] + 0.5
    logits = np.zeros((1, 6, s, s, k), np.float32)
    for n in range(6):
        for j in range(k):
            for height, (cy, cx) in zip((4.0, 2.5, 2.0), rng.uniform(3, s - 3, (3, 2)), strict=True):
                logits[0, n, :, :, j] += height * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
            logits[0, n, :, :, j] += rng.normal(0, 0.05, (s, s))
    sizes = [(20.0, 30.5), (47.2, 12.0), (100.0, 64.3), (230.5, 180.0), (0.4, 5.0), (56.0, 56.0)]
    boxes = np.array([[[10.0, 20.0, 10.0 + h, 20.0 + w] for h, w in sizes]], np.float32)
    got = kp_ops.decode_heatmaps_bicubic(tf.constant(logits), tf.constant(boxes)).numpy()
    for n in range(6):
        want = ref_torchvision_decode(logits[0, n], boxes[0, n])
        np.testing.assert_allclose(got[0, n, :, :2], want[:, :2], atol=1e-3, err_msg=str(sizes[n]))
        np.testing.assert_allclose(got[0, n, :, 2], want[:, 2], atol=1e-4)
