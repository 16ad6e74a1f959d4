"""Box utilities. Boxes are ``[y1, x1, y2, x2]`` float32 in absolute input-image pixels.

Widths are ``x2 - x1`` (no "+1"): with pixel i covering [i, i+1), a box from 0 to 10 covers
ten pixels. Box deltas are ordered ``[dy, dx, dh, dw]`` (TF Model Garden's order for our
``[y1, x1, y2, x2]`` boxes) and follow Girshick et al. (Fast R-CNN, 2015):

    dy = wy * (gy - py) / ph     dh = wh * log(gh / ph)
    dx = wx * (gx - px) / pw     dw = ww * log(gw / pw)

with centres ``(py, px)`` and sizes ``(ph, pw)``. Weights are ``(10, 10, 5, 5)`` for the box
head and ``(1, 1, 1, 1)`` for the RPN (Detectron2's defaults); when decoding, ``dh`` and ``dw``
are clamped at ``log(1000 / 16)`` so that an extreme prediction cannot overflow ``exp``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import tensorflow as tf

#: Detectron2's ``_DEFAULT_SCALE_CLAMP``.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)
BOX_HEAD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


def box_area(boxes: tf.Tensor) -> tf.Tensor:
    """Areas ``[...]`` of boxes ``[..., 4]``; inverted boxes have area 0."""
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    return tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0)


def pairwise_iou(boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
    """Intersection over union of every pair.

    Args:
        boxes1: ``[..., N, 4]`` float32 ``[y1, x1, y2, x2]``.
        boxes2: ``[..., M, 4]`` float32, same leading dims.

    Returns:
        ``[..., N, M]`` float32 IoU; 0 where the union is empty (zero-area or padded boxes).
    """
    b1 = boxes1[..., :, None, :]
    b2 = boxes2[..., None, :, :]
    h = tf.maximum(tf.minimum(b1[..., 2], b2[..., 2]) - tf.maximum(b1[..., 0], b2[..., 0]), 0.0)
    w = tf.maximum(tf.minimum(b1[..., 3], b2[..., 3]) - tf.maximum(b1[..., 1], b2[..., 1]), 0.0)
    inter = h * w
    union = box_area(boxes1)[..., :, None] + box_area(boxes2)[..., None, :] - inter
    return tf.math.divide_no_nan(inter, union)


def _centres_sizes(boxes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    h, w = y2 - y1, x2 - x1
    return y1 + 0.5 * h, x1 + 0.5 * w, h, w


def encode_boxes(
    boxes: tf.Tensor, anchors: tf.Tensor, weights: Sequence[float] = BOX_HEAD_WEIGHTS
) -> tf.Tensor:
    """Deltas ``[..., 4]`` (``[dy, dx, dh, dw]``) that turn ``anchors`` into ``boxes``.

    Args:
        boxes: ``[..., 4]`` target boxes; anchors: ``[..., 4]`` reference boxes with positive
            sizes (the caller masks out padded entries).
        weights: ``(wy, wx, wh, ww)``.
    """
    gy, gx, gh, gw = _centres_sizes(tf.cast(boxes, tf.float32))
    py, px, ph, pw = _centres_sizes(tf.cast(anchors, tf.float32))
    wy, wx, wh, ww = (float(w) for w in weights)
    ph_safe = tf.maximum(ph, 1e-8)
    pw_safe = tf.maximum(pw, 1e-8)
    dy = wy * (gy - py) / ph_safe
    dx = wx * (gx - px) / pw_safe
    dh = wh * tf.math.log(tf.maximum(gh, 1e-8) / ph_safe)
    dw = ww * tf.math.log(tf.maximum(gw, 1e-8) / pw_safe)
    return tf.stack([dy, dx, dh, dw], axis=-1)


def decode_boxes(
    deltas: tf.Tensor,
    anchors: tf.Tensor,
    weights: Sequence[float] = BOX_HEAD_WEIGHTS,
    scale_clamp: float = BBOX_XFORM_CLIP,
) -> tf.Tensor:
    """Boxes ``[..., 4]`` from deltas ``[..., 4]`` and ``anchors`` ``[..., 4]`` (inverse of encode).

    ``dh / wh`` and ``dw / ww`` are clamped at ``scale_clamp`` before ``exp``.
    """
    deltas = tf.cast(deltas, tf.float32)
    py, px, ph, pw = _centres_sizes(tf.cast(anchors, tf.float32))
    wy, wx, wh, ww = (float(w) for w in weights)
    dy, dx, dh, dw = tf.unstack(deltas, axis=-1)
    dh = tf.minimum(dh / wh, scale_clamp)
    dw = tf.minimum(dw / ww, scale_clamp)
    cy = dy / wy * ph + py
    cx = dx / wx * pw + px
    h = tf.exp(dh) * ph
    w = tf.exp(dw) * pw
    return tf.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)


def clip_boxes(boxes: tf.Tensor, image_size: tf.Tensor | Sequence[float]) -> tf.Tensor:
    """Clip boxes ``[..., 4]`` to ``[0, height] × [0, width]``.

    Args:
        image_size: ``(height, width)``, or ``[B, 2]`` per image for boxes ``[B, N, ..., 4]``.
    """
    size = tf.cast(tf.convert_to_tensor(image_size), tf.float32)
    if size.shape.rank == 2:  # [B, 2] -> [B, 1, ..., 2] to broadcast over the box dims
        size = tf.reshape(size, tf.concat([tf.shape(size)[:1], [1] * (boxes.shape.rank - 2), [2]], axis=0))
    h, w = size[..., 0], size[..., 1]
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    return tf.stack(
        [
            tf.clip_by_value(y1, 0.0, h),
            tf.clip_by_value(x1, 0.0, w),
            tf.clip_by_value(y2, 0.0, h),
            tf.clip_by_value(x2, 0.0, w),
        ],
        axis=-1,
    )


class BoxCoder:
    """Box deltas with fixed weights: one value shared by the parts that must agree.

    The RPN's anchor labeler encodes with the weights its proposal generator decodes with;
    the RoI sampler encodes the box head's targets with the weights the detection generator
    decodes with. The builder hands the same ``BoxCoder`` to both parts of each pair, so they
    cannot disagree (model configs set it once: ``model.rpn_box_coder``, ``model.box_coder``).

    Args:
        weights: ``(wy, wx, wh, ww)``: ``(1, 1, 1, 1)`` for the RPN, ``(10, 10, 5, 5)`` for the
            box head (Detectron2's defaults).
        scale_clamp: ``dh / wh`` and ``dw / ww`` are clamped at this before ``exp`` when
            decoding (``log(1000 / 16)``, Detectron2's ``_DEFAULT_SCALE_CLAMP``).
    """

    def __init__(self, weights: Sequence[float] = BOX_HEAD_WEIGHTS, scale_clamp: float = BBOX_XFORM_CLIP):
        weights = tuple(float(w) for w in weights)
        if len(weights) != 4 or min(weights) <= 0:
            raise ValueError(f"BoxCoder weights must be 4 positive numbers (wy, wx, wh, ww), got {weights}")
        if not float(scale_clamp) > 0:
            raise ValueError(f"BoxCoder scale_clamp must be positive, got {scale_clamp}")
        self.weights = weights
        self.scale_clamp = float(scale_clamp)

    @classmethod
    def coerce(cls, value: BoxCoder | Mapping | Sequence[float] | None, default: Sequence[float]) -> BoxCoder:
        """A ``BoxCoder`` from itself, its config dict, a weights list, or None (``default``)."""
        if isinstance(value, BoxCoder):
            return value
        if value is None:
            return cls(default)
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"weights", "scale_clamp"})
            if unknown:
                raise ValueError(f"BoxCoder takes weights and scale_clamp, got unknown keys {unknown}")
            return cls(**value)
        return cls(value)

    def encode(self, boxes: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
        """Deltas ``[..., 4]`` from ``anchors`` to ``boxes`` (see :func:`encode_boxes`)."""
        return encode_boxes(boxes, anchors, self.weights)

    def decode(self, deltas: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
        """Boxes ``[..., 4]`` from ``deltas`` applied to ``anchors`` (see :func:`decode_boxes`)."""
        return decode_boxes(deltas, anchors, self.weights, self.scale_clamp)

    def get_config(self) -> dict:
        return {"weights": list(self.weights), "scale_clamp": self.scale_clamp}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BoxCoder) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((self.weights, self.scale_clamp))

    def __repr__(self) -> str:
        return f"BoxCoder(weights={list(self.weights)}, scale_clamp={self.scale_clamp:.6g})"
