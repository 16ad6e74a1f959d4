"""Plain Keras ``fit`` of a tiny Dense model in a MultiWorkerMirroredStrategy cluster (``TF_CONFIG``).

    python keras_multi_worker_probe.py none|build_only|all

Applies none, the first half, or all of :mod:`mrcnn_tf.training.multi_worker` and prints
``FIT OK`` or the error (not a test file; driven by test_distributed.py).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

from mrcnn_tf.training import multi_worker

patch = sys.argv[1]
if patch != "none":
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original_reduce = tf_trainer.reduce_per_replica
    multi_worker.install()
    if patch == "build_only":
        tf_trainer.reduce_per_replica = original_reduce
strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", metrics=["mae"])
x = np.arange(48, dtype="float32").reshape(16, 3) / 48
ds = tf.data.Dataset.from_tensor_slices((x, x.sum(1, keepdims=True))).batch(4).repeat()
try:
    model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)
    print("FIT OK")
except Exception as exc:  # noqa: BLE001 - the probe reports whatever Keras raises
    print(f"FIT FAILED: {type(exc).__name__}: {exc}")
