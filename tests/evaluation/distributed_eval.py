"""One COCO evaluation of the tiny model under a strategy, in its own process (not a test file).

    python distributed_eval.py single|mirrored|multi_worker WEIGHTS.h5 OUT.json

``single`` builds the model with seeded random weights and saves them to WEIGHTS.h5; the other
modes load them. ``mirrored`` splits the CPU into two logical devices (before TensorFlow starts,
hence a process per run); ``multi_worker`` reads ``TF_CONFIG``. Every worker writes OUT.json
(``OUT.json.<worker>`` for workers other than the chief) with the batches it predicted and, on
the chief, the gathered detections and the metrics.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(mode: str, weights: str, out: str) -> None:
    fixtures_file = Path(__file__).parents[1] / "training_fixtures.py"
    spec = importlib.util.spec_from_file_location("fixtures", fixtures_file)
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    strategy = fixtures.strategy_for(mode)  # first: logical devices before TensorFlow starts
    import keras
    import tensorflow as tf

    from mrcnn_tf import build_model
    from mrcnn_tf.data.builder import build_dataset, build_input_pipeline
    from mrcnn_tf.evaluation import distributed
    from mrcnn_tf.evaluation.evaluator import CocoEvaluator
    from mrcnn_tf.training.strategy import is_chief

    cfg = fixtures.tiny_config(*fixtures.DISTRIBUTED_EVAL)
    keras.utils.set_random_seed(7)
    with strategy.scope():
        model = build_model(cfg)
        model.build()
    if mode == "single":
        model.save_weights(weights)
    else:
        model.load_weights(weights)
    predicted = []  # (batch index, replica) of every batch this worker ran
    original_fn, original_run = CocoEvaluator._predict_fn, distributed.run_sharded

    def predict_fn(self, model):  # the evaluator's own tf.function (input signature and all), plus
        fn = original_fn(self, model)  # the replica that ran it

        @tf.function(input_signature=fn.input_signature)
        def with_replica(inputs):
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            return {**fn(inputs), "replica": tf.fill([tf.shape(inputs["images"])[0]], replica)}

        return with_replica

    def recording(strategy, batches, predict):
        for index, batch, outputs in original_run(strategy, batches, predict):
            predicted.append([index, int(outputs.pop("replica")[0])])
            yield index, batch, outputs

    CocoEvaluator._predict_fn = predict_fn
    distributed.run_sharded = recording
    evaluator = CocoEvaluator(build_dataset(cfg, "val"), build_input_pipeline(cfg), strategy=strategy)
    results, image_ids, _ = evaluator.predict(model)
    worker, workers = distributed.worker_index_and_count(strategy)
    record = {
        "worker": worker,
        "workers": workers,
        "replicas": strategy.num_replicas_in_sync,
        "predicted": predicted,
    }
    if is_chief(strategy):
        record.update(results=results, image_ids=image_ids)
        Path(out).write_text(json.dumps(record))
    else:
        Path(f"{out}.{worker}").write_text(json.dumps(record))


if __name__ == "__main__":
    main(*sys.argv[1:4])
