"""RoIAlign, both backends, against Detectron2's golden values and a float64 NumPy reference."""

from __future__ import annotations

import numpy as np
import numpy_ref
import pytest
import tensorflow as tf

from mrcnn_tf.ops.roi_align import crop_and_resize_samples, roi_align

BACKENDS = ["crop_and_resize", "gather"]
ARANGE = np.arange(25, dtype="float32").reshape(1, 5, 5, 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_detectron2_golden_values(backend):
    # detectron2 tests/layers/test_roi_align.py::test_forward_output: a 5×5 arange map, box
    # [1, 1, 3, 3], 4×4 output, spatial_scale 1, adaptive sampling (= 1 sample per bin here).
    old = [[7.5, 8, 8.5, 9], [10, 10.5, 11, 11.5], [12.5, 13, 13.5, 14], [15, 15.5, 16, 16.5]]
    aligned = [[4.5, 5.0, 5.5, 6.0], [7.0, 7.5, 8.0, 8.5], [9.5, 10.0, 10.5, 11.0], [12.0, 12.5, 13.0, 13.5]]
    box = np.array([[[1, 1, 3, 3]]], "float32")
    for is_aligned, expected in ((False, old), (True, aligned)):
        out = roi_align(ARANGE, box, 4, 1.0, sampling_ratio=1, aligned=is_aligned, backend=backend)
        np.testing.assert_allclose(out[0, 0, :, :, 0].numpy(), expected, atol=1e-5)


BOXES = np.array(
    [
        [4.0, 6.0, 30.0, 22.0],  # inside
        [-10.0, -6.0, 12.0, 9.0],  # partly outside (top-left)
        [20.0, 25.0, 45.0, 50.0],  # partly outside (bottom-right)
        [40.0, 40.0, 60.0, 70.0],  # fully outside
        [10.0, 10.0, 10.5, 10.2],  # tiny
        [7.0, 7.0, 7.0, 7.0],  # zero area
        [0.0, 0.0, 32.0, 28.0],  # the whole map
    ],
    "float32",
)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [1, 2, 3, 4])
def test_matches_reference(backend, aligned, sampling_ratio):
    rng = np.random.default_rng(sampling_ratio)
    features = rng.normal(size=(2, 8, 7, 3)).astype("float32")  # stride 4 -> a 32×28 input
    boxes = np.stack([BOXES, BOXES[::-1] * 0.9])
    out = roi_align(features, boxes, 3, 0.25, sampling_ratio=sampling_ratio, aligned=aligned, backend=backend)
    for b in range(2):
        ref = numpy_ref.roi_align(features[b], boxes[b], 3, 0.25, sampling_ratio, aligned)
        np.testing.assert_allclose(out[b].numpy(), ref, atol=1e-5, err_msg=f"image {b}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 0.125, 1.0 / 32])
def test_spatial_scales_and_max_pooling(backend, spatial_scale):
    rng = np.random.default_rng(7)
    features = rng.normal(size=(1, 6, 9, 2)).astype("float32")
    size = 1.0 / spatial_scale
    boxes = (np.array([[[0.5, 1.0, 4.5, 7.0], [-1.0, 2.0, 3.0, 9.5]]], "float32") * size).astype("float32")
    for pooling in ("avg", "max"):
        out = roi_align(features, boxes, 2, spatial_scale, sampling_ratio=2, backend=backend, pooling=pooling)
        ref = numpy_ref.roi_align(features[0], boxes[0], 2, spatial_scale, 2, True, pooling)
        np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-5, err_msg=pooling)


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_random_case_within_1e5_of_float64(backend):
    # Each backend stays within 1e-5 of the float64 reference (measured: crop_and_resize
    # 9.7e-6, gather 4.0e-6 here), so the two agree with each other to within 2e-5.
    rng = np.random.default_rng(3)
    features = rng.normal(size=(1, 25, 38, 16)).astype("float32")
    y1x1 = rng.uniform(-20, 180, size=(1, 50, 2))
    hw = rng.uniform(0, 120, size=(1, 50, 2))
    boxes = np.concatenate([y1x1, y1x1 + hw], axis=-1).astype("float32")
    out = roi_align(features, boxes, 7, 1 / 8, backend=backend)
    ref = numpy_ref.roi_align(features[0], boxes[0], 7, 1 / 8, 2, True)
    np.testing.assert_allclose(out[0].numpy(), ref, rtol=0, atol=1e-5)


def test_gather_backend_compiles_with_xla():
    features = tf.constant(np.random.default_rng(0).normal(size=(1, 8, 8, 4)), tf.float32)
    boxes = tf.constant([[[0.0, 0.0, 16.0, 16.0], [4.0, 8.0, 30.0, 31.0]]])

    @tf.function(jit_compile=True)
    def run(f, b):
        return roi_align(f, b, 2, 0.25, backend="gather")

    ref = numpy_ref.roi_align(features[0].numpy(), boxes[0].numpy(), 2, 0.25, 2, True)
    np.testing.assert_allclose(run(features, boxes)[0].numpy(), ref, atol=1e-5)


def test_gradients_reach_the_features():
    features = tf.Variable(np.ones((1, 4, 4, 1), "float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(
            roi_align(features, tf.constant([[[0.0, 0.0, 4.0, 4.0]]]), 2, 1.0, backend="gather")
        )
    grad = tape.gradient(loss, features).numpy()
    assert grad.sum() == pytest.approx(4.0, abs=1e-5)  # four bins, each an average summing to 1


def test_crop_and_resize_gradient_to_the_map_is_exact_on_every_call():
    # TensorFlow's own CPU kernel for this gradient loses updates between threads (1.6-6 %
    # error, different each call, with 2 threads); ours must match float64 every time.
    rng = np.random.default_rng(0)
    n = 300
    features = tf.constant(rng.standard_normal((2, 14, 14, 8)).astype(np.float32))
    start = rng.uniform(-2, 11, (n, 2))
    boxes = np.concatenate([start, start + rng.uniform(0.5, 6, (n, 2))], 1)  # some run off the map
    ys = (boxes[:, 0:1] + np.linspace(0, 1, 6)[None] * (boxes[:, 2:3] - boxes[:, 0:1])).astype(np.float32)
    xs = (boxes[:, 1:2] + np.linspace(0, 1, 6)[None] * (boxes[:, 3:4] - boxes[:, 1:2])).astype(np.float32)
    box_indices = rng.integers(0, 2, n).astype(np.int32)
    d_samples = rng.standard_normal((n, 6, 6, 8)).astype(np.float32)

    @tf.function
    def grad():
        with tf.GradientTape() as tape:
            tape.watch(features)
            samples = crop_and_resize_samples(features, ys, xs, box_indices)
        return tape.gradient(samples, features, output_gradients=d_samples)

    # reference on the padded map (crop_and_resize_samples pads one edge-replicated pixel,
    # whose gradient folds back onto the border), the boxes normalised as the function does
    norm = np.stack([(ys[:, 0] + 1) / 15, (xs[:, 0] + 1) / 15, (ys[:, -1] + 1) / 15, (xs[:, -1] + 1) / 15], 1)
    padded = numpy_ref.crop_and_resize_image_grad(d_samples, (2, 16, 16, 8), norm, box_indices)
    expected = padded[:, 1:-1, 1:-1].copy()
    expected[:, 0] += padded[:, 0, 1:-1]
    expected[:, -1] += padded[:, -1, 1:-1]
    expected[:, :, 0] += padded[:, 1:-1, 0]
    expected[:, :, -1] += padded[:, 1:-1, -1]
    for corner_y, corner_x in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        expected[:, corner_y, corner_x] += padded[:, corner_y, corner_x]
    scale = np.abs(expected).max()
    for _ in range(5):
        np.testing.assert_allclose(grad().numpy(), expected, atol=1e-5 * scale)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "cuda"}, "backend must be one of"),
        ({"pooling": "sum"}, "pooling must be one of"),
        ({"sampling_ratio": -1}, "sampling_ratio must be >= 1, or 0"),
        ({"sampling_ratio": 0, "pooling": "max"}, "adaptive"),
        ({"sampling_ratio": 0, "max_sampling_ratio": 0}, "max_sampling_ratio must be >= 1"),
        ({"output_size": 0}, "output_size must be >= 1"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"output_size": 2, "spatial_scale": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        roi_align(ARANGE, np.zeros((1, 1, 4), "float32"), **args)


ADAPTIVE_BOXES = np.array(
    [
        [4.0, 6.0, 30.0, 22.0],  # 6.5 x 4 feature px: 3 x 2 samples per 3-bin axis
        [-10.0, -6.0, 12.0, 9.0],  # partly outside
        [10.0, 10.0, 10.5, 10.2],  # tiny: one sample per bin
        [7.0, 7.0, 7.0, 7.0],  # empty: no samples, zeros (aligned)
        [0.0, 0.0, 32.0, 28.0],  # the whole map: 8 x 7 px -> 3 x 3
        [2.0, 1.0, 30.0, 5.0],  # elongated: 7 x 1 px -> 3 x 1
    ],
    "float32",
)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("aligned", [True, False])
def test_adaptive_sampling_ratio_matches_detectron2s_formula(backend, aligned):
    """``sampling_ratio=0``: ``ceil(roi / output_size)`` samples per bin and axis, per RoI, against
    the float64 reference of Detectron2's kernel (static shapes: masked slots)."""
    rng = np.random.default_rng(11)
    features = rng.normal(size=(2, 8, 7, 3)).astype("float32")
    boxes = np.stack([ADAPTIVE_BOXES, ADAPTIVE_BOXES[::-1] * 0.9])
    out = roi_align(features, boxes, 3, 0.25, sampling_ratio=0, aligned=aligned, backend=backend)
    for b in range(2):
        ref = numpy_ref.roi_align(features[b], boxes[b], 3, 0.25, 0, aligned)
        np.testing.assert_allclose(out[b].numpy(), ref, atol=1e-5, err_msg=f"image {b}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_adaptive_grid_on_large_random_rois_within_1e5_of_float64(backend):
    """RoIs of 0 to 27 feature pixels at output 7: 0 to 4 samples per bin and axis, exact."""
    rng = np.random.default_rng(5)
    features = rng.normal(size=(1, 25, 38, 8)).astype("float32")
    y1x1 = rng.uniform(-20, 180, size=(1, 60, 2))
    hw = rng.uniform(0, 27 * 8, size=(1, 60, 2))
    boxes = np.concatenate([y1x1, y1x1 + hw], axis=-1).astype("float32")
    out = roi_align(features, boxes, 7, 1 / 8, sampling_ratio=0, backend=backend, max_sampling_ratio=4)
    ref = numpy_ref.roi_align(features[0], boxes[0], 7, 1 / 8, 0, True)
    np.testing.assert_allclose(out[0].numpy(), ref, rtol=0, atol=1e-5)
