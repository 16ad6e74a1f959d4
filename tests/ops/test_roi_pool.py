"""RoIPool vs a float64 loop reference of the Caffe/torchvision formula."""

from __future__ import annotations

import numpy as np
import numpy_ref
import tensorflow as tf

from mrcnn_tf.ops.roi_pool import multilevel_roi_pool

BOXES = np.array(
    [
        [
            [0, 0, 31, 31],
            [2.4, 3.6, 20.5, 9.5],
            [-8, -8, 6, 6],
            [10, 10, 10, 10],
            [40, 40, 60, 70],
            [5, 1, 28, 12],
        ]
    ],
    np.float32,
)


def test_single_level_matches_reference():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(1, 16, 16, 3)).astype(np.float32)
    out = multilevel_roi_pool([features], BOXES, 4, min_level=1, samples_per_bin=8, canonical_level=1)
    # one level at stride 2 (min_level=1): spatial scale 1/2 for every box
    np.testing.assert_allclose(out.numpy(), numpy_ref.roi_pool(features, BOXES, 4, 0.5), atol=1e-6)


def test_published_torchvision_style_value():
    # 1x1 bins over a 4x4 arange map: the max of the box's pixels (rounded box, inclusive end).
    features = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    out = multilevel_roi_pool([features], np.array([[[1, 1, 2, 2]]], np.float32), 1, min_level=0)
    assert float(out.numpy().ravel()[0]) == 10.0  # rows/cols 1..2 -> max at (2, 2)


def test_pyramid_reads_the_assigned_level_and_compiles_with_xla():
    rng = np.random.default_rng(1)
    p2 = rng.normal(size=(2, 32, 32, 2)).astype(np.float32)
    p3 = rng.normal(size=(2, 16, 16, 2)).astype(np.float32)
    boxes = np.array([[[0, 0, 40, 40], [8, 8, 120, 120]], [[4, 4, 30, 60], [0, 0, 127, 127]]], np.float32)
    fn = tf.function(
        lambda a, b, c: multilevel_roi_pool([a, b], c, 3, canonical_size=64, canonical_level=3),
        jit_compile=True,
    )
    out = fn(p2, p3, boxes).numpy()
    # size 40 -> level floor(3 + log2(40/64)) = 2; size 112 / 83.7 / 127 -> level 3
    for b in range(2):
        for n in range(2):
            box = boxes[b : b + 1, n : n + 1]
            size = np.sqrt((box[0, 0, 2] - box[0, 0, 0]) * (box[0, 0, 3] - box[0, 0, 1]))
            level = int(np.clip(np.floor(3 + np.log2(size / 64 + 1e-8)), 2, 3))
            fmap = (p2 if level == 2 else p3)[b : b + 1]
            expect = numpy_ref.roi_pool(fmap, box, 3, 2.0**-level)
            np.testing.assert_allclose(out[b, n], expect[0, 0], atol=1e-6)
