"""``tf.distribute`` strategies by name, and which worker is the chief."""

from __future__ import annotations

import json
import os

from registry.errors import ConfigError

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")


def build_strategy(name: str = "auto", tpu: str | None = None):
    """A ``tf.distribute.Strategy``.

    Args:
        name: ``auto`` (MirroredStrategy over all local GPUs when there are two or more, else the
            default strategy on the one device), ``default``/``one_device``, ``mirrored`` (all
            local GPUs, or the CPU), ``multi_worker`` (``MultiWorkerMirroredStrategy``; the
            cluster comes from the ``TF_CONFIG`` environment variable; installs the Keras shim
            of :mod:`mrcnn_tf.training.multi_worker`) or ``tpu``.
        tpu: the TPU address for ``tpu`` (default: the local TPU).

    Raises:
        ConfigError: an unknown name, or ``multi_worker`` with a ``TF_CONFIG`` that is not JSON.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ConfigError(
            f"unknown strategy '{name}'; choose one of {', '.join(STRATEGIES)}", key="runtime.strategy"
        )
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name in ("default", "one_device"):
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        raw = os.environ.get("TF_CONFIG")
        if raw:
            try:
                json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"TF_CONFIG is not valid JSON ({exc}); see the README's multi-worker section"
                ) from exc
        from mrcnn_tf.training import multi_worker

        multi_worker.install()
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy) -> bool:
    """True on the worker that writes checkpoints, logs and evaluation results (worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)():
        return True
    return resolver.task_type in (None, "chief") or (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )
