"""``keras.applications`` networks as detection backbones (C2–C5 taps by layer name)."""

from __future__ import annotations

import warnings
from pathlib import Path

import keras

from mrcnn_tf.modeling.base import Backbone, FeatureSpec
from mrcnn_tf.registries import BACKBONES

#: application -> the layers whose outputs are C2..C5 (strides 4, 8, 16, 32) and their channels.
TAPS: dict[str, dict[str, tuple[str, int]]] = {
    "MobileNetV2": {
        "C2": ("block_2_add", 24),
        "C3": ("block_5_add", 32),
        "C4": ("block_12_add", 96),
        "C5": ("out_relu", 1280),
    },
    "EfficientNetB0": {
        "C2": ("block2b_add", 24),
        "C3": ("block3b_add", 40),
        "C4": ("block5c_add", 112),
        "C5": ("top_activation", 1280),
    },
    # Keras's ResNets are the original (Caffe, "v1") ones: stride in the first 1×1 conv, and
    # their ImageNet weights expect BGR inputs minus the BGR mean (channel_order: bgr).
    "ResNet50": {
        "C2": ("conv2_block3_out", 256),
        "C3": ("conv3_block4_out", 512),
        "C4": ("conv4_block6_out", 1024),
        "C5": ("conv5_block3_out", 2048),
    },
    "ResNet101": {
        "C2": ("conv2_block3_out", 256),
        "C3": ("conv3_block4_out", 512),
        "C4": ("conv4_block23_out", 1024),
        "C5": ("conv5_block3_out", 2048),
    },
}
STRIDES = {"C2": 4, "C3": 8, "C4": 16, "C5": 32}
CHANNEL_ORDERS = ("rgb", "bgr")


def load_application(application: str, weights: str | None) -> keras.Model:
    """``keras.applications.<application>`` without its top, for any input size.

    Args:
        application: a key of :data:`TAPS`.
        weights: ``None`` (random), ``"imagenet"`` (Keras's download, cached under
            ``~/.keras/models``) or the path of a weights file of the same network.

    Raises:
        ValueError: unknown application, a missing file, or ImageNet weights that cannot be
            fetched (offline), with what to do instead.
    """
    if application not in TAPS:
        raise ValueError(f"unknown keras application '{application}'; supported: {', '.join(TAPS)}")
    if weights not in (None, "imagenet"):
        path = Path(str(weights)).expanduser()
        if not path.is_file():
            raise ValueError(
                f"backbone weights file '{weights}' does not exist; give the path of a Keras weights "
                f"file of {application} without its classification top, 'imagenet', or null"
            )
        weights = str(path)
    factory = getattr(keras.applications, application)
    try:
        with warnings.catch_warnings():  # "weights for input shape (224, 224) will be loaded": intended
            warnings.filterwarnings("ignore", message=".*input_shape.*", category=UserWarning)
            return factory(include_top=False, weights=weights, input_shape=(None, None, 3))
    except Exception as exc:  # keras raises a bare Exception when a download fails
        if weights == "imagenet":
            raise ValueError(
                f"could not fetch the ImageNet weights of {application} ({exc}). Offline? On a machine "
                f"with network run keras.applications.{application}(include_top=False, weights='imagenet') "
                "(it caches the file under ~/.keras/models/), copy that file here and set the backbone's "
                "weights: /path/to/that/file"
            ) from exc
        raise ValueError(f"could not load backbone weights '{weights}' into {application}: {exc}") from exc


@BACKBONES.register()
class KerasApplicationBackbone(Backbone):
    """A ``keras.applications`` network returning C2–C5 like the ResNet backbone.

    Proves that parts are interchangeable: swap ``backbone:`` in a config, and set the
    detector's ``pixel_mean``/``pixel_std`` to the network's preprocessing (MobileNetV2 wants
    [-1, 1]: mean 127.5, std 127.5; EfficientNet normalises inside: mean 0, std 1).

    Args:
        application: ``MobileNetV2``, ``EfficientNetB0``, ``ResNet50`` or ``ResNet101``.
        weights: ``null`` (random init), ``imagenet`` (downloaded once by Keras, then cached),
            or a local weights file path (offline use).
        out_features: which of ``C2``..``C5`` to return.
        freeze_batchnorm: run batch norm in inference mode with fixed parameters (the
            detection default: batches are too small for batch statistics).
        trainable_backbone: False freezes the whole network.
        channel_order: ``bgr`` reverses the channels of the (already normalised) input, for
            networks trained on BGR images: Keras's ``ResNet50``/``ResNet101`` ImageNet weights
            want ``pixel_mean: [123.68, 116.779, 103.939]`` (RGB order), ``pixel_std: [1, 1, 1]``
            and ``channel_order: bgr``.

    Call:
        inputs: ``[B, H, W, 3]`` float32 normalised images.

    Returns:
        ``{"C2": [B, H/4, W/4, c2], ..., "C5": [B, H/32, W/32, c5]}`` (``out_features`` only).
    """

    def __init__(
        self,
        application: str = "MobileNetV2",
        weights: str | None = None,
        out_features: tuple[str, ...] | list[str] = ("C2", "C3", "C4", "C5"),
        freeze_batchnorm: bool = True,
        trainable_backbone: bool = True,
        channel_order: str = "rgb",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got '{channel_order}'")
        self.channel_order = channel_order
        out_features = tuple(out_features)
        if application in TAPS and (not out_features or any(f not in STRIDES for f in out_features)):
            raise ValueError(
                f"out_features must be a non-empty subset of {list(STRIDES)}, got {list(out_features)}"
            )
        self.application = application
        self.weights_source = weights
        self.out_features = out_features
        self.freeze_batchnorm = bool(freeze_batchnorm)
        self.trainable_backbone = bool(trainable_backbone)
        base = load_application(application, weights)
        taps = TAPS[application]
        self.network = keras.Model(
            base.input,
            [base.get_layer(taps[f][0]).output for f in out_features],
            name=f"{application}_features",
        )
        if freeze_batchnorm:
            for layer in self.network.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
        if not trainable_backbone:
            self.network.trainable = False

    def output_specs(self) -> dict[str, FeatureSpec]:
        return {f: FeatureSpec(TAPS[self.application][f][1], STRIDES[f]) for f in self.out_features}

    def call(self, inputs, training=None):
        if self.channel_order == "bgr":
            inputs = keras.ops.flip(inputs, axis=-1)
        outputs = self.network(inputs, training=training)
        return dict(zip(self.out_features, outputs, strict=True))

    def get_config(self):
        config = super().get_config()
        config.update(
            application=self.application,
            weights=self.weights_source,
            out_features=list(self.out_features),
            freeze_batchnorm=self.freeze_batchnorm,
            trainable_backbone=self.trainable_backbone,
            channel_order=self.channel_order,
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Reloading a saved model restores the trained weights afterwards: never re-fetch.
        return cls(**{**config, "weights": None})
