"""Anchor boxes for every level of a feature pyramid (Ren et al. 2015; Lin et al. 2017)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import keras

from mrcnn_tf.registries import ANCHOR_GENERATORS


@ANCHOR_GENERATORS.register(injected=("strides",))
class AnchorGenerator(keras.layers.Layer):
    """Anchors of several sizes and aspect ratios at every cell of every pyramid level.

    On level ``k`` (stride ``s``, ``2**k`` unless ``strides`` says otherwise) the anchor
    centres are ``((y + offset) * s, (x + offset) * s)`` for every feature cell ``(y, x)``. With
    pixel i covering [i, i+1), cell y covers input rows [y*s, (y+1)*s), so ``offset=0.5`` (our
    default, as in TF Model Garden) centres the anchors on their cells; ``offset=0.0`` reproduces
    Detectron2's default.

    An anchor of size ``a`` (times each scale) and aspect ratio ``r = height / width`` has area
    ``a**2``: ``w = a / sqrt(r)``, ``h = a * sqrt(r)`` (no "+1" in widths).

    Args:
        min_level, max_level: pyramid levels, e.g. 2..6 for P2–P6.
        sizes: one base size per level, in input pixels (32..512 in the FPN paper), or a list
            of sizes per level (the C4 RPN has ``[[32, 64, 128, 256, 512]]`` on one level);
            every level needs the same number of sizes, as the RPN head is shared.
        aspect_ratios: height/width ratios, the same on every level.
        scales: multipliers of each size (``(1.0,)`` for Mask R-CNN; RetinaNet uses
            ``2**(i/3)`` for i = 0, 1, 2).
        offset: centre offset in units of the stride (see above).
        strides: ``{"P2": 4, ...}``, each level's stride in input pixels; the builder passes
            the neck's (:meth:`~mrcnn_tf.modeling.base.Neck.output_specs`). None: ``2**k``.
        round_cell_anchors: round the anchors centred on (0, 0) to whole pixels (computed in
            float32, half to even), as torchvision's ``AnchorGenerator`` does; Detectron2 and
            Model Garden keep them unrounded (default).
        stride_from_size: take each level's stride per axis as ``image_extent // cells``
            (torchvision: the padded image size over the level's size, e.g. 800 // 13 = 61 on
            a 13-row P6 of an 800-row image) instead of the nominal stride. The image extent is
            the lowest level's size times its stride.

    Call:
        inputs: ``{"P2": [B, H2, W2, C], ...}`` features (only their spatial sizes are used).

    Returns:
        ``{"P2": [H2 * W2 * A, 4], ...}`` float32 anchors ``[y1, x1, y2, x2]`` in absolute
        input-image pixels, ordered by (row, column, anchor) so that they line up with an
        RPN output ``[B, H, W, A * 4]`` reshaped to ``[B, H * W * A, 4]``; ``A = sizes per level *
        len(scales) * len(aspect_ratios)``, sizes outer, then scales, ratios inner.
    """

    def __init__(
        self,
        min_level: int = 2,
        max_level: int = 6,
        sizes: tuple | list = (32, 64, 128, 256, 512),
        aspect_ratios: tuple[float, ...] | list[float] = (0.5, 1.0, 2.0),
        scales: tuple[float, ...] | list[float] = (1.0,),
        offset: float = 0.5,
        strides: Mapping[str, int] | None = None,
        round_cell_anchors: bool = False,
        stride_from_size: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if len(sizes) != max_level - min_level + 1:
            raise ValueError(
                f"AnchorGenerator needs one size per level ({max_level - min_level + 1} for levels "
                f"{min_level}..{max_level}), got sizes={list(sizes)}"
            )
        per_level = [[float(v) for v in s] if isinstance(s, (list, tuple)) else [float(s)] for s in sizes]
        if len({len(s) for s in per_level}) != 1 or not per_level[0]:
            raise ValueError(
                f"AnchorGenerator needs the same number of sizes on every level, got {list(sizes)}"
            )
        flat = [v for s in per_level for v in s]
        if any(r <= 0 for r in aspect_ratios) or any(s <= 0 for s in flat) or any(s <= 0 for s in scales):
            raise ValueError("AnchorGenerator sizes, aspect_ratios and scales must be positive")
        self.min_level = min_level
        self.max_level = max_level
        self.sizes = [[float(v) for v in s] if isinstance(s, (list, tuple)) else float(s) for s in sizes]
        self._level_sizes = per_level
        self.aspect_ratios = [float(r) for r in aspect_ratios]
        self.scales = [float(s) for s in scales]
        self.offset = float(offset)
        levels = [f"P{k}" for k in range(min_level, max_level + 1)]
        strides = dict(strides) if strides is not None else {k: 2 ** int(k[1:]) for k in levels}
        missing = [k for k in levels if k not in strides]
        if missing:
            raise ValueError(
                f"AnchorGenerator levels {missing} have no stride; the pyramid has {sorted(strides)}"
            )
        self.strides = {k: int(strides[k]) for k in levels}
        self.round_cell_anchors = bool(round_cell_anchors)
        self.stride_from_size = bool(stride_from_size)

    @property
    def num_anchors_per_location(self) -> int:
        """Anchors per feature cell (the same on every level)."""
        return len(self._level_sizes[0]) * len(self.scales) * len(self.aspect_ratios)

    def cell_anchors(self, level: int) -> list[list[float]]:
        """The ``A`` anchors ``[y1, x1, y2, x2]`` centred on (0, 0) for ``level``."""
        import numpy as np

        out = []
        for size in self._level_sizes[level - self.min_level]:
            for scale in self.scales:
                for ratio in self.aspect_ratios:
                    if self.round_cell_anchors:  # torchvision: sqrt(ar), 1 / sqrt(ar), float32, round
                        h_ratio = np.sqrt(np.float32(ratio))
                        s = np.float32(size) * np.float32(scale)
                        h, w = h_ratio * s, np.float32(1.0) / h_ratio * s
                        half = np.round(np.array([-h, -w, h, w], np.float32) / np.float32(2.0))
                        out.append([float(v) for v in half])
                    else:
                        h = size * scale * math.sqrt(ratio)
                        w = size * scale / math.sqrt(ratio)
                        out.append([-h / 2.0, -w / 2.0, h / 2.0, w / 2.0])
        return out

    def grid_anchors(self, level: int, height, width, stride_y=None, stride_x=None):
        """Anchors ``[height * width * A, 4]`` for one level with a ``height × width`` grid
        (strides: the level's nominal one unless given)."""
        ops = keras.ops
        stride = float(self.strides[f"P{level}"])
        stride_y = stride if stride_y is None else stride_y
        stride_x = stride if stride_x is None else stride_x
        ys = (ops.cast(ops.arange(height), "float32") + self.offset) * stride_y
        xs = (ops.cast(ops.arange(width), "float32") + self.offset) * stride_x
        cy, cx = ops.meshgrid(ys, xs, indexing="ij")
        centers = ops.stack([cy, cx, cy, cx], axis=-1)  # [H, W, 4]
        cell = ops.convert_to_tensor(self.cell_anchors(level), dtype="float32")  # [A, 4]
        anchors = centers[:, :, None, :] + cell[None, None, :, :]
        return ops.reshape(anchors, (-1, 4))

    def call(self, inputs):
        out = {}
        first = keras.ops.shape(inputs[f"P{self.min_level}"])
        extent_y = first[1] * self.strides[f"P{self.min_level}"]
        extent_x = first[2] * self.strides[f"P{self.min_level}"]
        for level in range(self.min_level, self.max_level + 1):
            shape = keras.ops.shape(inputs[f"P{level}"])
            strides = (None, None)
            if self.stride_from_size:
                strides = tuple(
                    keras.ops.cast(extent // cells, "float32")
                    for extent, cells in ((extent_y, shape[1]), (extent_x, shape[2]))
                )
            out[f"P{level}"] = self.grid_anchors(level, shape[1], shape[2], *strides)
        return out

    def get_config(self):
        config = super().get_config()
        config.update(
            min_level=self.min_level,
            max_level=self.max_level,
            sizes=self.sizes,
            aspect_ratios=self.aspect_ratios,
            scales=self.scales,
            offset=self.offset,
            strides=dict(self.strides),
            round_cell_anchors=self.round_cell_anchors,
            stride_from_size=self.stride_from_size,
        )
        return config
