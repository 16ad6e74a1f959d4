"""FPN level assignment and multi-level RoIAlign against the single-level float64 reference."""

from __future__ import annotations

import math

import numpy as np
import numpy_ref
import pytest
import tensorflow as tf

from mrcnn_tf.ops.roi_align import adaptive_overflow, assign_levels, multilevel_roi_align


def _square(side: float) -> list[float]:
    return [10.0, 20.0, 10.0 + side, 20.0 + side]


@pytest.mark.parametrize(
    ("side", "level"),
    [
        (224.0, 4),  # the canonical size sits on k0
        (223.0, 3),
        (112.0, 3),  # 224 / 2 is the P3/P4 threshold
        (111.0, 2),
        (448.0, 5),
        (447.0, 4),
        (2000.0, 5),  # clamped
        (1.0, 2),  # clamped
        (0.0, 2),  # zero area: no NaN, lowest level
    ],
)
def test_level_assignment_at_the_thresholds(side, level):
    assert int(assign_levels(np.array([_square(side)], "float32"))[0]) == level
    expected = min(max(math.floor(4 + math.log2(max(side, 1e-9) / 224 + 1e-8)), 2), 5)
    assert level == expected


def test_level_assignment_of_rectangles_and_padded_boxes():
    boxes = np.array([[0, 0, 112, 448], [0, 0, 0, 0], [5, 5, 1, 1]], "float32")  # sqrt(wh) = 224
    np.testing.assert_array_equal(assign_levels(boxes).numpy(), [4, 2, 2])


def _case(seed=0):
    rng = np.random.default_rng(seed)
    feats = [rng.normal(size=(2, 96 // 2**k, 80 // 2**k, 4)).astype("float32") for k in range(2, 6)]
    corners = rng.uniform(-10, 70, size=(2, 12, 2))
    sizes = np.exp(rng.uniform(np.log(2), np.log(600), size=(2, 12, 2)))
    boxes = np.concatenate([corners, corners + sizes], -1).astype("float32")
    boxes[1, -1] = 0.0  # a padded box
    return feats, boxes


def _reference(feats, boxes, output_size, sampling_ratio):
    levels = assign_levels(boxes).numpy()
    out = np.zeros((*boxes.shape[:2], output_size, output_size, feats[0].shape[-1]))
    for b in range(boxes.shape[0]):
        for n in range(boxes.shape[1]):
            lv = levels[b, n]
            out[b, n] = numpy_ref.roi_align(
                feats[lv - 2][b], boxes[b, n : n + 1], output_size, 2.0**-lv, sampling_ratio, True
            )[0]
    return out, levels


@pytest.mark.parametrize("backend", ["crop_and_resize", "gather"])
def test_matches_per_box_reference(backend):
    feats, boxes = _case()
    ref, levels = _reference(feats, boxes, 3, 2)
    assert len(set(levels.ravel())) >= 3  # the case really spans levels
    out = multilevel_roi_align(feats, boxes, 3, backend=backend).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_gather_backend_compiles_with_xla():
    feats, boxes = _case(1)
    ref, _ = _reference(feats, boxes, 2, 1)

    @tf.function(jit_compile=True)
    def run(f2, f3, f4, f5, b):
        return multilevel_roi_align([f2, f3, f4, f5], b, 2, sampling_ratio=1, backend="gather")

    np.testing.assert_allclose(run(*feats, boxes).numpy(), ref, atol=1e-5)


@pytest.mark.parametrize("backend", ["crop_and_resize", "gather"])
def test_adaptive_sampling_on_a_pyramid_matches_the_reference(backend):
    """``sampling_ratio=0`` (Detectron2's ``ROIAlignV2``): each box's own grid on its own level
    (the crop_and_resize backend groups boxes by level; their grids must follow them)."""
    feats, boxes = _case(2)
    ref, levels = _reference(feats, boxes, 3, 0)
    assert len(set(levels.ravel())) >= 3
    sides = np.maximum(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]) * 2.0**-levels
    needed = int(np.ceil(sides / 3).max())  # the most samples per bin any box needs (elongated ones)
    assert needed > 4
    for chunk in (None, 64, 5):  # all at once, one chunk, 5 chunks of 5 (the last one padded)
        out = multilevel_roi_align(
            feats, boxes, 3, sampling_ratio=0, backend=backend, max_sampling_ratio=needed, roi_chunk=chunk
        )
        np.testing.assert_allclose(out.numpy(), ref, atol=1e-5, err_msg=f"roi_chunk={chunk}")
    # With fewer slots, exactly the boxes that need more are approximated, and counted.
    small = multilevel_roi_align(feats, boxes, 3, sampling_ratio=0, backend=backend, max_sampling_ratio=4)
    differs = np.abs(small.numpy() - ref).max(axis=(2, 3, 4)) > 1e-5
    over = np.ceil(sides / 3) > 4
    assert differs.sum() > 0 and not np.any(differs & ~over)
    flat = [adaptive_overflow(boxes[levels == lv], 3, 2.0**-lv, 4) for lv in range(2, 6)]
    assert int(sum(int(v) for v in flat)) == int(over.sum())


def test_adaptive_sampling_compiles_with_xla():
    feats, boxes = _case(3)
    ref, _ = _reference(feats, boxes, 2, 0)

    @tf.function(jit_compile=True)
    def run(f2, f3, f4, f5, b):
        return multilevel_roi_align(
            [f2, f3, f4, f5], b, 2, sampling_ratio=0, backend="gather", max_sampling_ratio=128
        )

    np.testing.assert_allclose(run(*feats, boxes).numpy(), ref, atol=1e-5)
