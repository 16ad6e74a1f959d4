"""Optimizers whose weight decay skips biases and normalization parameters.

Detectron2 and Model Garden train Mask R-CNN without weight decay on biases and on the
scale/offset of norm layers. Keras optimizers decay every variable unless told otherwise, so
these registered subclasses exclude, when they are built, every variable named ``bias``,
``gamma`` or ``beta`` (the names Keras gives to biases and to the parameters of
``BatchNormalization``, ``GroupNormalization`` and ``LayerNormalization``).

Keras applies weight decay in decoupled form, ``w -= lr * weight_decay * w`` at each step
(outside the momentum buffer); with SGD this differs from Detectron2's L2-in-the-gradient
only through momentum, and the usual values (1e-4 for SGD, 0.05 for AdamW) carry over.
"""

from __future__ import annotations

import keras

from mrcnn_tf.registries import OPTIMIZERS

#: Variable names that never get weight decay.
NO_DECAY_NAMES = frozenset({"bias", "gamma", "beta"})


def decays(variable) -> bool:
    """Whether weight decay applies to ``variable`` (not a bias or norm parameter)."""
    return variable.name.split("/")[-1].split(":")[0] not in NO_DECAY_NAMES


class _SkipNormAndBias:
    def build(self, variables):
        excluded = [v for v in variables if not decays(v)]
        if excluded:
            self.exclude_from_weight_decay(var_list=excluded)
        super().build(variables)


@OPTIMIZERS.register(aliases=("sgd",))
class SGD(_SkipNormAndBias, keras.optimizers.SGD):
    """SGD with momentum (the detection default); no weight decay on biases and norm parameters.

    Args:
        momentum, nesterov: see ``keras.optimizers.SGD``.
        weight_decay: decoupled decay per step (Detectron2: 1e-4).
        clipnorm, global_clipnorm, clipvalue: optional gradient clipping.
        learning_rate: replaced by the config's ``schedule`` when the trainer builds it.
    """

    def __init__(
        self,
        learning_rate: float = 0.02,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float | None = 1e-4,
        clipnorm: float | None = None,
        global_clipnorm: float | None = None,
        clipvalue: float | None = None,
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay or None,
            clipnorm=clipnorm,
            global_clipnorm=global_clipnorm,
            clipvalue=clipvalue,
            **kwargs,
        )


@OPTIMIZERS.register(aliases=("adamw",))
class AdamW(_SkipNormAndBias, keras.optimizers.AdamW):
    """AdamW (Loshchilov and Hutter 2019); no weight decay on biases and norm parameters.

    Args:
        weight_decay: decoupled decay (0.05 is common for detection).
        beta_1, beta_2, epsilon: see ``keras.optimizers.AdamW``.
        clipnorm, global_clipnorm, clipvalue: optional gradient clipping.
        learning_rate: replaced by the config's ``schedule`` when the trainer builds it.
    """

    def __init__(
        self,
        learning_rate: float = 1e-4,
        weight_decay: float = 0.05,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        clipnorm: float | None = None,
        global_clipnorm: float | None = None,
        clipvalue: float | None = None,
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            clipnorm=clipnorm,
            global_clipnorm=global_clipnorm,
            clipvalue=clipvalue,
            **kwargs,
        )
