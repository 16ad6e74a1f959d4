"""Classification losses of the RPN, the box head and the mask head (element-wise, from logits)."""

from __future__ import annotations

import keras

from mrcnn_tf.registries import LOSSES


@LOSSES.register(aliases=("sigmoid_bce",))
class SigmoidCrossEntropyLoss(keras.losses.Loss):
    """Binary cross-entropy from logits, element-wise: RPN objectness and per-pixel mask loss.

    ``max(z, 0) - z * y + log(1 + exp(-|z|))`` for logit z and target y in [0, 1] (the stable
    form of ``-y log(sigmoid(z)) - (1 - y) log(1 - sigmoid(z))``).

    Args:
        reduction, name: as ``keras.losses.Loss``; the detector passes element-wise weights
            (sampled anchors, positive RoIs) and its own normaliser, so it needs ``"sum"``.

    Call:
        y_true: ``[...]`` float targets in [0, 1]; y_pred: ``[...]`` float logits.
    """

    def __init__(self, reduction: str = "sum", name: str = "sigmoid_cross_entropy", **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs)

    def call(self, y_true, y_pred):
        ops = keras.ops
        z = ops.cast(y_pred, "float32")
        y = ops.cast(y_true, "float32")
        return ops.maximum(z, 0.0) - z * y + ops.log1p(ops.exp(-ops.abs(z)))


@LOSSES.register(aliases=("softmax_ce",))
class SoftmaxCrossEntropyLoss(keras.losses.Loss):
    """Softmax cross-entropy from logits with integer labels: the box head's classification loss.

    Args:
        reduction, name: as :class:`SigmoidCrossEntropyLoss`.

    Call:
        y_true: ``[...]`` int class ids in ``[0, C)``; y_pred: ``[..., C]`` float logits.

    Returns:
        ``[...]`` ``logsumexp(z) - z[y]``.
    """

    def __init__(self, reduction: str = "sum", name: str = "softmax_cross_entropy", **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs)

    def call(self, y_true, y_pred):
        ops = keras.ops
        z = ops.cast(y_pred, "float32")
        picked = ops.sum(z * ops.one_hot(ops.cast(y_true, "int32"), ops.shape(z)[-1]), axis=-1)
        return ops.logsumexp(z, axis=-1) - picked
