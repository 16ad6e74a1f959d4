"""Mask losses that see every class's mask logits (the paper's Table 2b ablation)."""

from __future__ import annotations

import keras

from mrcnn_tf.registries import LOSSES


@LOSSES.register(aliases=("softmax_mask",))
class MultinomialMaskLoss(keras.losses.Loss):
    """Per-pixel softmax over the classes and background, with a multinomial (cross-entropy) loss.

    The FCN-style alternative to Mask R-CNN's per-class sigmoid (He et al. 2017, Table 2b):
    masks compete across classes instead of being decoupled from them. The K mask logits of a
    pixel are joined by an implicit background logit fixed at 0, so the head keeps its K
    outputs and, with one class (or a class-agnostic head), this is exactly the sigmoid loss.

    Used as ``model.mask_loss: {type: MultinomialMaskLoss}``. Because ``class_coupled`` is
    True, the detector passes the logits of all classes and a target distribution instead of
    the GT class's channel and a binary target, and turns logits into probabilities with
    :meth:`probabilities` at inference.

    Args:
        reduction, name: as ``keras.losses.Loss``; the detector needs ``"sum"``.

    Call:
        y_true: ``[..., K' + 1]`` float target distribution per pixel, background first
            (``1 - t`` on background, ``t`` on the GT class's channel, t in [0, 1]).
        y_pred: ``[..., K']`` float mask logits (K' = K classes, or 1 class-agnostic).

    Returns:
        ``[...]`` ``logsumexp([0, z]) - sum(y * [0, z])``.
    """

    class_coupled = True

    def __init__(self, reduction: str = "sum", name: str = "multinomial_mask", **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs)

    def call(self, y_true, y_pred):
        ops = keras.ops
        z = ops.cast(y_pred, "float32")
        z = ops.concatenate([ops.zeros_like(z[..., :1]), z], axis=-1)
        return ops.logsumexp(z, axis=-1) - ops.sum(ops.cast(y_true, "float32") * z, axis=-1)

    @staticmethod
    def targets(binary, classes, num_channels: int):
        """The target distribution ``[B, N, M, M, K' + 1]`` from binary masks and classes.

        Args:
            binary: ``[B, N, M, M]`` float mask targets in [0, 1]; classes: ``[B, N]`` int32
                in 1..K; num_channels: K' (K, or 1 when the head is class-agnostic).
        """
        ops = keras.ops
        index = ops.ones_like(classes) if num_channels == 1 else ops.clip(classes, 1, num_channels)
        one_hot = ops.one_hot(ops.cast(index, "int32"), num_channels + 1)[:, :, None, None, :]
        t = ops.cast(binary, "float32")[..., None]
        background = ops.one_hot(ops.zeros_like(classes), num_channels + 1)[:, :, None, None, :]
        return t * one_hot + (1.0 - t) * background

    @staticmethod
    def probabilities(logits, classes):
        """Soft masks ``[B, N, M, M]`` of each RoI's class from ``[B, N, M, M, K']`` logits.

        As in FCN, a pixel belongs to the mask where the RoI's class wins the per-pixel argmax
        over background and all classes. The value returned is ``p_c / (p_c + max_{j != c} p_j)``
        (the class's probability against its strongest rival, background included): at least
        0.5 exactly where class c wins, so the usual 0.5 threshold gives the argmax labelling.
        (``p_c`` itself can win the argmax at 0.3 when four labels compete.) With one channel
        it is the sigmoid probability.

        ``classes``: ``[B, N]`` int32 in 1..K (0, an empty slot, reads class 1; callers mask it).
        """
        ops = keras.ops
        z = ops.cast(logits, "float32")
        k = z.shape[-1]
        z = ops.concatenate([ops.zeros_like(z[..., :1]), z], axis=-1)  # [B, N, M, M, K' + 1]
        if k == 1:
            return ops.sigmoid(z[..., 1])
        index = ops.clip(ops.cast(classes, "int32"), 1, k)
        own = ops.one_hot(index, k + 1)[:, :, None, None, :]
        z_own = ops.sum(z * own, axis=-1)
        z_rival = ops.max(z - 1e30 * own, axis=-1)
        return ops.sigmoid(z_own - z_rival)  # = p_c / (p_c + p_rival)
