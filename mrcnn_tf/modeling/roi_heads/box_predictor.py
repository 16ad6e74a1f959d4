"""The final layers of every box head: class logits and class-specific box deltas."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class BoxPredictor(keras.layers.Layer):
    """Class logits for K+1 classes (0 = background) and box deltas per foreground class.

    Initialisation follows Detectron2: logits normal(0, 0.01), deltas normal(0, 0.001), zero
    biases.

    Args:
        num_classes: K foreground classes.
        class_agnostic: one set of deltas for all classes instead of one per class.

    Call:
        features: ``[B, N, D]`` float per-RoI features.

    Returns:
        ``(logits [B, N, K + 1], deltas [B, N, K or 1, 4])`` float32; deltas are
        ``[dy, dx, dh, dw]`` with the box weights ``(10, 10, 5, 5)`` (Detectron2 omits the
        background class's deltas, as we do).
    """

    def __init__(self, num_classes: int, class_agnostic: bool = False, **kwargs):
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"BoxPredictor needs num_classes >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.class_agnostic = bool(class_agnostic)
        self.num_box_classes = 1 if class_agnostic else self.num_classes
        self.cls_score = keras.layers.Dense(
            self.num_classes + 1,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            name="cls_score",
        )
        self.bbox_pred = keras.layers.Dense(
            4 * self.num_box_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
            name="bbox_pred",
        )

    def build(self, input_shape):
        self.cls_score.build(input_shape)
        self.bbox_pred.build(input_shape)

    def call(self, features):
        shape = keras.ops.shape(features)
        logits = self.cls_score(features)
        deltas = keras.ops.reshape(self.bbox_pred(features), (shape[0], shape[1], self.num_box_classes, 4))
        return logits, deltas

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, class_agnostic=self.class_agnostic)
        return config
