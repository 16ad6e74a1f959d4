"""Feature Pyramid Network neck (Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017)."""

from __future__ import annotations

from collections.abc import Mapping

import keras

from mrcnn_tf.modeling.base import FeatureSpec, Neck
from mrcnn_tf.modeling.layers import (
    NORMS,
    PaddedConv2D,
    check_conv_algorithm,
    conv3x3,
    make_norm,
    strided_size,
    xavier_fill,
)
from mrcnn_tf.registries import NECKS


@NECKS.register(aliases=("fpn",))
class FPN(Neck):
    """FPN: lateral 1×1 convs, top-down nearest-neighbour upsampling and sum, 3×3 output convs.

    ``P_k = conv3x3(lateral_k(C_k) + upsample2x(top-down_{k+1}))`` for k = 2..5, and
    ``P6 = P5[:, ::2, ::2]`` (max pooling with a 1×1 window and stride 2, as in the Mask R-CNN
    FPN models; it only feeds the RPN). Convs use Detectron2's ``c2_xavier_fill``, biases 0.

    Args:
        num_channels: channels of every output level (256 in the paper).
        min_level: lowest input/output level (2 means C2/P2 at stride 4).
        max_level: highest output level; levels above the highest input level (5) are made
            by stride-2 subsampling of the level below (P6).
        conv_algorithm: how the 3×3 output convs compute (``auto``, ``direct``, ``winograd``;
            see :func:`mrcnn_tf.modeling.layers.conv3x3`). ``auto`` uses Winograd F(4×4, 3×3)
            for float32 CPU inference on levels of at least 64×64 (P2/P3 of a 640×640 image).

        norm: ``none`` (the paper: convs with biases) or a norm after every lateral and
            output conv, which then have no bias (torchvision's ``maskrcnn_resnet50_fpn_v2``
            and Detectron2's LSJ models use BN; see :func:`mrcnn_tf.modeling.layers.make_norm`).

    Call:
        inputs: ``{"C2": [B, H/4, W/4, c2], ..., "C5": [B, H/32, W/32, c5]}`` float, where
            H and W are multiples of ``2**max_level`` for exact alignment (other sizes work:
            the upsampled map is cropped to the lateral's size).

    Returns:
        ``{"P2": [B, H/4, W/4, num_channels], ..., "P6": [B, H/64, W/64, num_channels]}``.
    """

    def __init__(
        self,
        num_channels: int = 256,
        min_level: int = 2,
        max_level: int = 6,
        conv_algorithm: str = "auto",
        norm: str = "none",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.conv_algorithm = check_conv_algorithm(conv_algorithm)
        if norm not in NORMS:
            raise ValueError(f"FPN norm must be one of {', '.join(NORMS)}, got '{norm}'")
        self.norm = norm
        bias = norm == "none"
        if not 2 <= min_level <= 5 or max_level < 5:
            raise ValueError(f"FPN needs 2 <= min_level <= 5 <= max_level, got {min_level}..{max_level}")
        self.num_channels = num_channels
        self.min_level = min_level
        self.max_level = max_level
        self.input_levels = list(range(min_level, 6))
        # string keys: SavedModel export cannot track dicts keyed by integers
        self.laterals = {
            f"C{k}": keras.layers.Conv2D(
                num_channels, 1, use_bias=bias, kernel_initializer=xavier_fill(), name=f"lateral{k}"
            )
            for k in self.input_levels
        }
        self.outputs = {
            f"C{k}": PaddedConv2D(
                num_channels, 3, use_bias=bias, kernel_initializer=xavier_fill(), name=f"output{k}"
            )
            for k in self.input_levels
        }
        self.lateral_norms = {f"C{k}": make_norm(norm, f"lateral{k}_norm") for k in self.input_levels}
        self.output_norms = {f"C{k}": make_norm(norm, f"output{k}_norm") for k in self.input_levels}

    def output_levels(self) -> list[str]:
        return [f"P{k}" for k in range(self.min_level, self.max_level + 1)]

    def output_specs(self, input_specs: Mapping[str, FeatureSpec]) -> dict[str, FeatureSpec]:
        """``P{min_level}..P{max_level}``, ``num_channels`` each; needs ``C{min_level}..C5``."""
        self._check_inputs(input_specs)
        wrong = {
            f"C{k}": input_specs[f"C{k}"].stride
            for k in self.input_levels
            if input_specs[f"C{k}"].stride != 2**k
        }
        if wrong:
            raise ValueError(f"FPN needs C{{k}} at stride 2**k; the backbone gives strides {wrong}")
        return {name: FeatureSpec(self.num_channels, 2 ** int(name[1:])) for name in self.output_levels()}

    def _check_inputs(self, inputs) -> None:
        missing = [f"C{k}" for k in self.input_levels if f"C{k}" not in inputs]
        if missing:
            raise ValueError(f"FPN needs backbone features {missing}; got {sorted(inputs)}")

    def build(self, input_shape):
        self._check_inputs(input_shape)
        for k in self.input_levels:
            shape = tuple(input_shape[f"C{k}"])
            self.laterals[f"C{k}"].build(shape)
            self.outputs[f"C{k}"].build((*shape[:-1], self.num_channels))
            self.lateral_norms[f"C{k}"].build((*shape[:-1], self.num_channels))
            self.output_norms[f"C{k}"].build((*shape[:-1], self.num_channels))

    def call(self, inputs, training=None):
        self._check_inputs(inputs)
        results = {}
        top_down = None
        for k in reversed(self.input_levels):
            lateral = self.lateral_norms[f"C{k}"](self.laterals[f"C{k}"](inputs[f"C{k}"]), training=training)
            if top_down is not None:
                up = keras.ops.repeat(keras.ops.repeat(top_down, 2, axis=1), 2, axis=2)
                shape = keras.ops.shape(lateral)
                lateral = lateral + up[:, : shape[1], : shape[2], :]
            top_down = lateral
            output = conv3x3(self.outputs[f"C{k}"], lateral, self.conv_algorithm, training)
            results[f"P{k}"] = self.output_norms[f"C{k}"](output, training=training)
        for k in range(6, self.max_level + 1):
            results[f"P{k}"] = results[f"P{k - 1}"][:, ::2, ::2, :]
        return {f"P{k}": results[f"P{k}"] for k in range(self.min_level, self.max_level + 1)}

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape[f"C{self.min_level}"]
        out = {}
        for k in range(self.min_level, self.max_level + 1):
            f = 2 ** (k - self.min_level)
            out[f"P{k}"] = (b, strided_size(h, f), strided_size(w, f), self.num_channels)
        return out

    def get_config(self):
        config = super().get_config()
        config.update(
            num_channels=self.num_channels,
            min_level=self.min_level,
            max_level=self.max_level,
            conv_algorithm=self.conv_algorithm,
            norm=self.norm,
        )
        return config
