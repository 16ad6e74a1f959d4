"""Box regression losses."""

from __future__ import annotations

import keras

from mrcnn_tf.registries import LOSSES


@LOSSES.register(aliases=("smooth_l1",))
class SmoothL1Loss(keras.losses.Loss):
    """Smooth-L1 (Huber-like) box regression loss, summed over the 4 box coordinates.

    Per coordinate, with ``d = |y_pred - y_true|``: ``0.5 * d**2 / beta`` if ``d < beta``,
    else ``d - 0.5 * beta``. ``beta = 0`` is plain L1 (Detectron2's default for the RPN and
    box head); the Fast R-CNN paper used ``beta = 1`` and the original RPN ``beta = 1/9``.

    Args:
        beta: the transition point; must be >= 0.
        reduction, name: as for ``keras.losses.Loss``. The detector applies its own
            normaliser (e.g. the number of sampled anchors), so it usually calls this with
            ``sample_weight`` masks and ``reduction="sum"``.

    Call:
        y_true, y_pred: ``[..., 4]`` float32 encoded box deltas.

    Returns:
        ``[...]`` per-box losses, reduced according to ``reduction``.
    """

    def __init__(self, beta: float = 0.0, reduction: str = "sum", name: str = "smooth_l1", **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs)
        if beta < 0:
            raise ValueError(f"SmoothL1Loss beta must be >= 0, got {beta}")
        self.beta = float(beta)

    def call(self, y_true, y_pred):
        ops = keras.ops
        diff = ops.abs(ops.cast(y_pred, "float32") - ops.cast(y_true, "float32"))
        if self.beta == 0.0:
            per_coord = diff
        else:
            per_coord = ops.where(diff < self.beta, 0.5 * diff * diff / self.beta, diff - 0.5 * self.beta)
        return ops.sum(per_coord, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(beta=self.beta)
        return config
