"""ResNet backbone (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016)."""

from __future__ import annotations

import keras

from mrcnn_tf.modeling.backbones.resnet_blocks import ResidualBlock
from mrcnn_tf.modeling.base import Backbone, FeatureSpec
from mrcnn_tf.modeling.layers import NORMS, PaddedConv2D, conv_norm, make_norm, strided_size
from mrcnn_tf.registries import BACKBONES

#: depth -> (bottleneck?, blocks per stage res2..res5)
RESNET_SPECS: dict[int, tuple[bool, tuple[int, int, int, int]]] = {
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
}
STAGE_NAMES = ("C2", "C3", "C4", "C5")
STRIDES = {"C2": 4, "C3": 8, "C4": 16, "C5": 32}


@BACKBONES.register(aliases=("resnet",))
class ResNet(Backbone):
    """ResNet-18/34/50/101/152 feature extractor returning C2–C5 (strides 4, 8, 16, 32).

    The stem is a 7×7 stride-2 conv, norm, ReLU and a 3×3 stride-2 max pool; stages res2–res5
    follow (res2 at stride 1, the others at stride 2). Convolutions pad symmetrically, as
    torchvision and Detectron2 do, so imported checkpoints reproduce their features.

    Args:
        depth: 18 or 34 (basic blocks), 50, 101 or 152 (bottleneck blocks).
        norm: ``frozen_bn`` (default, the detection default: Detectron2 ``FrozenBN``),
            ``bn``, ``sync_bn``, ``gn`` (GroupNorm, 32 groups) or ``none``.
        freeze_at: 0 trains everything; 1 freezes the stem; k >= 2 freezes the stem and
            res2..res{k} (Detectron2's ``FREEZE_AT``; 2 is its default).
        out_features: which of ``C2``..``C5`` to return. ``("C4",)`` with the stages up to
            res4 only is the paper's ResNet-C4 backbone (res5 then runs in the RoI head).
        stride_in_1x1: put the stride-2 of a bottleneck in its first 1×1 conv (MSRA/Caffe
            weights) instead of the 3×3 (torchvision weights, the default).
        width: channels after the stem (64 for the standard networks).
        norm_epsilon: epsilon of every norm layer: 1e-5 (torchvision v2, Detectron2, MSRA);
            torchvision's v1 COCO weights were trained with 0 (``overwrite_eps(model, 0.0)``).

    Call:
        inputs: ``[B, H, W, 3]`` float32 images, already normalised (pixel mean/std).

    Returns:
        ``{"C2": [B, ceil(H/4), ceil(W/4), 256], ..., "C5": [B, ceil(H/32), ceil(W/32), 2048]}``
        (bottleneck channels; basic blocks give 64, 128, 256, 512), only ``out_features``.
    """

    def __init__(
        self,
        depth: int = 50,
        norm: str = "frozen_bn",
        freeze_at: int = 2,
        out_features: tuple[str, ...] | list[str] = STAGE_NAMES,
        stride_in_1x1: bool = False,
        width: int = 64,
        norm_epsilon: float = 1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 <= float(norm_epsilon) < 1.0:
            raise ValueError(f"ResNet norm_epsilon must be in [0, 1), got {norm_epsilon}")
        self.norm_epsilon = float(norm_epsilon)
        if depth not in RESNET_SPECS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_SPECS)}, got {depth}")
        if norm not in NORMS:
            raise ValueError(f"ResNet norm must be one of {', '.join(NORMS)}, got '{norm}'")
        out_features = tuple(out_features)
        unknown = [f for f in out_features if f not in STAGE_NAMES]
        if unknown or not out_features:
            raise ValueError(
                f"ResNet out_features must be a non-empty subset of {STAGE_NAMES}, got {out_features}"
            )
        if not 0 <= freeze_at <= 5:
            raise ValueError(f"ResNet freeze_at must be between 0 and 5, got {freeze_at}")
        self.depth = depth
        self.norm = norm
        self.freeze_at = freeze_at
        self.out_features = out_features
        self.stride_in_1x1 = stride_in_1x1
        self.width = width

        bottleneck, blocks = RESNET_SPECS[depth]
        expansion = 4 if bottleneck else 1
        self.stem_conv = PaddedConv2D(width, 7, strides=2, use_bias=False, name="stem_conv")
        self.stem_norm = make_norm(norm, "stem_norm", epsilon=self.norm_epsilon)
        self.stem_pool = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_pool")
        last = max(STAGE_NAMES.index(f) for f in out_features)
        self.stages: list[list[ResidualBlock]] = []
        for index in range(last + 1):
            filters = width * (2**index) * expansion
            stage = [
                ResidualBlock(
                    filters,
                    strides=(2 if index > 0 and b == 0 else 1),
                    bottleneck=bottleneck,
                    norm=norm,
                    stride_in_1x1=stride_in_1x1,
                    norm_epsilon=self.norm_epsilon,
                    name=f"res{index + 2}_block{b + 1}",
                )
                for b in range(blocks[index])
            ]
            self.stages.append(stage)
        self._channels = {name: width * (2**i) * expansion for i, name in enumerate(STAGE_NAMES) if i <= last}
        if freeze_at >= 1:
            self.stem_conv.trainable = False
            self.stem_norm.trainable = False
        for index, stage in enumerate(self.stages):
            if freeze_at >= index + 2:
                for block in stage:
                    block.trainable = False

    def output_specs(self) -> dict[str, FeatureSpec]:
        """Channels and stride of each returned feature map."""
        return {f: FeatureSpec(self._channels[f], STRIDES[f]) for f in self.out_features}

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.stem_conv.build(shape)
        shape = self.stem_conv.compute_output_shape(shape)
        self.stem_norm.build(shape)
        for stage in self.stages:
            for block in stage:
                block.build(shape)
                shape = block.compute_output_shape(shape)

    def call(self, inputs, training=None):
        x = keras.ops.relu(conv_norm(self.stem_conv, self.stem_norm, inputs, training))
        # ReLU output is >= 0, so zero padding equals PyTorch's -inf padding for the max pool.
        x = self.stem_pool(keras.ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]))
        outputs = {}
        for index, stage in enumerate(self.stages):
            for block in stage:
                x = block(x, training=training)
            name = STAGE_NAMES[index]
            if name in self.out_features:
                outputs[name] = x
        return outputs

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return {
            f: (b, strided_size(h, spec.stride), strided_size(w, spec.stride), spec.channels)
            for f, spec in self.output_specs().items()
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            depth=self.depth,
            norm=self.norm,
            freeze_at=self.freeze_at,
            out_features=list(self.out_features),
            stride_in_1x1=self.stride_in_1x1,
            width=self.width,
            norm_epsilon=self.norm_epsilon,
        )
        return config
