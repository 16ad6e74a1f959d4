"""Evaluation on every replica and worker of a ``tf.distribute`` strategy.

The evaluation batches are numbered in dataset order; worker ``w`` of ``W`` takes the batches
``b`` with ``b % W == w``, and runs them ``R`` at a time (its ``R`` local replicas, one batch
each, through ``strategy.run``: each replica reads its own copy of the variables). The workers'
detections are then exchanged with one collective all-gather and put back in batch order, so the
chief scores exactly what one device would have produced (same detections, same order).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator

import numpy as np


def worker_index_and_count(strategy) -> tuple[int, int]:
    """``(this worker's index, number of workers)``; ``(0, 1)`` outside multi-worker mode."""
    extended = strategy.extended
    if not getattr(extended, "_in_multi_worker_mode", lambda: False)():
        return 0, 1
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec().as_dict()
    tasks = [("chief", i) for i in range(len(spec.get("chief", [])))]
    tasks += [("worker", i) for i in range(len(spec.get("worker", [])))]
    return tasks.index((resolver.task_type, resolver.task_id)), len(tasks)


def local_replicas(strategy) -> int:
    """How many replicas of ``strategy`` run on this worker."""
    try:
        return max(1, len(strategy.extended.worker_devices))
    except RuntimeError:  # the default strategy has no device list: one replica
        return 1


def run_sharded(
    strategy, batches: Iterable[tuple[int, dict]], predict: Callable[[dict], dict]
) -> Iterator[tuple[int, dict, dict]]:
    """``(batch index, batch, outputs)`` for this worker's share of ``batches``, as NumPy.

    Args:
        strategy: the ``tf.distribute`` strategy the model was built under.
        batches: ``(index, batch)`` in dataset order (every worker iterates the same ones and
            keeps ``index % W == w``; reading is cheap next to the model).
        predict: ``inputs -> outputs`` (a ``tf.function`` of the model), run on each replica.
    """
    worker, workers = worker_index_and_count(strategy)
    replicas = local_replicas(strategy)
    mine = ((i, b) for i, b in batches if i % workers == worker)
    while True:
        group = [item for _, item in zip(range(replicas), mine, strict=False)]
        if not group:
            return
        padded = group + [group[-1]] * (replicas - len(group))  # idle replicas repeat the last batch

        def value(ctx, padded=padded):
            keys = ("images", "image_size")
            return {k: padded[ctx.replica_id_in_sync_group % replicas][1][k] for k in keys}

        inputs = strategy.experimental_distribute_values_from_function(value)
        # A plain function: strategy.run clones a tf.function with its input signature, which
        # then refuses the per-replica values.
        outputs = strategy.experimental_local_results(strategy.run(lambda x: predict(x), args=(inputs,)))
        for (index, batch), out in zip(group, outputs, strict=False):
            yield index, {k: v.numpy() for k, v in batch.items()}, {k: v.numpy() for k, v in out.items()}


def all_gather_json(strategy, payload) -> list:
    """Every worker's ``payload`` (JSON-serialisable), in worker order, on every worker: one
    collective all-gather of the encoded bytes (a list of one element with one worker)."""
    import tensorflow as tf

    _, workers = worker_index_and_count(strategy)
    if workers == 1:
        return [payload]
    replicas = local_replicas(strategy)
    data = np.frombuffer(json.dumps(payload).encode("utf-8"), np.uint8).astype(np.int32)

    def first_local(ctx) -> bool:
        return ctx.replica_id_in_sync_group % replicas == 0

    values = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(data if first_local(ctx) else np.zeros([0], np.int32))
    )
    sizes = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant([len(data) if first_local(ctx) else 0], tf.int64)
    )
    gathered = strategy.gather(values, axis=0).numpy().astype(np.uint8).tobytes()
    lengths = [int(n) for n in strategy.gather(sizes, axis=0).numpy() if n > 0]
    out, start = [], 0
    for length in lengths:
        out.append(json.loads(gathered[start : start + length].decode("utf-8")))
        start += length
    if len(out) != workers:
        raise RuntimeError(f"evaluation gathered {len(out)} results from {workers} workers")
    return out
