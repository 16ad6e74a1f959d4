"""One training run of the tiny model under a strategy, in its own process (not a test file).

    python distributed_run.py single|mirrored|multi_worker WORKDIR OUT.npz

``mirrored`` splits the CPU into two logical devices (only possible before TensorFlow starts,
hence a process per run); ``multi_worker`` reads ``TF_CONFIG``. The weights after training go
to ``OUT.npz`` by variable path.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(mode: str, workdir: str, out: str) -> None:
    import numpy as np

    fixtures_file = Path(__file__).parents[1] / "training_fixtures.py"
    spec = importlib.util.spec_from_file_location("fixtures", fixtures_file)
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    strategy = fixtures.strategy_for(mode)  # first: logical devices before TensorFlow starts
    from mrcnn_tf.training.trainer import train

    cfg = fixtures.tiny_config(
        "data.val.num_images=3",  # the final evaluation runs on every replica and worker
        "model.backbone.norm=sync_bn",
        "data.pipeline.batch_size=4",
        "data.train.num_images=8",
        "train.max_steps=2",
        "train.steps_per_loop=2",
        "runtime.deterministic=true",
    )
    result = train(cfg, workdir, strategy=strategy, verbose=0)
    weights = {w.path: np.asarray(w.numpy()) for w in result["model"].weights}
    weights["__loss__"] = np.asarray(result["loss_history"]["loss"])
    np.savez(out, **weights)
    print(f"replicas {strategy.num_replicas_in_sync} step {result['step']}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
