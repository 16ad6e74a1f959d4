"""ResNet residual blocks (He et al. 2016), as used by the ResNet backbone and the C4 head."""

from __future__ import annotations

import keras

from mrcnn_tf.modeling.layers import PaddedConv2D, conv_norm, make_norm, strided_size


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class ResidualBlock(keras.layers.Layer):
    """A basic (two 3×3 convs) or bottleneck (1×1, 3×3, 1×1) residual block.

    Args:
        filters: output channels of the block.
        strides: 1 or 2; applied in the first 1×1 conv when ``stride_in_1x1`` (MSRA/Caffe
            checkpoints, Detectron2's default for them) or in the 3×3 conv otherwise
            (torchvision, "ResNet v1.5").
        bottleneck: bottleneck (ResNet-50 and deeper) or basic (ResNet-18/34) block.
        bottleneck_channels: width of the bottleneck convs (``filters // 4`` by default).
        norm: see :func:`mrcnn_tf.modeling.layers.make_norm`.
        stride_in_1x1: where the stride goes in a bottleneck block.
        norm_epsilon: the norm layers' epsilon (1e-5; torchvision's v1 COCO weights use 0).

    Input ``[B, H, W, C_in]`` float; output ``[B, ceil(H/strides), ceil(W/strides), filters]``.
    """

    def __init__(
        self,
        filters: int,
        *,
        strides: int = 1,
        bottleneck: bool = True,
        bottleneck_channels: int | None = None,
        norm: str = "frozen_bn",
        stride_in_1x1: bool = False,
        norm_epsilon: float = 1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.norm_epsilon = float(norm_epsilon)
        self.filters = filters
        self.strides = strides
        self.bottleneck = bottleneck
        self.bottleneck_channels = bottleneck_channels
        self.norm = norm
        self.stride_in_1x1 = stride_in_1x1
        self.shortcut = None
        self.shortcut_norm = None
        if bottleneck:
            width = bottleneck_channels or filters // 4
            s1, s3 = (strides, 1) if stride_in_1x1 else (1, strides)
            self.convs = [
                PaddedConv2D(width, 1, strides=s1, use_bias=False, name="conv1"),
                PaddedConv2D(width, 3, strides=s3, use_bias=False, name="conv2"),
                PaddedConv2D(filters, 1, use_bias=False, name="conv3"),
            ]
        else:
            self.convs = [
                PaddedConv2D(filters, 3, strides=strides, use_bias=False, name="conv1"),
                PaddedConv2D(filters, 3, use_bias=False, name="conv2"),
            ]
        self.norms = [
            make_norm(norm, f"norm{i + 1}", epsilon=self.norm_epsilon) for i in range(len(self.convs))
        ]

    def build(self, input_shape):
        in_channels = input_shape[-1]
        x_shape = tuple(input_shape)
        if in_channels != self.filters or self.strides != 1:
            self.shortcut = PaddedConv2D(
                self.filters, 1, strides=self.strides, use_bias=False, name="shortcut"
            )
            self.shortcut_norm = make_norm(self.norm, "shortcut_norm", epsilon=self.norm_epsilon)
            # Created lazily, after a parent may have frozen this block: inherit the flag.
            self.shortcut.trainable = self.trainable
            self.shortcut_norm.trainable = self.trainable
            self.shortcut.build(x_shape)
            self.shortcut_norm.build(self.shortcut.compute_output_shape(x_shape))
        for conv, norm in zip(self.convs, self.norms, strict=True):
            conv.build(x_shape)
            x_shape = conv.compute_output_shape(x_shape)
            norm.build(x_shape)

    def call(self, inputs, training=None):
        x = inputs
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = conv_norm(conv, norm, x, training)
            if i != last:
                x = keras.ops.relu(x)
        shortcut = inputs
        if self.shortcut is not None:
            shortcut = conv_norm(self.shortcut, self.shortcut_norm, inputs, training)
        return keras.ops.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        s = self.strides
        return (b, strided_size(h, s), strided_size(w, s), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            bottleneck=self.bottleneck,
            bottleneck_channels=self.bottleneck_channels,
            norm=self.norm,
            stride_in_1x1=self.stride_in_1x1,
            norm_epsilon=self.norm_epsilon,
        )
        return config
