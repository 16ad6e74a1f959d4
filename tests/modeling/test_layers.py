"""PaddedConv2D, FrozenBatchNormalization and their folded form against NumPy references."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from numpy_ref import conv2d, relu

from mrcnn_tf.modeling.layers import (
    FrozenBatchNormalization,
    PaddedConv2D,
    check_conv_algorithm,
    conv3x3,
    conv_norm,
    make_norm,
    winograd_tile,
)


@pytest.mark.parametrize(
    ("size", "kernel", "stride"), [((7, 8), 3, 1), ((7, 8), 3, 2), ((9, 6), 7, 2), ((5, 5), 1, 2)]
)
def test_padded_conv_matches_symmetric_padding_reference(size, kernel, stride):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, *size, 3)).astype("float32")
    layer = PaddedConv2D(4, kernel, strides=stride, use_bias=True)
    y = np.asarray(layer(x))
    w, b = (np.asarray(v) for v in layer.weights)
    expected = conv2d(x, w, b, stride=stride, pad=kernel // 2)
    assert y.shape == expected.shape == (2, -(-size[0] // stride), -(-size[1] // stride), 4)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    assert layer.compute_output_shape((2, *size, 3)) == expected.shape


def test_padded_conv_differs_from_keras_same_padding_at_stride_2():
    # The reason PaddedConv2D exists: Keras "same" pads bottom/right only for even inputs.
    x = np.random.default_rng(1).normal(size=(1, 8, 8, 1)).astype("float32")
    ours = PaddedConv2D(1, 3, strides=2, use_bias=False)
    ours(x)
    same = keras.layers.Conv2D(1, 3, strides=2, padding="same", use_bias=False)
    same(x)
    same.set_weights(ours.get_weights())
    assert not np.allclose(np.asarray(ours(x)), np.asarray(same(x)))


def test_frozen_bn_matches_formula_and_ignores_training_flag():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    layer = FrozenBatchNormalization(epsilon=1e-5)
    layer.build(x.shape)
    gamma, beta, mean, var = (
        rng.normal(size=4),
        rng.normal(size=4),
        rng.normal(size=4),
        rng.uniform(0.5, 2, size=4),
    )
    layer.set_weights([gamma, beta, mean, var])
    expected = (x.astype(np.float64) - mean) / np.sqrt(var + 1e-5) * gamma + beta
    np.testing.assert_allclose(np.asarray(layer(x, training=True)), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(layer(x, training=False)), expected, rtol=1e-5, atol=1e-5)
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 4


def test_frozen_bn_stays_frozen_when_a_parent_is_made_trainable():
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, FrozenBatchNormalization()(inputs))
    model.trainable = False
    model.trainable = True
    assert model.trainable_weights == []


@pytest.mark.parametrize(
    ("norm", "trainable"), [("frozen_bn", 0), ("bn", 2), ("sync_bn", 2), ("gn", 2), ("none", 0)]
)
def test_make_norm(norm, trainable):
    layer = make_norm(norm, "n", groups=2)
    layer.build((None, 4, 4, 4))
    assert len(layer.trainable_weights) == trainable


def test_make_norm_rejects_unknown():
    with pytest.raises(ValueError, match="unknown norm 'batch'"):
        make_norm("batch", "n")


def _frozen_bn(channels: int, rng) -> FrozenBatchNormalization:
    norm = FrozenBatchNormalization()
    norm.build((None, channels))
    norm.set_weights(
        [
            rng.uniform(0.5, 2.0, channels),
            rng.normal(size=channels),
            rng.normal(size=channels),
            rng.uniform(0.1, 3.0, channels),
        ]
    )  # gamma, beta, mean, variance
    return norm


@pytest.mark.parametrize(("kernel", "stride"), [(3, 1), (3, 2), (1, 2), (7, 2)])
def test_conv_with_folded_frozen_bn_matches_conv_then_bn_in_float64(kernel, stride):
    import tensorflow as tf

    rng = np.random.default_rng(kernel * 10 + stride)
    x = rng.normal(size=(2, 9, 8, 3)).astype("float32")
    conv = PaddedConv2D(5, kernel, strides=stride, use_bias=False)
    conv.build(x.shape)
    norm = _frozen_bn(5, rng)
    gamma, beta, mean, var = (np.asarray(w, np.float64) for w in norm.weights)
    w = np.asarray(conv.kernel, np.float64)
    scale = gamma / np.sqrt(var + 1e-5)
    expected = (conv2d(x, w, stride=stride, pad=kernel // 2) - mean) * scale + beta
    folded = tf.function(lambda v: conv_norm(conv, norm, v))
    np.testing.assert_allclose(np.asarray(folded(x)), expected, rtol=1e-4, atol=1e-4)
    # One conv with a bias: no multiply over the feature map is left in the graph.
    graph = folded.get_concrete_function(tf.TensorSpec(x.shape)).graph
    maps = [op for op in graph.get_operations() if op.type == "Mul" and op.outputs[0].shape == expected.shape]
    assert not maps and any(op.type == "BiasAdd" for op in graph.get_operations())
    # The kernel's gradient: d sum(r * y) / dW = scale * sum_{b,i,j} r * x_patch.
    r = rng.normal(size=expected.shape).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(conv_norm(conv, norm, tf.constant(x)) * r)
    grad = np.asarray(tape.gradient(loss, conv.kernel))
    xp = np.pad(x.astype(np.float64), [(0, 0), (kernel // 2,) * 2, (kernel // 2,) * 2, (0, 0)])
    oh, ow = expected.shape[1:3]
    want = np.zeros_like(w)
    for dy in range(kernel):
        for dx in range(kernel):
            patch = xp[:, dy : dy + stride * (oh - 1) + 1 : stride, dx : dx + stride * (ow - 1) + 1 : stride]
            want[dy, dx] = np.tensordot(patch, r * scale, axes=([0, 1, 2], [0, 1, 2]))
    np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-3)


def test_conv_norm_runs_other_norms_as_written():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 6, 6, 4)).astype("float32")
    conv = PaddedConv2D(4, 3, use_bias=False)
    conv.build(x.shape)
    norm = make_norm("gn", "gn", groups=2)
    norm.build((1, 6, 6, 4))
    np.testing.assert_allclose(np.asarray(conv_norm(conv, norm, x)), np.asarray(norm(conv(x))), atol=1e-6)


def _ops(fn, *specs) -> set[str]:
    """Op types in the graph of ``fn`` traced for ``specs``."""
    graph = tf.function(fn).get_concrete_function(*specs).graph
    ops = {op.type for op in graph.get_operations()}
    for f in graph.as_graph_def().library.function:  # tf.switch_case branches
        ops |= {node.op for node in f.node_def}
    return ops


def _conv3x3(channels, filters, **kwargs):
    conv = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", **kwargs)
    conv.build((None, None, None, channels))
    return conv


@pytest.mark.parametrize(
    ("batch", "size", "tile"),
    [(1, 64, 4), (2, 160, 4), (1, 63, 2), (1, 40, 0), (20, 14, 2), (19, 14, 0), (1000, 7, 0)],
)
def test_winograd_tile_rule(batch, size, tile):
    assert winograd_tile(batch, size, size) == tile


@pytest.mark.parametrize("algorithm", ["auto", "winograd"])
def test_conv3x3_winograd_matches_the_float64_conv_with_bias_and_relu(algorithm):
    conv = _conv3x3(256, 256, bias_initializer="random_normal")
    x = np.random.default_rng(0).standard_normal((1, 64, 64, 256)).astype(np.float32)
    assert "Conv2D" not in _ops(lambda t: conv3x3(conv, t, algorithm), tf.TensorSpec(x.shape))
    expected = relu(conv2d(x, conv.kernel.numpy(), conv.bias.numpy(), pad=1))
    out = conv3x3(conv, tf.constant(x), algorithm).numpy()
    np.testing.assert_allclose(out, expected, atol=5e-5 * np.abs(expected).max())


@pytest.mark.parametrize(
    ("shape", "channels", "kwargs"),
    [
        ((1, 64, 64, 256), 256, {"algorithm": "direct"}),
        ((1, 64, 64, 256), 256, {"training": True}),
        ((1, 40, 40, 256), 256, {}),  # small map
        ((1, 64, 64, 128), 128, {}),  # few channels
        ((8, 14, 14, 256), 256, {}),  # few RoIs
    ],
)
def test_conv3x3_auto_keeps_the_direct_conv_where_winograd_does_not_pay(shape, channels, kwargs):
    conv = _conv3x3(channels, channels)
    ops = _ops(lambda t: conv3x3(conv, t, **kwargs), tf.TensorSpec(shape))
    assert "Conv2D" in ops and "MatMul" not in ops and "BatchMatMulV2" not in ops


def test_conv3x3_auto_keeps_bfloat16_and_strided_convs_direct():
    conv = _conv3x3(256, 256, dtype="mixed_bfloat16")
    ops = _ops(lambda t: conv3x3(conv, t), tf.TensorSpec((1, 64, 64, 256), tf.bfloat16))
    assert "MatMul" not in ops
    strided = keras.layers.Conv2D(256, 3, strides=2, padding="same")
    strided.build((None, None, None, 256))
    assert "MatMul" not in _ops(lambda t: conv3x3(strided, t, "winograd"), tf.TensorSpec((1, 64, 64, 256)))


@pytest.mark.parametrize(
    ("spec", "shapes"),
    [
        ([None, None, None, 256], [(1, 64, 65, 256), (2, 9, 11, 256)]),  # any-size signature: F(4×4)
        ([None, 14, 14, 256], [(24, 14, 14, 256), (3, 14, 14, 256)]),  # RoI counts: F(2×2)
    ],
)
def test_conv3x3_auto_treats_unknown_sizes_as_large(spec, shapes):
    conv = _conv3x3(256, 256)
    fn = tf.function(lambda t: conv3x3(conv, t), input_signature=[tf.TensorSpec(spec)])
    assert "Conv2D" not in _ops(fn.python_function, tf.TensorSpec(spec))
    rng = np.random.default_rng(1)
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        expected = relu(conv2d(x, conv.kernel.numpy(), pad=1))
        np.testing.assert_allclose(fn(x).numpy(), expected, atol=5e-5 * np.abs(expected).max())


def test_conv_algorithm_is_checked_by_name():
    message = "unknown conv_algorithm 'fast'; choose one of auto, direct, winograd"
    with pytest.raises(ValueError, match=message):
        check_conv_algorithm("fast")


def test_strided_1x1_conv_gradient_is_right_where_onednn_corrupts_the_heap(tmp_path):
    """TF 2.21's oneDNN filter gradient of a strided 1×1 conv with 8 input channels aborts the
    process (``double free or corruption``); PaddedConv2D subsamples and runs a 1×1 stride-1
    conv instead. Run in a child process, so that a regression fails this test, not the run."""
    import subprocess
    import sys

    code = """
import numpy as np, tensorflow as tf
from mrcnn_tf.modeling.layers import PaddedConv2D
rng = np.random.default_rng(0)
x = tf.constant(rng.normal(size=(1, 32, 32, 8)).astype("float32"))
r = tf.constant(rng.normal(size=(1, 16, 16, 16)).astype("float32"))
conv = PaddedConv2D(16, 1, strides=2, use_bias=False)
conv.build(x.shape)
@tf.function
def step():
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(conv(x) * r)
    return tape.gradient(loss, conv.kernel)
for _ in range(5):
    grad = step()
np.savez(OUT, x=x.numpy(), r=r.numpy(), grad=grad.numpy())
""".replace("OUT", repr(str(tmp_path / "grad.npz")))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    data = np.load(tmp_path / "grad.npz")
    want = np.einsum("bhwc,bhwk->ck", data["x"][:, ::2, ::2].astype(np.float64), data["r"].astype(np.float64))
    np.testing.assert_allclose(data["grad"][0, 0], want, rtol=1e-4, atol=1e-4)
