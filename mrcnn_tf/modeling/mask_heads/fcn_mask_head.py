"""The Mask R-CNN mask head: a small FCN per RoI (He et al. 2017, Figure 4)."""

from __future__ import annotations

import keras

from mrcnn_tf.modeling.layers import ConvTower, he_normal_fan_out
from mrcnn_tf.registries import MASK_HEADS

UPSAMPLING = ("deconv", "bilinear")


@MASK_HEADS.register(injected=("num_classes",))
class FCNMaskHead(keras.layers.Layer):
    """``num_convs`` 3×3 convs, a 2× upsampling, and a 1×1 conv to one mask logit per class.

    The FPN head is 4 × conv3×3(256) + deconv 2×2 stride 2 (14 -> 28) + conv1×1(K). With
    ``num_convs=0`` on the res5 features of :class:`Res5BoxHead` it is the paper's C4 mask
    head (7 -> 14). Sigmoid per class: only the ground-truth class's channel is trained and
    only the predicted class's channel is read (masks decoupled from classes).
    Initialisation as Detectron2: ``c2_msra_fill`` for convs, normal(0, 0.001) predictor.

    Args:
        num_classes: K foreground classes (the detector supplies it).
        num_convs, conv_dim: the conv tower.
        upsample: ``deconv`` (2×2 transposed conv, the paper) or ``bilinear`` (2× bilinear
            resize then a 3×3 conv: no checkerboard artefacts).
        norm: norm after each tower conv (``none`` or ``gn``...).
        class_agnostic: one mask for all classes.
        conv_algorithm: how the tower's 3×3 convs compute (``auto``, ``direct``, ``winograd``;
            see :func:`mrcnn_tf.modeling.layers.conv3x3`). ``auto`` uses Winograd F(2×2, 3×3)
            for float32 CPU inference on 20+ RoIs.

    Call:
        roi_features: ``[B, N, S, S, C]`` float32.
        classes: optional ``[B, N]`` int32 in 1..K (inference): compute only each RoI's class
            channel (a per-RoI dot product instead of the K-channel 1×1 conv).

    Returns:
        ``[B, N, 2S, 2S, K or 1]`` float32 mask logits, box-relative (see ``ops.masks``);
        ``[B, N, 2S, 2S, 1]`` when ``classes`` is given.
    """

    def __init__(
        self,
        num_classes: int,
        num_convs: int = 4,
        conv_dim: int = 256,
        upsample: str = "deconv",
        norm: str = "none",
        class_agnostic: bool = False,
        conv_algorithm: str = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if upsample not in UPSAMPLING:
            raise ValueError(f"FCNMaskHead upsample must be one of {UPSAMPLING}, got '{upsample}'")
        if num_convs < 0:
            raise ValueError(f"FCNMaskHead num_convs must be >= 0, got {num_convs}")
        self.num_classes = int(num_classes)
        self.num_convs = int(num_convs)
        self.conv_dim = int(conv_dim)
        self.upsample = upsample
        self.norm = norm
        self.class_agnostic = bool(class_agnostic)
        init = he_normal_fan_out()
        self.conv_algorithm = conv_algorithm
        self.tower = ConvTower(num_convs, conv_dim, norm, conv_algorithm, name="tower")
        if upsample == "deconv":
            self.upsampler = keras.layers.Conv2DTranspose(
                conv_dim, 2, strides=2, activation="relu", kernel_initializer=init, name="deconv"
            )
            self.resize = None
        else:
            self.resize = keras.layers.UpSampling2D(2, interpolation="bilinear", name="resize")
            self.upsampler = keras.layers.Conv2D(
                conv_dim, 3, padding="same", activation="relu", kernel_initializer=init, name="upsample_conv"
            )
        self.predictor = keras.layers.Conv2D(
            1 if class_agnostic else self.num_classes,
            1,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
            name="predictor",
        )

    def build(self, input_shape):
        _, _, s, _, c = input_shape
        self.tower.build((None, s, s, c))
        shape = self.tower.compute_output_shape((None, s, s, c))
        up = (None, 2 * s, 2 * s, shape[-1])
        self.upsampler.build(shape if self.resize is None else up)
        self.predictor.build((*up[:-1], self.conv_dim))

    def call(self, roi_features, training=None, classes=None):
        ops = keras.ops
        shape = ops.shape(roi_features)
        x = self.tower(ops.reshape(roi_features, (-1, shape[2], shape[3], shape[4])), training=training)
        if self.resize is not None:
            x = self.resize(x)
        x = self.upsampler(x)
        if classes is None or self.class_agnostic:
            x = self.predictor(x)
        else:  # the predicted class's channel only: its 1x1 conv is a dot product per RoI
            index = ops.clip(ops.reshape(ops.cast(classes, "int32"), (-1,)) - 1, 0, self.num_classes - 1)
            kernel = ops.take(ops.transpose(self.predictor.kernel[0, 0]), index, axis=0)  # [B*N, C]
            bias = ops.take(self.predictor.bias, index, axis=0)
            x = (
                ops.einsum("nhwc,nc->nhw", x, ops.cast(kernel, x.dtype))
                + ops.cast(bias, x.dtype)[:, None, None]
            )
            x = x[..., None]
        out = ops.shape(x)
        return ops.reshape(x, (shape[0], shape[1], out[1], out[2], out[3]))

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            num_convs=self.num_convs,
            conv_dim=self.conv_dim,
            upsample=self.upsample,
            norm=self.norm,
            class_agnostic=self.class_agnostic,
            conv_algorithm=self.conv_algorithm,
        )
        return config


@MASK_HEADS.register(injected=("num_classes",))
class UpsampleMaskHead(FCNMaskHead):
    """:class:`FCNMaskHead` with bilinear 2× upsampling + 3×3 conv instead of the deconv."""

    def __init__(self, num_classes: int, upsample: str = "bilinear", **kwargs):
        super().__init__(num_classes, upsample=upsample, **kwargs)
