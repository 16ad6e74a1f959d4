"""The registered RoI aligner layers against the float64 reference."""

from __future__ import annotations

import numpy as np
import numpy_ref
import pytest

from mrcnn_tf.modeling.roi_heads.roi_aligner import MultiLevelRoIAlign, RoIAlign
from mrcnn_tf.ops.roi_align import assign_levels


def test_c4_roi_align_layer_reads_c4_at_stride_16():
    rng = np.random.default_rng(0)
    c4 = rng.normal(size=(1, 6, 5, 3)).astype("float32")
    boxes = np.array([[[3, 5, 60, 70], [-8, 0, 30, 40]]], "float32")
    layer = RoIAlign(output_size=4, pooling="max", backend="gather")
    out = layer({"C4": c4, "C5": np.zeros((1, 3, 3, 1), "float32")}, boxes).numpy()
    ref = numpy_ref.roi_align(c4[0], boxes[0], 4, 1 / 16, 2, True, "max")
    np.testing.assert_allclose(out[0], ref, atol=1e-5)


def test_multilevel_layer_uses_p2_to_p5_and_ignores_p6():
    rng = np.random.default_rng(1)
    pyramid = {
        f"P{k}": rng.normal(size=(1, 128 // 2**k, 128 // 2**k, 2)).astype("float32") for k in range(2, 7)
    }
    boxes = np.array([[[0, 0, 500, 500], [10, 10, 40, 50]]], "float32")  # level 5 and level 2
    out = MultiLevelRoIAlign(output_size=2)(pyramid, boxes).numpy()
    levels = assign_levels(boxes[0]).numpy()
    assert levels.tolist() == [5, 2]
    for n, lv in enumerate(levels):
        ref = numpy_ref.roi_align(pyramid[f"P{lv}"][0], boxes[0, n : n + 1], 2, 2.0**-lv, 2, True)
        np.testing.assert_allclose(out[0, n], ref[0], atol=1e-5)


def test_missing_levels_and_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="needs pyramid levels"):
        MultiLevelRoIAlign()({"P2": np.zeros((1, 4, 4, 1), "float32")}, np.zeros((1, 1, 4), "float32"))
    with pytest.raises(ValueError, match="reads feature 'C4'"):
        RoIAlign()({"C5": np.zeros((1, 4, 4, 1), "float32")}, np.zeros((1, 1, 4), "float32"))
    with pytest.raises(ValueError, match="backend must be one of"):
        MultiLevelRoIAlign(backend="tpu")
