"""Mask targets and mask pasting vs a float64 NumPy reference written from the formulas."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_tf.ops import masks as mask_ops


def bilinear_zero(grid: np.ndarray, y: float, x: float) -> float:
    """Bilinear value of ``grid`` at index position (y, x), zero outside the grid (2-D, direct)."""
    h, w = grid.shape
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    total = 0.0
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                total += wy * wx * float(grid[yy, xx])
    return total


def ref_targets(mask, gt_box, roi, m, ratio, threshold):
    s = mask.shape[0]
    gy1, gx1, gy2, gx2 = (float(v) for v in gt_box)
    ry1, rx1, ry2, rx2 = (float(v) for v in roi)
    out = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            acc = 0.0
            for a in range(ratio):
                for b in range(ratio):
                    y = ry1 + (i + (a + 0.5) / ratio) * (ry2 - ry1) / m
                    x = rx1 + (j + (b + 0.5) / ratio) * (rx2 - rx1) / m
                    iy = (y - gy1) / (gy2 - gy1) * s - 0.5
                    ix = (x - gx1) / (gx2 - gx1) * s - 0.5
                    acc += bilinear_zero(mask, iy, ix)
            out[i, j] = acc / ratio**2
    return (out >= threshold).astype(np.float64) if threshold is not None else out


def ref_paste(mask, box, height, width):
    m = mask.shape[0]
    y1, x1, y2, x2 = (float(v) for v in box)
    out = np.zeros((height, width))
    for y in range(height):
        for x in range(width):
            iy = (y + 0.5 - y1) / (y2 - y1) * m - 0.5
            ix = (x + 0.5 - x1) / (x2 - x1) * m - 0.5
            out[y, x] = bilinear_zero(mask, iy, ix)
    return out


def test_roi_equal_to_rectangular_gt_box_gives_all_ones():
    mask = np.ones((1, 28, 28), np.float32)
    box = np.array([[10.0, 20.0, 50.0, 44.0]], np.float32)
    out = mask_ops.crop_mask_targets(mask, box, box, 28).numpy()
    np.testing.assert_array_equal(out, np.ones((1, 28, 28)))


@pytest.mark.parametrize("size", [14, 28])
def test_roi_half_outside_the_gt_box_gives_half_ones(size):
    mask = np.ones((1, size, size), np.float32)
    gt = np.array([[0.0, 0.0, 40.0, 40.0]], np.float32)
    roi = np.array([[0.0, 20.0, 40.0, 60.0]], np.float32)  # right half is outside the GT box
    out = mask_ops.crop_mask_targets(mask, gt, roi, 28).numpy()[0]
    np.testing.assert_array_equal(out[:, :14], 1.0)
    np.testing.assert_array_equal(out[:, 14:], 0.0)
    soft = mask_ops.crop_mask_targets(mask, gt, roi, 28, threshold=None).numpy()[0]
    assert soft.mean() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("ratio", [1, 2, 3])
@pytest.mark.parametrize("threshold", [None, 0.5])
def test_mask_targets_match_reference(ratio, threshold):
    rng = np.random.default_rng(ratio)
    masks = (rng.random((5, 12, 12)) > 0.4).astype(np.float32)
    gt = np.array(
        [[10, 10, 50, 40], [0, 0, 8, 8], [30, 5, 31, 90], [5, 5, 60, 60], [-10, -10, 20, 30]], np.float32
    )
    rois = np.array(
        [[12, 8, 45, 44], [-4, 2, 9, 7.5], [29, 0, 33, 70], [20, 30, 25, 35], [0, 0, 64, 64]], np.float32
    )
    out = mask_ops.crop_mask_targets(masks, gt, rois, 7, sampling_ratio=ratio, threshold=threshold).numpy()
    for g in range(5):
        expect = ref_targets(masks[g], gt[g], rois[g], 7, ratio, threshold)
        if threshold is None:
            np.testing.assert_allclose(out[g], expect, atol=1e-5)
        else:  # a value within float error of the threshold may flip; there are none here
            soft = ref_targets(masks[g], gt[g], rois[g], 7, ratio, None)
            decided = np.abs(soft - threshold) > 1e-4
            np.testing.assert_array_equal(out[g][decided], expect[decided])


def test_mask_targets_batched_leading_dims():
    masks = np.ones((2, 3, 8, 8), np.float32)
    boxes = np.tile(np.array([0, 0, 16, 16], np.float32), (2, 3, 1))
    out = mask_ops.crop_mask_targets(masks, boxes, boxes, 4)
    assert out.shape == (2, 3, 4, 4)
    np.testing.assert_array_equal(out.numpy(), 1.0)


def test_paste_matches_reference_including_outside_and_tiny_boxes():
    rng = np.random.default_rng(0)
    masks = rng.random((4, 7, 7)).astype(np.float32)
    boxes = np.array(
        [[2.3, 3.1, 15.7, 11.2], [-5, -3, 6, 9], [10, 12, 10.6, 12.4], [12, 14, 30, 40]], np.float32
    )
    soft = mask_ops.paste_masks(masks, boxes, (20, 18), threshold=None).numpy()
    hard = mask_ops.paste_masks(masks, boxes, (20, 18)).numpy()
    assert hard.dtype == np.uint8
    for n in range(4):
        expect = ref_paste(masks[n], boxes[n], 20, 18)
        np.testing.assert_allclose(soft[n], expect, atol=1e-5)
        decided = np.abs(expect - 0.5) > 1e-4
        np.testing.assert_array_equal(hard[n][decided], (expect >= 0.5)[decided])


def test_paste_full_mask_of_integer_box_fills_exactly_the_box():
    masks = np.ones((1, 28, 28), np.float32)
    out = mask_ops.paste_masks(masks, np.array([[3.0, 4.0, 9.0, 14.0]], np.float32), (12, 16)).numpy()[0]
    expect = np.zeros((12, 16), np.uint8)
    expect[3:9, 4:14] = 1
    np.testing.assert_array_equal(out, expect)


def test_paste_one_pixel_box_marks_that_pixel():
    out = mask_ops.paste_masks(np.ones((1, 28, 28), np.float32), np.array([[5.0, 6.0, 6.0, 7.0]]), (10, 10))
    expect = np.zeros((10, 10), np.uint8)
    expect[5, 6] = 1
    np.testing.assert_array_equal(out.numpy()[0], expect)


def test_paste_mask_crop_equals_paste_masks_inside_and_is_zero_outside():
    from mrcnn_tf.ops.masks import paste_mask_crop, paste_masks

    rng = np.random.default_rng(7)
    height, width = 61, 83
    boxes = [
        [10.3, 5.7, 40.2, 30.9],
        [-8.0, 70.0, 20.0, 95.0],  # partly outside the image
        [30.0, 30.0, 30.6, 31.1],  # smaller than a pixel
        [0.0, 0.0, 61.0, 83.0],  # the whole image
        [70.0, 90.0, 80.0, 99.0],  # outside
    ]
    masks = rng.uniform(0, 1, (len(boxes), 28, 28)).astype(np.float32)
    masks[2] = 1.0
    full = np.asarray(paste_masks(masks, np.asarray(boxes, np.float32), (height, width)))
    for mask, box, want in zip(masks, boxes, full, strict=True):
        crop, y0, x0 = paste_mask_crop(mask, box, (height, width))
        got = np.zeros((height, width), bool)
        got[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
        assert np.array_equal(got, want.astype(bool)), box
        assert crop.size <= (box[2] - box[0] + 4) * (box[3] - box[1] + 4) + 1
