"""RoI feature extractors: RoIAlign on one map (C4 models) or on a pyramid (FPN models)."""

from __future__ import annotations

import keras

from mrcnn_tf.ops import roi_align as ops
from mrcnn_tf.registries import ROI_ALIGNERS


def pyramid_maps(features: dict, min_level: int, max_level: int, owner: str) -> list:
    """The maps ``P{min_level}..P{max_level}`` of ``features``, in level order.

    Raises:
        ValueError: naming ``owner`` and the missing levels.
    """
    keys = [f"P{k}" for k in range(min_level, max_level + 1)]
    missing = [k for k in keys if k not in features]
    if missing:
        raise ValueError(f"{owner} needs pyramid levels {missing}; got {sorted(features)}")
    return [features[k] for k in keys]


class _RoIAlignBase(keras.layers.Layer):
    def __init__(
        self,
        output_size: int = 7,
        sampling_ratio: int = 2,
        aligned: bool = True,
        backend: str = "crop_and_resize",
        pooling: str = "avg",
        max_sampling_ratio: int = 4,
        **kwargs,
    ):
        super().__init__(**kwargs)
        ops.check_roi_align_args(output_size, sampling_ratio, backend, pooling, max_sampling_ratio)
        self.max_sampling_ratio = int(max_sampling_ratio)
        self.output_size = int(output_size)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)
        self.backend = backend
        self.pooling = pooling

    def _op_kwargs(self) -> dict:
        """The arguments every RoIAlign op call shares."""
        return {
            "sampling_ratio": self.sampling_ratio,
            "aligned": self.aligned,
            "backend": self.backend,
            "pooling": self.pooling,
            "max_sampling_ratio": self.max_sampling_ratio,
        }

    def get_config(self):
        config = super().get_config()
        config.update(output_size=self.output_size, **self._op_kwargs())
        return config


@ROI_ALIGNERS.register()
class MultiLevelRoIAlign(_RoIAlignBase):
    """RoIAlign on an FPN pyramid; each RoI is read from level ``floor(4 + log2(sqrt(wh) / 224))``.

    Args:
        output_size: bins per side (7 for the box head, 14 for the mask head).
        sampling_ratio: bilinear samples per bin and axis (>= 1), or 0: Detectron2's adaptive
            ``ceil(roi_size / output_size)`` (its ``ROIAlignV2`` models), exact up to
            ``max_sampling_ratio`` samples per bin and axis (see :mod:`mrcnn_tf.ops.roi_align`).
        max_sampling_ratio: sample slots per bin and axis of the adaptive grid (memory and time
            grow with its square; 4 covers RoIs up to 4 × output_size feature pixels).
        aligned: Detectron2 ``ROIAlignV2`` half-pixel shift (default) or the original op.
        backend: ``crop_and_resize`` (GPU) or ``gather`` (XLA/TPU; same values to 1e-5).
        pooling: ``avg`` (RoIAlign) or ``max`` (the paper's Table 2c variant).
        min_level, max_level: pyramid levels RoIs may use (P2–P5 in the paper; P6 only feeds
            the RPN).
        canonical_size, canonical_level: the FPN paper's 224 and k0 = 4.
        level_rule: ``detectron2`` or ``torchvision`` rounding guard of the level formula
            (see :func:`mrcnn_tf.ops.roi_align.assign_levels`).
        roi_chunk: with ``sampling_ratio=0``, RoIs aligned at a time (bounds the memory).

    Call:
        features: ``{"P2": [B, H/4, W/4, C], ..., "P5": ...}`` (extra levels are ignored).
        boxes: ``[B, N, 4]`` float32 ``[y1, x1, y2, x2]`` in input-image pixels.

    Returns:
        ``[B, N, output_size, output_size, C]`` float32.
    """

    def __init__(
        self,
        output_size: int = 7,
        sampling_ratio: int = 2,
        aligned: bool = True,
        backend: str = "crop_and_resize",
        pooling: str = "avg",
        min_level: int = 2,
        max_level: int = 5,
        canonical_size: float = 224.0,
        canonical_level: int = 4,
        level_rule: str = "detectron2",
        max_sampling_ratio: int = 4,
        roi_chunk: int = 64,
        **kwargs,
    ):
        super().__init__(
            output_size,
            sampling_ratio,
            aligned,
            backend,
            pooling,
            max_sampling_ratio=max_sampling_ratio,
            **kwargs,
        )
        if int(roi_chunk) < 1:
            raise ValueError(f"MultiLevelRoIAlign roi_chunk must be >= 1, got {roi_chunk}")
        self.roi_chunk = int(roi_chunk)
        if level_rule not in ops.LEVEL_RULES:
            raise ValueError(
                f"MultiLevelRoIAlign level_rule must be one of {ops.LEVEL_RULES}, got '{level_rule}'"
            )
        self.level_rule = level_rule
        if min_level > max_level:
            raise ValueError(
                f"MultiLevelRoIAlign needs min_level <= max_level, got {min_level} > {max_level}"
            )
        self.min_level = int(min_level)
        self.max_level = int(max_level)
        self.canonical_size = float(canonical_size)
        self.canonical_level = int(canonical_level)

    def call(self, features, boxes):
        return ops.multilevel_roi_align(
            pyramid_maps(features, self.min_level, self.max_level, "MultiLevelRoIAlign"),
            boxes,
            self.output_size,
            min_level=self.min_level,
            canonical_size=self.canonical_size,
            canonical_level=self.canonical_level,
            level_rule=self.level_rule,
            roi_chunk=self.roi_chunk,
            **self._op_kwargs(),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            min_level=self.min_level,
            max_level=self.max_level,
            canonical_size=self.canonical_size,
            canonical_level=self.canonical_level,
            level_rule=self.level_rule,
            roi_chunk=self.roi_chunk,
        )
        return config


@ROI_ALIGNERS.register()
class RoIAlign(_RoIAlignBase):
    """RoIAlign on a single feature map (the ResNet-C4 model reads C4 at stride 16).

    Args:
        feature: the key of the map in the features dict (``C4``).
        stride: that map's stride in input pixels.
        Others: as :class:`MultiLevelRoIAlign`.

    Call:
        features: a dict holding ``feature`` ``[B, H/stride, W/stride, C]``.
        boxes: ``[B, N, 4]`` float32 ``[y1, x1, y2, x2]`` in input-image pixels.

    Returns:
        ``[B, N, output_size, output_size, C]`` float32.
    """

    def __init__(
        self,
        output_size: int = 14,
        sampling_ratio: int = 2,
        aligned: bool = True,
        backend: str = "crop_and_resize",
        pooling: str = "avg",
        feature: str = "C4",
        stride: int = 16,
        max_sampling_ratio: int = 4,
        **kwargs,
    ):
        super().__init__(
            output_size,
            sampling_ratio,
            aligned,
            backend,
            pooling,
            max_sampling_ratio=max_sampling_ratio,
            **kwargs,
        )
        self.feature = feature
        self.stride = int(stride)

    def call(self, features, boxes):
        if self.feature not in features:
            raise ValueError(f"RoIAlign reads feature '{self.feature}'; got {sorted(features)}")
        return ops.roi_align(
            features[self.feature],
            boxes,
            self.output_size,
            1.0 / self.stride,
            **self._op_kwargs(),
        )

    def get_config(self):
        config = super().get_config()
        config.update(feature=self.feature, stride=self.stride)
        return config
