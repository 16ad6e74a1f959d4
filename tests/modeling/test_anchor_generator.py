"""Anchors against Detectron2's published golden values and a NumPy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mrcnn_tf.modeling.anchors.anchor_generator import AnchorGenerator


def _features(sizes: dict[str, tuple[int, int]]):
    return {k: np.zeros((1, h, w, 1), "float32") for k, (h, w) in sizes.items()}


def test_detectron2_golden_anchors_with_offset_0():
    # detectron2 tests/modeling/test_anchor_generator.py (test_default_anchor_generator):
    # sizes [32, 64], aspect ratios [0.25, 1, 4], stride 4, offset 0, a 2×2 feature map.
    # Its boxes are [x1, y1, x2, y2]; ours are [y1, x1, y2, x2].
    golden_xyxy = np.array(
        [
            [-32.0, -8.0, 32.0, 8.0],
            [-16.0, -16.0, 16.0, 16.0],
            [-8.0, -32.0, 8.0, 32.0],
            [-64.0, -16.0, 64.0, 16.0],
            [-32.0, -32.0, 32.0, 32.0],
            [-16.0, -64.0, 16.0, 64.0],
            [-28.0, -8.0, 36.0, 8.0],  # -28 == -32 + stride: the next column
            [-12.0, -16.0, 20.0, 16.0],
            [-4.0, -32.0, 12.0, 32.0],
            [-60.0, -16.0, 68.0, 16.0],
            [-28.0, -32.0, 36.0, 32.0],
            [-12.0, -64.0, 20.0, 64.0],
        ]
    )
    gen = AnchorGenerator(
        min_level=2, max_level=2, sizes=[32], scales=[1, 2], aspect_ratios=[0.25, 1, 4], offset=0.0
    )
    anchors = np.asarray(gen(_features({"P2": (2, 2)}))["P2"])
    assert anchors.shape == (2 * 2 * 6, 4)
    np.testing.assert_allclose(anchors[:12], golden_xyxy[:, [1, 0, 3, 2]], atol=1e-5)


def reference_anchors(level, height, width, size, ratios, scales, offset):
    stride = 2.0**level
    out = []
    for y in range(height):
        for x in range(width):
            cy, cx = (y + offset) * stride, (x + offset) * stride
            for s in scales:
                for r in ratios:
                    area = (size * s) ** 2
                    w = math.sqrt(area / r)
                    h = r * w
                    out.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
    return np.array(out)


def test_all_levels_match_reference_with_the_default_centred_offset():
    sizes = {"P2": (5, 3), "P3": (3, 2), "P4": (2, 1), "P5": (1, 1), "P6": (1, 1)}
    gen = AnchorGenerator()
    anchors = gen(_features(sizes))
    assert gen.num_anchors_per_location == 3
    for i, (name, (h, w)) in enumerate(sizes.items()):
        level = int(name[1])
        ref = reference_anchors(level, h, w, 32 * 2**i, [0.5, 1.0, 2.0], [1.0], 0.5)
        np.testing.assert_allclose(np.asarray(anchors[name]), ref, rtol=1e-6, atol=1e-4, err_msg=name)
    # the first P2 anchor of ratio 1 is centred on the first cell's centre (2, 2)
    np.testing.assert_allclose(np.asarray(anchors["P2"][1]), [-14.0, -14.0, 18.0, 18.0])


def test_areas_and_ratios():
    gen = AnchorGenerator(min_level=3, max_level=3, sizes=[64], aspect_ratios=[0.5, 1, 2], scales=[1, 2**0.5])
    a = np.asarray(gen(_features({"P3": (1, 1)}))["P3"]).astype(np.float64)
    h, w = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    np.testing.assert_allclose(h * w, [64**2] * 3 + [2 * 64**2] * 3, rtol=1e-5)
    np.testing.assert_allclose(h / w, [0.5, 1, 2] * 2, rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="one size per level"):
        AnchorGenerator(sizes=[32, 64])
    with pytest.raises(ValueError, match="positive"):
        AnchorGenerator(aspect_ratios=[0, 1])


def test_several_sizes_on_one_level_c4_style():
    gen = AnchorGenerator(
        min_level=4, max_level=4, sizes=[[32, 64, 128, 256, 512]], aspect_ratios=[0.5, 1, 2]
    )
    assert gen.num_anchors_per_location == 15
    anchors = gen({"P4": np.zeros((1, 2, 3, 8), np.float32)})["P4"].numpy()
    assert anchors.shape == (2 * 3 * 15, 4)
    # cell (0, 0), size 128, ratio 1 (index 2 * 3 + 1): centred at (8, 8) with offset 0.5
    np.testing.assert_allclose(anchors[7], [8 - 64, 8 - 64, 8 + 64, 8 + 64], atol=1e-4)
    # size 32, ratio 0.5: h = 32 * sqrt(0.5), w = 32 / sqrt(0.5)
    h, w = 32 * np.sqrt(0.5), 32 / np.sqrt(0.5)
    np.testing.assert_allclose(anchors[0], [8 - h / 2, 8 - w / 2, 8 + h / 2, 8 + w / 2], atol=1e-4)
    assert AnchorGenerator.from_config(gen.get_config()).get_config()["sizes"] == [[32, 64, 128, 256, 512]]
    with pytest.raises(ValueError, match="same number of sizes"):
        AnchorGenerator(min_level=2, max_level=3, sizes=[[32, 64], [128]])


def test_rounded_cell_anchors_are_torchvisions_table():
    """torchvision's rounded base anchors (xyxy, ratio 0.5, 1, 2), as its AnchorGenerator gives
    them for sizes 32..512 (the table in shared/reference/converters.md §1.6)."""
    from mrcnn_tf.modeling.anchors.anchor_generator import AnchorGenerator

    table = {
        2: [[-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23]],
        3: [[-45, -23, 45, 23], [-32, -32, 32, 32], [-23, -45, 23, 45]],
        4: [[-91, -45, 91, 45], [-64, -64, 64, 64], [-45, -91, 45, 91]],
        5: [[-181, -91, 181, 91], [-128, -128, 128, 128], [-91, -181, 91, 181]],
        6: [[-362, -181, 362, 181], [-256, -256, 256, 256], [-181, -362, 181, 362]],
    }
    generator = AnchorGenerator(round_cell_anchors=True, offset=0.0)
    for level, expected in table.items():
        ours = [[x1, y1, x2, y2] for y1, x1, y2, x2 in generator.cell_anchors(level)]
        assert ours == expected, level
