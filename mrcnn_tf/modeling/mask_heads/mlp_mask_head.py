"""A fully connected mask head: the paper's MLP alternative to the FCN (Table 2e)."""

from __future__ import annotations

import keras

from mrcnn_tf.modeling.layers import xavier_fill
from mrcnn_tf.registries import MASK_HEADS


@MASK_HEADS.register(injected=("num_classes",))
class MLPMaskHead(keras.layers.Layer):
    """``num_fcs`` fully connected layers, then one to ``(2S)² × K`` mask logits.

    He et al. 2017, Table 2e: "fc 1024 -> fc 1024 -> fc 80·28²" on the 14×14 RoI features,
    1.5–2.1 mask AP below the FCN head (:class:`FCNMaskHead`), because flattening loses the
    spatial layout that convolutions keep. Same inputs and outputs as the FCN head, so it is
    swapped in by name (``model.mask_head: {type: MLPMaskHead}``).

    Args:
        num_classes: K foreground classes (the detector supplies it).
        num_fcs, fc_dim: the hidden fully connected layers (ReLU).
        class_agnostic: one mask for all classes.

    Call:
        roi_features: ``[B, N, S, S, C]`` float32 (S static); classes: ``[B, N]`` int32 or None,
        accepted for the mask-head contract and unused (every class's channel is computed).

    Returns:
        ``[B, N, 2S, 2S, K or 1]`` float32 mask logits, box-relative (see ``ops.masks``).
    """

    def __init__(
        self,
        num_classes: int,
        num_fcs: int = 2,
        fc_dim: int = 1024,
        class_agnostic: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_fcs < 0 or fc_dim < 1:
            raise ValueError(f"MLPMaskHead needs num_fcs >= 0 and fc_dim >= 1, got {num_fcs}, {fc_dim}")
        self.num_classes = int(num_classes)
        self.num_fcs = int(num_fcs)
        self.fc_dim = int(fc_dim)
        self.class_agnostic = bool(class_agnostic)
        self.channels = 1 if class_agnostic else self.num_classes
        self.fcs = [
            keras.layers.Dense(fc_dim, activation="relu", kernel_initializer=xavier_fill(), name=f"fc{i + 1}")
            for i in range(num_fcs)
        ]
        self.predictor = None  # its width depends on S: made in build

    def build(self, input_shape):
        _, _, s, _, c = input_shape
        if s is None:
            raise ValueError("MLPMaskHead needs RoI features of a static size [B, N, S, S, C]")
        self.size = 2 * int(s)
        dim = int(s) * int(s) * int(c)
        for fc in self.fcs:
            fc.build((None, dim))
            dim = self.fc_dim
        self.predictor = keras.layers.Dense(
            self.size * self.size * self.channels,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
            name="predictor",
        )
        self.predictor.build((None, dim))

    def call(self, roi_features, training=None, classes=None):
        ops = keras.ops
        shape = ops.shape(roi_features)
        x = ops.reshape(roi_features, (-1, shape[2] * shape[3] * shape[4]))
        for fc in self.fcs:
            x = fc(x)
        x = self.predictor(x)
        return ops.reshape(x, (shape[0], shape[1], self.size, self.size, self.channels))

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            num_fcs=self.num_fcs,
            fc_dim=self.fc_dim,
            class_agnostic=self.class_agnostic,
        )
        return config
