"""RoIPool as a registered RoI feature extractor, for the paper's RoIAlign ablation (Table 2c)."""

from __future__ import annotations

import keras

from mrcnn_tf.modeling.roi_heads.roi_aligner import pyramid_maps
from mrcnn_tf.ops.roi_pool import multilevel_roi_pool
from mrcnn_tf.registries import ROI_ALIGNERS


@ROI_ALIGNERS.register()
class MultiLevelRoIPool(keras.layers.Layer):
    """RoIPool (quantized bins, max) on pyramid levels ``min_level..max_level``.

    A drop-in replacement for :class:`MultiLevelRoIAlign` (same call and output); a single map
    is the pyramid ``min_level == max_level`` (e.g. ``P4`` for C4 models).

    Args:
        output_size: bins per side.
        samples_per_bin: pixel rows/columns read per bin; exact up to that bin size
            (see :mod:`mrcnn_tf.ops.roi_pool`).
        min_level, max_level, canonical_size, canonical_level: level assignment, as RoIAlign's.

    Call:
        features: ``{"P2": [B, H/4, W/4, C], ...}``; boxes: ``[B, N, 4]`` float32
        ``[y1, x1, y2, x2]`` in input-image pixels.

    Returns:
        ``[B, N, output_size, output_size, C]`` float32.
    """

    def __init__(
        self,
        output_size: int = 7,
        samples_per_bin: int = 8,
        min_level: int = 2,
        max_level: int = 5,
        canonical_size: float = 224.0,
        canonical_level: int = 4,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if output_size < 1 or samples_per_bin < 1 or min_level > max_level:
            raise ValueError(
                "MultiLevelRoIPool needs output_size >= 1, samples_per_bin >= 1 and min_level <= max_level"
            )
        self.output_size = int(output_size)
        self.samples_per_bin = int(samples_per_bin)
        self.min_level = int(min_level)
        self.max_level = int(max_level)
        self.canonical_size = float(canonical_size)
        self.canonical_level = int(canonical_level)

    def call(self, features, boxes):
        return multilevel_roi_pool(
            pyramid_maps(features, self.min_level, self.max_level, "MultiLevelRoIPool"),
            boxes,
            self.output_size,
            min_level=self.min_level,
            samples_per_bin=self.samples_per_bin,
            canonical_size=self.canonical_size,
            canonical_level=self.canonical_level,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            output_size=self.output_size,
            samples_per_bin=self.samples_per_bin,
            min_level=self.min_level,
            max_level=self.max_level,
            canonical_size=self.canonical_size,
            canonical_level=self.canonical_level,
        )
        return config
