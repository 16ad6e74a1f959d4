"""keras.applications backbones: taps, local weight files, and a clear offline error."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mrcnn_tf.modeling.backbones import keras_application
from mrcnn_tf.modeling.backbones.keras_application import KerasApplicationBackbone


@pytest.mark.parametrize("application", ["MobileNetV2", "EfficientNetB0", "ResNet50", "ResNet101"])
def test_taps_have_the_declared_strides_and_channels(application):
    backbone = KerasApplicationBackbone(application)
    out = backbone(np.zeros((1, 64, 96, 3), np.float32))
    for name, spec in backbone.output_specs().items():
        assert out[name].shape == (1, 64 // spec.stride, 96 // spec.stride, spec.channels)
    bn = [w for w in backbone.network.layers if isinstance(w, keras.layers.BatchNormalization)]
    assert bn and not any(layer.trainable for layer in bn)  # frozen batch norm by default


def test_bgr_channel_order_feeds_the_network_reversed_channels():
    keras.utils.set_random_seed(0)
    bgr = KerasApplicationBackbone("ResNet50", channel_order="bgr", out_features=["C3"])
    rgb = KerasApplicationBackbone.from_config({**bgr.get_config(), "channel_order": "rgb"})
    rgb.set_weights(bgr.get_weights())
    image = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(bgr(image)["C3"], rgb(image[..., ::-1].copy())["C3"], rtol=1e-5, atol=1e-5)
    assert not np.allclose(bgr(image)["C3"], rgb(image)["C3"], atol=1e-3)
    with pytest.raises(ValueError, match="channel_order"):
        KerasApplicationBackbone("ResNet50", channel_order="brg")


def test_local_weights_file_is_loaded(tmp_path):
    source = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(None, None, 3))
    kernel = source.get_layer("Conv1").kernel
    kernel.assign(np.full(kernel.shape, 0.25, np.float32))
    path = tmp_path / "mobilenet_v2_notop.weights.h5"
    source.save_weights(path)
    backbone = KerasApplicationBackbone("MobileNetV2", weights=str(path))
    np.testing.assert_array_equal(backbone.network.get_layer("Conv1").kernel.numpy(), 0.25)


def test_missing_weights_file_names_the_path():
    with pytest.raises(ValueError, match=r"'/nowhere/w\.h5' does not exist"):
        KerasApplicationBackbone("MobileNetV2", weights="/nowhere/w.h5")


def test_offline_imagenet_is_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline)
    with pytest.raises(
        ValueError, match=r"could not fetch the ImageNet weights of MobileNetV2.*weights: /path"
    ):
        keras_application.load_application("MobileNetV2", "imagenet")


def test_unknown_application_lists_the_supported_ones():
    with pytest.raises(ValueError, match="MobileNetV2, EfficientNetB0"):
        keras_application.load_application("VGG16", None)
