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

    @property
    def num_anchors_per_location(self) -> int:
        """Anchors per feature cell (the same on every level)."""
        return len(self._level_sizes[0]) * len(self.scales) * len(self.aspect_ratios)

    def cell_anchors(self, level: int) -> list[list[float]]:
        """The ``A`` anchors ``[y1, x1, y2, x2]`` centred on (0, 0) for ``level``."""
        out = []
        for size in self._level_sizes[level - self.min_level]:
            for scale in self.scales:
                for ratio in self.aspect_ratios:
                    h = size * scale * math.sqrt(ratio)
                    w = size * scale / math.sqrt(ratio)
                    out.append([-h / 2.0, -w / 2.0, h / 2.0, w / 2.0])
        return out

    def grid_anchors(self, level: int, height, width):
        """Anchors ``[height * width * A, 4]`` for one level with a ``height × width`` grid."""
        ops = keras.ops
        stride = float(self.strides[f"P{level}"])
        ys = (ops.cast(ops.arange(height), "float32") + self.offset) * stride
        xs = (ops.cast(ops.arange(width), "float32") + self.offset) * stride
        cy, cx = ops.meshgrid(ys, xs, indexing="ij")
        centers = ops.stack([cy, cx, cy, cx], axis=-1)  # [H, W, 4]
        cell = ops.convert_to_tensor(self.cell_anchors(level), dtype="float32")  # [A, 4]
        anchors = centers[:, :, None, :] + cell[None, None, :, :]
        return ops.reshape(anchors, (-1, 4))

    def call(self, inputs):
        out = {}
        for level in range(self.min_level, self.max_level + 1):
            shape = keras.ops.shape(inputs[f"P{level}"])
            out[f"P{level}"] = self.grid_anchors(level, shape[1], shape[2])
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
        )
        return config
