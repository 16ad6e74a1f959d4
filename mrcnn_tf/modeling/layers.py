"""Small shared building blocks: normalization by name, initializers, padded convolutions."""

from __future__ import annotations

import keras
import tensorflow as tf

from mrcnn_tf.ops.winograd import winograd_conv3x3

#: Normalizations a backbone or head may ask for by name.
NORMS = ("frozen_bn", "bn", "sync_bn", "gn", "none")
#: How :func:`conv3x3` computes a 3×3 convolution (see there).
CONV_ALGORITHMS = ("auto", "direct", "winograd")
#: ``auto``'s Winograd rule, measured on CPU (``mrcnn_tf/ops/winograd.py``): F(4×4, 3×3) for maps
#: of at least this many pixels per image (64×64) ...
WINOGRAD_MIN_PIXELS = 4096
#: ... F(2×2, 3×3) for batches of maps at least 14×14 with this many pixels in all (20 RoIs) ...
WINOGRAD_MIN_BATCH_PIXELS = 3920
#: ... and either only with at least this many input and output channels.
WINOGRAD_MIN_CHANNELS = 256


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

    A strided 1×1 convolution (the ResNet shortcuts) is computed as a 1×1 convolution of
    ``x[:, ::s, ::s]``: the same numbers, and it avoids oneDNN's strided 1×1 filter gradient,
    which corrupts the heap on TF 2.21 CPUs for 8 input channels (``double free or
    corruption``, process abort; reproduced with a bare ``tf.nn.conv2d`` on ``[1, 32, 32, 8]``).
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

    def subsamples(self) -> bool:
        """Whether this is a strided 1×1 convolution, computed on ``x[:, ::s, ::s]``."""
        return tuple(self.kernel_size) == (1, 1) and tuple(self.strides) != (1, 1)

    def call(self, inputs):
        py, px = self._pads()
        if py or px:
            inputs = keras.ops.pad(inputs, [[0, 0], [py, py], [px, px], [0, 0]])
        if not self.subsamples():
            return super().call(inputs)
        sy, sx = self.strides
        y = keras.ops.conv(inputs[:, ::sy, ::sx, :], self.kernel, strides=1, padding="valid")
        if self.use_bias:
            y = y + self.bias
        return self.activation(y) if self.activation is not None else y

    def compute_output_shape(self, input_shape):
        py, px = self._pads()
        b, h, w, c = input_shape
        return super().compute_output_shape(
            (b, None if h is None else h + 2 * py, None if w is None else w + 2 * px, c)
        )


def check_conv_algorithm(algorithm: str) -> str:
    """``algorithm`` if it is one of :data:`CONV_ALGORITHMS`, else a ValueError naming them."""
    if algorithm not in CONV_ALGORITHMS:
        raise ValueError(f"unknown conv_algorithm '{algorithm}'; choose one of {', '.join(CONV_ALGORITHMS)}")
    return algorithm


def _winograd_applies(conv: keras.layers.Conv2D) -> bool:
    """Whether ``conv`` is a 3×3, stride-1, undilated, ungrouped conv with one-pixel padding."""
    same = conv.padding == "same" or isinstance(conv, PaddedConv2D)
    return (
        same
        and tuple(conv.kernel_size) == (3, 3)
        and tuple(conv.strides) == (1, 1)
        and tuple(conv.dilation_rate) == (1, 1)
        and conv.groups == 1
        and conv.built
    )


def winograd_tile(batch: int, height: int, width: int) -> int:
    """``auto``'s choice for a ``[batch, height, width, 256+]`` map: 4, 2 or 0 (direct conv)."""
    if height * width >= WINOGRAD_MIN_PIXELS:
        return 4
    if min(height, width) >= 14 and batch * height * width >= WINOGRAD_MIN_BATCH_PIXELS:
        return 2
    return 0


def conv3x3(conv: keras.layers.Conv2D, x, algorithm: str = "auto", training=None):
    """``conv(x)`` for a 3×3 "same" conv, by Winograd where that is faster.

    ``algorithm``: ``direct`` always calls ``conv``; ``winograd`` computes every eligible conv
    (3×3, stride 1, no dilation or groups, one pixel of zero padding) with
    :func:`mrcnn_tf.ops.winograd.winograd_conv3x3` (F(4×4, 3×3)) on the same weights; ``auto``
    does so only where it measured faster on CPUs: inference (not ``training``), float32
    compute, at least 256 input and output channels, and the map
    size rule of :func:`winograd_tile` (F(4×4) from 64×64 pixels per image, F(2×2) for 20+
    RoIs of 14×14; a size unknown when tracing counts as large). Same variables and
    checkpoints either way; outputs move by about 1e-5 of their magnitude with F(4×4) and
    less than ``tf.nn.conv2d``'s own rounding with F(2×2).

    Args:
        conv: a built ``keras.layers.Conv2D`` (``padding="same"``) or :class:`PaddedConv2D`.
        x: ``[B, H, W, C]`` input.
        algorithm: one of :data:`CONV_ALGORITHMS`.
        training: the caller's training flag (``auto`` keeps training on ``conv``).

    Returns:
        ``[B, H, W, filters]``, ``conv``'s bias and activation applied.
    """
    if algorithm == "direct" or not _winograd_applies(conv):
        return conv(x)
    if algorithm == "winograd":
        return _winograd(conv, x, 4)
    channels = x.shape[-1]
    if (
        training
        or x.dtype != tf.float32
        or conv.compute_dtype != "float32"
        or channels is None
        or min(channels, conv.filters) < WINOGRAD_MIN_CHANNELS
    ):
        return conv(x)
    # Unknown sizes (a SavedModel's any-size signature, RoI counts) count as large: a per-call
    # tf.switch_case between three convolutions doubled the export's first call and memory.
    batch, height, width = (WINOGRAD_MIN_PIXELS if v is None else v for v in x.shape[:3])
    tile = winograd_tile(batch, height, width)
    return _winograd(conv, x, tile) if tile else conv(x)


def _winograd(conv: keras.layers.Conv2D, x, tile: int):
    y = winograd_conv3x3(x, keras.ops.cast(conv.kernel, x.dtype), tile)
    if conv.use_bias:
        y = tf.nn.bias_add(y, keras.ops.cast(conv.bias, x.dtype))
    return conv.activation(y) if conv.activation is not None else y


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
    strides = conv.strides
    if conv.subsamples():  # see PaddedConv2D
        x, strides = x[:, :: strides[0], :: strides[1], :], (1, 1)
    y = tf.nn.conv2d(
        x,
        kernel,
        strides=strides,
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
        conv_algorithm: see :func:`conv3x3`; ``auto`` picks Winograd F(2×2, 3×3) for float32
            CPU inference on 20+ RoIs of 14×14 (the mask head), direct convs for 7×7.

    Input ``[B, H, W, C]`` float; output ``[B, H, W, filters]`` (the input when num_convs is 0).
    """

    def __init__(
        self, num_convs: int, filters: int, norm: str = "none", conv_algorithm: str = "auto", **kwargs
    ):
        super().__init__(**kwargs)
        self.conv_algorithm = check_conv_algorithm(conv_algorithm)
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
            x = keras.ops.relu(norm(conv3x3(conv, x, self.conv_algorithm, training), training=training))
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) if not self.convs else (*tuple(input_shape)[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_convs=self.num_convs, filters=self.filters, norm=self.norm, conv_algorithm=self.conv_algorithm
        )
        return config
