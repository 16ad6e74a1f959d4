"""Small shared building blocks: normalization by name, initializers, padded convolutions."""

from __future__ import annotations

import keras
import tensorflow as tf

#: Normalizations a backbone or head may ask for by name.
NORMS = ("frozen_bn", "bn", "sync_bn", "gn", "none")


def strided_size(size: int | None, stride: int) -> int | None:
    """``ceil(size / stride)``, the output size of a symmetric-padded conv; None stays None."""
    return None if size is None else -(-size // stride)


def he_normal_fan_out() -> keras.initializers.Initializer:
    """Kaiming-normal with fan-out, as torchvision and Detectron2 initialise ResNet convs."""
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal")


def xavier_fill() -> keras.initializers.Initializer:
    """Detectron2's ``c2_xavier_fill`` (kaiming-uniform with a=1): U(±sqrt(3 / fan_in))."""
    return keras.initializers.VarianceScaling(scale=1.0, mode="fan_in", distribution="uniform")


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class FrozenBatchNormalization(keras.layers.Layer):
    """Batch norm with fixed statistics and affine parameters (Detectron2's ``FrozenBatchNorm2d``).

    ``y = (x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta`` over the last
    axis, in training and inference alike. Unlike ``BatchNormalization(trainable=False)``,
    it stays frozen when a parent sets ``trainable = True``: its weights are created
    non-trainable and it has no training mode. Weight names match ``BatchNormalization`` so
    checkpoints convert one to one. Input and output: ``[..., C]`` float.
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = (input_shape[-1],)
        self.gamma = self.add_weight(shape=channels, initializer="ones", trainable=False, name="gamma")
        self.beta = self.add_weight(shape=channels, initializer="zeros", trainable=False, name="beta")
        self.moving_mean = self.add_weight(
            shape=channels, initializer="zeros", trainable=False, name="moving_mean"
        )
        self.moving_variance = self.add_weight(
            shape=channels, initializer="ones", trainable=False, name="moving_variance"
        )

    def scale_offset(self):
        """float32 ``(scale [C], offset [C])`` with ``y = x * scale + offset``."""
        scale = self.gamma * keras.ops.rsqrt(self.moving_variance + self.epsilon)
        return scale, self.beta - self.moving_mean * scale

    def call(self, inputs, training=None):
        scale, offset = self.scale_offset()
        return inputs * keras.ops.cast(scale, inputs.dtype) + keras.ops.cast(offset, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config


def make_norm(norm: str, name: str, *, epsilon: float = 1e-5, groups: int = 32) -> keras.layers.Layer:
    """A normalization layer by name.

    Args:
        norm: ``frozen_bn`` (batch norm with fixed statistics and affine parameters: the
            detection default, since per-GPU batches are too small for BN statistics),
            ``bn`` (trainable), ``sync_bn`` (trainable, statistics synchronised across
            replicas), ``gn`` (GroupNorm, Wu & He 2018) or ``none`` (identity).
        name: the layer name.
        epsilon: numerical epsilon; 1e-5 matches torchvision and Detectron2 checkpoints.
        groups: GroupNorm groups.
    """
    if norm == "frozen_bn":
        return FrozenBatchNormalization(epsilon=epsilon, name=name)
    if norm in ("bn", "sync_bn"):
        return keras.layers.BatchNormalization(
            epsilon=epsilon, momentum=0.9, synchronized=norm == "sync_bn", name=name
        )
    if norm == "gn":
        return keras.layers.GroupNormalization(groups=groups, epsilon=epsilon, name=name)
    if norm == "none":
        return keras.layers.Identity(name=name)
    raise ValueError(f"unknown norm '{norm}'; choose one of {', '.join(NORMS)}")


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class PaddedConv2D(keras.layers.Conv2D):
    """``Conv2D`` with symmetric zero padding of ``dilation * (kernel_size // 2)`` pixels.

    Keras ``padding="same"`` pads more on the bottom/right for stride 2; symmetric padding
    (PyTorch's) keeps feature maps aligned with torchvision and Detectron2 checkpoints.
    Input ``[B, H, W, C]``; output ``[B, ceil(H / s), ceil(W / s), filters]`` for odd kernels.
    """

    def __init__(self, filters: int, kernel_size: int, **kwargs):
        kwargs.pop("padding", None)
        kwargs.setdefault("kernel_initializer", he_normal_fan_out())
        super().__init__(filters, kernel_size, padding="valid", **kwargs)

    def _pads(self) -> tuple[int, int]:
        return (
            self.dilation_rate[0] * (self.kernel_size[0] // 2),
            self.dilation_rate[1] * (self.kernel_size[1] // 2),
        )

    def call(self, inputs):
        py, px = self._pads()
        if py or px:
            inputs = keras.ops.pad(inputs, [[0, 0], [py, py], [px, px], [0, 0]])
        return super().call(inputs)

    def compute_output_shape(self, input_shape):
        py, px = self._pads()
        b, h, w, c = input_shape
        return super().compute_output_shape(
            (b, None if h is None else h + 2 * py, None if w is None else w + 2 * px, c)
        )


def conv_norm(conv: keras.layers.Layer, norm: keras.layers.Layer, x, training=None):
    """``norm(conv(x))``, with a frozen batch norm folded into the convolution.

    ``conv(x) * scale + offset == conv_W*scale(x) + offset``: one convolution with a bias, which
    TensorFlow fuses (with a following ReLU) into one oneDNN / cuDNN call instead of three
    passes over the feature map. The weights stay where they are (same variables, same
    checkpoints); only the arithmetic is regrouped. Other norms and convs with a bias or
    groups run as written.
    """
    if not (
        isinstance(norm, FrozenBatchNormalization)
        and isinstance(conv, PaddedConv2D)
        and not conv.use_bias
        and conv.groups == 1
        and conv.built
        and norm.built
    ):
        return norm(conv(x), training=training)
    scale, offset = norm.scale_offset()
    kernel = keras.ops.cast(conv.kernel * scale, x.dtype)
    py, px = conv._pads()
    y = tf.nn.conv2d(
        x,
        kernel,
        strides=conv.strides,
        padding=[[0, 0], [py, py], [px, px], [0, 0]] if (py or px) else "VALID",
        dilations=conv.dilation_rate,
    )
    return tf.nn.bias_add(y, keras.ops.cast(offset, x.dtype))


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class ConvTower(keras.layers.Layer):
    """``num_convs`` × (3×3 conv, norm, ReLU), as in the RoI box and mask heads.

    Convs use Detectron2's ``c2_msra_fill`` and have a bias only without a norm.

    Args:
        num_convs: number of convs (0 is the identity).
        filters: channels of every conv.
        norm: see :func:`make_norm` (``none`` by default).

    Input ``[B, H, W, C]`` float; output ``[B, H, W, filters]`` (the input when num_convs is 0).
    """

    def __init__(self, num_convs: int, filters: int, norm: str = "none", **kwargs):
        super().__init__(**kwargs)
        self.num_convs = int(num_convs)
        self.filters = int(filters)
        self.norm = norm
        self.convs = [
            keras.layers.Conv2D(
                filters,
                3,
                padding="same",
                use_bias=norm == "none",
                kernel_initializer=he_normal_fan_out(),
                name=f"conv{i + 1}",
            )
            for i in range(num_convs)
        ]
        self.norms = [make_norm(norm, f"conv{i + 1}_norm") for i in range(num_convs)]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            conv.build(shape)
            shape = (*shape[:-1], self.filters)
            norm.build(shape)

    def call(self, inputs, training=None):
        x = inputs
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = keras.ops.relu(norm(conv(x), training=training))
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) if not self.convs else (*tuple(input_shape)[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(num_convs=self.num_convs, filters=self.filters, norm=self.norm)
        return config
