"""The RPN head (Ren et al. 2015), shared across pyramid levels (Lin et al. 2017)."""

from __future__ import annotations

import keras

from mrcnn_tf.modeling.layers import check_conv_algorithm, conv3x3
from mrcnn_tf.registries import RPN_HEADS


@RPN_HEADS.register(injected=("num_anchors",))
class RPNHead(keras.layers.Layer):
    """A 3×3 conv + ReLU, then 1×1 convs for objectness logits and box deltas, on every level.

    Weights are shared across levels. Initialisation follows Detectron2: normal(0, 0.01)
    kernels, zero biases.

    Args:
        num_anchors: anchors per location (A); the detector passes the anchor generator's.
        num_channels: width of the 3×3 conv; ``None`` keeps the input's channels.
        num_convs: number of 3×3 convs before the predictors (1 in the papers).
        conv_algorithm: how the 3×3 convs compute (``auto``, ``direct``, ``winograd``; see
            :func:`mrcnn_tf.modeling.layers.conv3x3`): ``auto`` uses Winograd F(4×4, 3×3) for
            float32 CPU inference on levels of at least 64×64 with 256+ channels.

    Call:
        features: ``{"P2": [B, H2, W2, C], ...}``; every level present is used, in level order.

    Returns:
        ``(objectness, deltas)``: dicts by level of ``[B, H*W*A]`` float32 logits and
        ``[B, H*W*A, 4]`` float32 ``[dy, dx, dh, dw]`` deltas, in the anchors' (row, column,
        anchor) order.
    """

    def __init__(
        self,
        num_anchors: int = 3,
        num_channels: int | None = None,
        num_convs: int = 1,
        conv_algorithm: str = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.conv_algorithm = check_conv_algorithm(conv_algorithm)
        if num_anchors < 1 or num_convs < 0:
            raise ValueError(
                f"RPNHead needs num_anchors >= 1 and num_convs >= 0, got {num_anchors}, {num_convs}"
            )
        self.num_anchors = int(num_anchors)
        self.num_channels = num_channels
        self.num_convs = int(num_convs)
        self.convs: list[keras.layers.Layer] = []
        init = keras.initializers.RandomNormal(stddev=0.01)
        self.objectness = keras.layers.Conv2D(self.num_anchors, 1, kernel_initializer=init, name="objectness")
        self.box_deltas = keras.layers.Conv2D(
            4 * self.num_anchors, 1, kernel_initializer=init, name="box_deltas"
        )

    def build(self, input_shape):
        shape = tuple(next(iter(input_shape.values())))
        channels = self.num_channels or shape[-1]
        init = keras.initializers.RandomNormal(stddev=0.01)
        for i in range(self.num_convs):
            conv = keras.layers.Conv2D(
                channels, 3, padding="same", activation="relu", kernel_initializer=init, name=f"conv{i + 1}"
            )
            conv.build(shape)
            shape = (*shape[:-1], channels)
            self.convs.append(conv)
        self.objectness.build(shape)
        self.box_deltas.build(shape)

    def call(self, features, training=None):
        objectness, deltas = {}, {}
        for key in sorted(features, key=lambda k: int(k[1:])):
            x = features[key]
            for conv in self.convs:
                x = conv3x3(conv, x, self.conv_algorithm, training)
            batch = keras.ops.shape(x)[0]
            objectness[key] = keras.ops.reshape(self.objectness(x), (batch, -1))
            deltas[key] = keras.ops.reshape(self.box_deltas(x), (batch, -1, 4))
        return objectness, deltas

    def get_config(self):
        config = super().get_config()
        config.update(
            num_anchors=self.num_anchors,
            num_channels=self.num_channels,
            num_convs=self.num_convs,
            conv_algorithm=self.conv_algorithm,
        )
        return config
