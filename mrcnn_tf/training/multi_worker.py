"""A shim that lets Keras 3 ``model.fit`` run under ``MultiWorkerMirroredStrategy``.

Upstream bug keras-team/keras#20585 (Keras 3.x with the TensorFlow backend, still present in
Keras 3.15) breaks ``fit`` in a multi-worker cluster in two places:

1. ``TensorFlowTrainer._maybe_symbolic_build`` takes the first batch of the *distributed*
   dataset to build the model symbolically and averages its ``PerReplica`` values over the
   replicas with ``strategy.reduce("MEAN", batch)``. Under a multi-worker strategy that
   reduction of a nested batch fails with "Attempt to convert a value (PerReplica: ...) to a
   Tensor" (and would be a cross-worker collective just to learn shapes).
2. ``reduce_per_replica`` reduces every logged metric with
   ``strategy.reduce("MEAN", value, axis=0)``; metric results are scalars, and reducing a
   scalar along axis 0 fails. (With one replica per worker the values are plain tensors,
   which the collective also needs placed on the worker's device.)

:func:`install` patches both, narrowly: (1) builds from the first local value of each
``PerReplica`` in that batch (a batch of the right per-replica shape, no collective), and (2) reduces scalars
with ``axis=None`` under a multi-worker strategy. Everything else is delegated to Keras
unchanged. ``tests/training/test_multi_worker.py`` runs a real two-process cluster with and
without the shim, so an upstream fix (or a Keras change that breaks the shim) shows up as a
test failure that says so.
"""

from __future__ import annotations

import functools

_INSTALLED = False


def _first_local_value(value):
    import tensorflow as tf

    if isinstance(value, tf.distribute.DistributedValues):
        return value.values[0]
    return value


def install() -> bool:
    """Apply the shim (idempotent). Returns True when this call installed it."""
    global _INSTALLED
    if _INSTALLED:
        return False
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    original_reduce = tf_trainer.reduce_per_replica

    @functools.wraps(original_build)
    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is not None and iterator is not None:
            for _, _, data_iterator in iterator:
                data_batch = tree.map_structure(_first_local_value, next(data_iterator))
                break
            iterator = None
        return original_build(self, iterator=iterator, data_batch=data_batch)

    @functools.wraps(original_reduce)
    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):

            def mean(value):
                if not isinstance(value, tf.distribute.DistributedValues):
                    # one replica per worker: a plain tensor, which the collective needs on a device
                    with tf.device(strategy.extended.worker_devices[0]):
                        value = tf.identity(value)
                axis = 0 if value.shape.rank else None
                return strategy.reduce("MEAN", value, axis=axis)

            return tree.map_structure(mean, values)
        return original_reduce(values, strategy, reduction)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    _INSTALLED = True
    return True
