"""The FPN box head: optional convs, then fully connected layers (Lin et al. 2017)."""

from __future__ import annotations

import keras

from mrcnn_tf.modeling.layers import ConvTower, xavier_fill
from mrcnn_tf.modeling.roi_heads.box_predictor import BoxPredictor
from mrcnn_tf.registries import BOX_HEADS


@BOX_HEADS.register(injected=("num_classes",))
class FCBoxHead(keras.layers.Layer):
    """``num_convs`` 3×3 convs, then ``num_fcs`` fully connected layers, then the predictors.

    The paper's FPN head is two 1024-d FC layers ("2fc"); ``num_convs=4, num_fcs=1, norm="gn"``
    is the "4conv1fc" GroupNorm head of Wu & He (2018). Initialisation as Detectron2:
    ``c2_xavier_fill`` for FC layers, ``c2_msra_fill`` for convs.

    Args:
        num_classes: K foreground classes (the detector supplies it).
        num_convs, conv_dim, num_fcs, fc_dim: see above.
        norm: norm after each conv (``none``, ``gn``, ``bn``...; convs have no bias with a norm).
        class_agnostic: one set of box deltas for all classes.

    Call:
        roi_features: ``[B, N, S, S, C]`` float32 from the box RoI aligner (S = 7).

    Returns:
        ``{"logits": [B, N, K + 1], "deltas": [B, N, K or 1, 4], "features": [B, N, fc_dim]}``.
    """

    def __init__(
        self,
        num_classes: int,
        num_convs: int = 0,
        conv_dim: int = 256,
        num_fcs: int = 2,
        fc_dim: int = 1024,
        norm: str = "none",
        class_agnostic: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_convs < 0 or num_fcs < 0 or num_convs + num_fcs == 0:
            raise ValueError(f"FCBoxHead needs at least one conv or FC layer, got {num_convs=} {num_fcs=}")
        self.num_classes = int(num_classes)
        self.num_convs = int(num_convs)
        self.conv_dim = int(conv_dim)
        self.num_fcs = int(num_fcs)
        self.fc_dim = int(fc_dim)
        self.norm = norm
        self.class_agnostic = bool(class_agnostic)
        self.tower = ConvTower(num_convs, conv_dim, norm, name="tower")
        self.fcs = [
            keras.layers.Dense(fc_dim, activation="relu", kernel_initializer=xavier_fill(), name=f"fc{i + 1}")
            for i in range(num_fcs)
        ]
        self.predictor = BoxPredictor(num_classes, class_agnostic, name="predictor")

    def build(self, input_shape):
        _, n, s, _, c = input_shape
        self.tower.build((None, s, s, c))
        shape = self.tower.compute_output_shape((None, s, s, c))
        dim = shape[1] * shape[2] * shape[3]
        for fc in self.fcs:
            fc.build((None, dim))
            dim = self.fc_dim
        self.predictor.build((None, n, dim))

    def extract(self, roi_features, training=None):
        """Per-RoI feature vectors ``[B, N, D]`` from ``[B, N, S, S, C]`` RoI features."""
        ops = keras.ops
        shape = ops.shape(roi_features)
        x = self.tower(ops.reshape(roi_features, (-1, shape[2], shape[3], shape[4])), training=training)
        x = ops.reshape(x, (shape[0], shape[1], -1))
        for fc in self.fcs:
            x = fc(x)
        return x

    def call(self, roi_features, training=None):
        features = self.extract(roi_features, training=training)
        logits, deltas = self.predictor(features)
        return {"logits": logits, "deltas": deltas, "features": features}

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            num_convs=self.num_convs,
            conv_dim=self.conv_dim,
            num_fcs=self.num_fcs,
            fc_dim=self.fc_dim,
            norm=self.norm,
            class_agnostic=self.class_agnostic,
        )
        return config
