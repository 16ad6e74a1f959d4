"""The ResNet-C4 box head: res5 on each RoI, then global average pooling (He et al. 2016, 2017)."""

from __future__ import annotations

import keras

from mrcnn_tf.modeling.backbones.resnet import RESNET_SPECS
from mrcnn_tf.modeling.backbones.resnet_blocks import ResidualBlock
from mrcnn_tf.modeling.roi_heads.box_predictor import BoxPredictor
from mrcnn_tf.registries import BOX_HEADS


@BOX_HEADS.register(injected=("num_classes",))
class Res5BoxHead(keras.layers.Layer):
    """The ResNet's fifth stage run per RoI (stride 2: 14×14 RoIs -> 7×7), average-pooled.

    In the paper's ResNet-C4 model the backbone stops at res4 and res5 becomes the RoI head;
    the mask head then reads these res5 features (a model with no ``mask_roi_aligner`` calls
    ``extract``), so res5 runs once
    per RoI for both heads, as in Detectron2's ``Res5ROIHeads``.

    Args:
        num_classes: K foreground classes (the detector supplies it).
        depth: the ResNet whose res5 this is (block type and count; 50 and 101 have three
            bottleneck blocks of 2048 channels).
        norm, stride_in_1x1: as for the ResNet backbone (``frozen_bn`` by default).
        class_agnostic: one set of box deltas for all classes.

    Call:
        roi_features: ``[B, N, S, S, C4]`` float32 (S = 14 in the paper).

    Returns:
        ``{"logits": [B, N, K + 1], "deltas": [B, N, K or 1, 4],
        "features": [B, N, S/2, S/2, C5]}``: the res5 maps, for the mask head.
    """

    def __init__(
        self,
        num_classes: int,
        depth: int = 50,
        norm: str = "frozen_bn",
        stride_in_1x1: bool = False,
        class_agnostic: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if depth not in RESNET_SPECS:
            raise ValueError(f"Res5BoxHead depth must be one of {sorted(RESNET_SPECS)}, got {depth}")
        self.num_classes = int(num_classes)
        self.depth = int(depth)
        self.norm = norm
        self.stride_in_1x1 = bool(stride_in_1x1)
        self.class_agnostic = bool(class_agnostic)
        bottleneck, blocks = RESNET_SPECS[depth]
        self.out_channels = 2048 if bottleneck else 512
        self.blocks = [
            ResidualBlock(
                self.out_channels,
                strides=2 if b == 0 else 1,
                bottleneck=bottleneck,
                norm=norm,
                stride_in_1x1=stride_in_1x1,
                name=f"res5_block{b + 1}",
            )
            for b in range(blocks[3])
        ]
        self.predictor = BoxPredictor(num_classes, class_agnostic, name="predictor")

    def build(self, input_shape):
        _, n, s, _, c = input_shape
        shape = (None, s, s, c)
        for block in self.blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        self.predictor.build((None, n, self.out_channels))

    def extract(self, roi_features, training=None):
        """res5 maps ``[B, N, S/2, S/2, C5]`` from RoI features ``[B, N, S, S, C4]``."""
        ops = keras.ops
        shape = ops.shape(roi_features)
        x = ops.reshape(roi_features, (-1, shape[2], shape[3], shape[4]))
        for block in self.blocks:
            x = block(x, training=training)
        out = ops.shape(x)
        return ops.reshape(x, (shape[0], shape[1], out[1], out[2], out[3]))

    def call(self, roi_features, training=None):
        features = self.extract(roi_features, training=training)
        logits, deltas = self.predictor(keras.ops.mean(features, axis=(2, 3)))
        return {"logits": logits, "deltas": deltas, "features": features}

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            depth=self.depth,
            norm=self.norm,
            stride_in_1x1=self.stride_in_1x1,
            class_agnostic=self.class_agnostic,
        )
        return config
