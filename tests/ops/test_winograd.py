"""Winograd F(2×2, 3×3) and F(4×4, 3×3) against a float64 NumPy convolution."""

from __future__ import annotations

import numpy as np
import numpy_ref
import pytest
import tensorflow as tf

from mrcnn_tf.ops import winograd
from mrcnn_tf.ops.winograd import winograd_conv3x3

#: Worst error over the output's largest magnitude, float32 inputs (module docstring: 7e-7 for
#: m = 2 and 1.5e-5 for m = 4 at 256 channels; fewer channels here, same order).
TOLERANCE = {2: 2e-6, 4: 5e-5}


def _data(shape, filters, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = (rng.standard_normal((3, 3, shape[-1], filters)) * np.sqrt(2 / (9 * shape[-1]))).astype(
        np.float32
    )
    return x, kernel


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("shape", [(1, 1, 1, 8), (2, 5, 7, 16), (3, 14, 14, 8), (1, 17, 9, 4)])
def test_matches_a_float64_convolution_with_one_pixel_of_zero_padding(m, shape):
    x, kernel = _data(shape, 12)
    expected = numpy_ref.conv2d(x, kernel, pad=1)
    out = winograd_conv3x3(tf.constant(x), tf.constant(kernel), m).numpy()
    assert out.shape == expected.shape
    scale = np.abs(expected).max()
    np.testing.assert_allclose(out, expected, atol=TOLERANCE[m] * scale, rtol=0)


@pytest.mark.parametrize("m", [2, 4])
def test_dynamic_shapes_in_a_graph(m):
    fn = tf.function(
        lambda x, k: winograd_conv3x3(x, k, m),
        input_signature=[tf.TensorSpec([None, None, None, 8]), tf.TensorSpec([3, 3, 8, 6])],
    )
    for shape in [(1, 9, 6, 8), (2, 4, 13, 8)]:
        x, kernel = _data(shape, 6, seed=sum(shape))
        expected = numpy_ref.conv2d(x, kernel, pad=1)
        np.testing.assert_allclose(
            fn(x, kernel).numpy(), expected, atol=TOLERANCE[m] * np.abs(expected).max()
        )


@pytest.mark.parametrize("m", [2, 4])
def test_gradients_match_the_float64_formulas(m):
    x, kernel = _data((2, 6, 9, 5), 4, seed=3)
    weights = np.random.default_rng(4).standard_normal((2, 6, 9, 4))  # L = sum(weights * conv)
    xt, kt = tf.constant(x), tf.constant(kernel)
    with tf.GradientTape() as tape:
        tape.watch([xt, kt])
        loss = tf.reduce_sum(tf.constant(weights, tf.float32) * winograd_conv3x3(xt, kt, m))
    dx, dk = tape.gradient(loss, [xt, kt])
    # dL/dk[i, j, c, o] = sum over batch and pixels of xpad[y + i, x + j, c] * weights[y, x, o]
    xpad = np.pad(x.astype(np.float64), [(0, 0), (1, 1), (1, 1), (0, 0)])
    expected_dk = np.zeros((3, 3, 5, 4))
    for i in range(3):
        for j in range(3):
            patch = xpad[:, i : i + 6, j : j + 9, :]
            expected_dk[i, j] = np.tensordot(patch, weights, axes=([0, 1, 2], [0, 1, 2]))
    # dL/dx is the "same" convolution of weights with the kernel flipped in space, in/out swapped
    flipped = kernel[::-1, ::-1].transpose(0, 1, 3, 2)
    expected_dx = numpy_ref.conv2d(weights, flipped, pad=1)
    for got, want in ((dk, expected_dk), (dx, expected_dx)):
        np.testing.assert_allclose(got.numpy(), want, atol=TOLERANCE[m] * 10 * np.abs(want).max())


def test_rejects_other_tile_sizes():
    x, kernel = _data((1, 4, 4, 2), 2)
    with pytest.raises(ValueError, match="tile sizes \\[2, 4\\], got 3"):
        winograd_conv3x3(tf.constant(x), tf.constant(kernel), 3)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("shape", [(1, 13, 9, 8), (2, 16, 6, 8), (1, 5, 30, 8)])
def test_large_static_maps_go_in_bands_of_tile_rows_with_the_same_result(m, shape, monkeypatch):
    monkeypatch.setattr(winograd, "MAX_TILES", 5)  # bands of one to a few tile rows
    x, kernel = _data(shape, 6, seed=7)
    fn = tf.function(lambda a, b: winograd_conv3x3(a, b, m))
    graph = fn.get_concrete_function(tf.TensorSpec(shape), tf.TensorSpec(kernel.shape)).graph
    products = sum(op.type in ("MatMul", "BatchMatMulV2") for op in graph.get_operations())
    assert products >= 2 * (m + 2) ** 2 if m == 2 else products >= 2  # two bands or more
    expected = numpy_ref.conv2d(x, kernel, pad=1)
    np.testing.assert_allclose(fn(x, kernel).numpy(), expected, atol=TOLERANCE[m] * np.abs(expected).max())
