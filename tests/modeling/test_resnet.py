"""ResNet backbone: block wiring against NumPy, output strides and channels, freezing."""

from __future__ import annotations

import numpy as np
import pytest
from numpy_ref import conv2d, relu

from mrcnn_tf.modeling.backbones.resnet import ResNet
from mrcnn_tf.modeling.backbones.resnet_blocks import ResidualBlock


def _randomize(layer, seed=0):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(scale=0.3, size=w.shape) for w in layer.get_weights()])


def test_basic_block_matches_reference():
    x = np.random.default_rng(3).normal(size=(1, 7, 6, 3)).astype("float32")
    block = ResidualBlock(5, strides=2, bottleneck=False, norm="none")
    block(x)
    _randomize(block)
    w = {v.path.split("/")[-2]: np.asarray(v) for v in block.weights}
    h = relu(conv2d(x, w["conv1"], stride=2, pad=1))
    h = conv2d(h, w["conv2"], pad=1)
    shortcut = conv2d(x, w["shortcut"], stride=2)
    np.testing.assert_allclose(np.asarray(block(x)), relu(h + shortcut), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride_in_1x1", [False, True])
def test_bottleneck_block_matches_reference(stride_in_1x1):
    x = np.random.default_rng(4).normal(size=(1, 8, 5, 4)).astype("float32")
    block = ResidualBlock(8, strides=2, bottleneck=True, norm="none", stride_in_1x1=stride_in_1x1)
    block(x)
    _randomize(block, seed=1)
    w = {v.path.split("/")[-2]: np.asarray(v) for v in block.weights}
    s1, s3 = (2, 1) if stride_in_1x1 else (1, 2)
    h = relu(conv2d(x, w["conv1"], stride=s1))
    h = relu(conv2d(h, w["conv2"], stride=s3, pad=1))
    h = conv2d(h, w["conv3"])
    shortcut = conv2d(x, w["shortcut"], stride=2)
    np.testing.assert_allclose(np.asarray(block(x)), relu(h + shortcut), rtol=1e-4, atol=1e-4)


def test_identity_shortcut_when_shapes_match():
    block = ResidualBlock(4, strides=1, bottleneck=False, norm="none")
    block(np.zeros((1, 4, 4, 4), "float32"))
    assert block.shortcut is None and len(block.weights) == 2


@pytest.mark.parametrize(("depth", "channels"), [(18, (64, 128, 256, 512)), (50, (256, 512, 1024, 2048))])
def test_output_strides_and_channels_on_an_odd_size(depth, channels):
    backbone = ResNet(depth=depth)
    out = backbone(np.zeros((1, 70, 45, 3), "float32"))
    assert list(out) == ["C2", "C3", "C4", "C5"]
    for (name, spec), c in zip(backbone.output_specs().items(), channels, strict=True):
        assert out[name].shape == (1, -(-70 // spec.stride), -(-45 // spec.stride), c)
        assert spec.channels == c and spec.stride == {"C2": 4, "C3": 8, "C4": 16, "C5": 32}[name]
    assert backbone.compute_output_shape((1, 70, 45, 3)) == {k: tuple(v.shape) for k, v in out.items()}


def test_block_counts_follow_the_paper():
    # ResNet-101: 3, 4, 23, 3 bottleneck blocks; C4 only stops after res4 (the C4 backbone).
    backbone = ResNet(depth=101, out_features=["C4"])
    assert [len(s) for s in backbone.stages] == [3, 4, 23]
    assert list(backbone(np.zeros((1, 32, 32, 3), "float32"))) == ["C4"]


def _trainable_prefixes(backbone):
    return sorted({v.path.split("/")[1].split("_block")[0] for v in backbone.trainable_weights})


@pytest.mark.parametrize(
    ("freeze_at", "trainable"),
    [
        (0, ["res2", "res3", "res4", "res5", "stem_conv"]),
        (1, ["res2", "res3", "res4", "res5"]),
        (2, ["res3", "res4", "res5"]),
        (4, ["res5"]),
        (5, []),
    ],
)
def test_freeze_at(freeze_at, trainable):
    backbone = ResNet(depth=18, freeze_at=freeze_at, norm="frozen_bn")
    backbone(np.zeros((1, 32, 32, 3), "float32"))
    assert _trainable_prefixes(backbone) == trainable


def test_gn_backbone_trains_norm_parameters():
    backbone = ResNet(depth=18, freeze_at=0, norm="gn")
    backbone(np.zeros((1, 32, 32, 3), "float32"))
    names = {v.path.split("/")[-1] for v in backbone.trainable_weights}
    assert {"gamma", "beta", "kernel"} <= names


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth": 17}, "depth must be one of"),
        ({"out_features": ["C6"]}, "out_features"),
        ({"freeze_at": 9}, "freeze_at"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResNet(**kwargs)
