#!/usr/bin/env python3
"""Wall time of COCO evaluation on one device, under MirroredStrategy and on two workers.

    python benchmarks/distributed_eval.py                       # demo model, 64 synthetic images
    python benchmarks/distributed_eval.py --images 256 --modes single multi_worker

The same seeded random weights are evaluated (``CocoEvaluator.evaluate``: predict, gather the
detections on the chief, pycocotools once) in a fresh process per mode:

* ``single``: the default strategy, one device;
* ``mirrored``: ``MirroredStrategy`` over two logical CPU devices (one process);
* ``multi_worker``: ``MultiWorkerMirroredStrategy``, two worker processes on localhost.

Reported per mode: the evaluation's wall time (after building the model and one warm-up batch,
so tracing is not counted; the slowest worker for ``multi_worker``), the whole processes' wall
time, the number of detections and the box/mask AP, which must equal one device's (the script
fails otherwise). On one machine the replicas and workers share its cores: this measures the
overhead of sharding and gathering, not scaling; on a multi-GPU machine each replica has its own.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
MODES = ("single", "mirrored", "multi_worker")


def _strategy(mode: str):
    import tensorflow as tf

    from mrcnn_tf.training.strategy import build_strategy

    if mode == "mirrored":  # before TensorFlow runs anything
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    return build_strategy("default" if mode == "single" else "multi_worker")


def run_mode(args) -> None:
    """One process of one mode: writes its record to ``args.out`` (``.<worker>`` if not chief)."""
    strategy = _strategy(args.run)
    import keras

    from mrcnn_tf import build_model
    from mrcnn_tf.config import load_config
    from mrcnn_tf.data.builder import build_dataset, build_input_pipeline
    from mrcnn_tf.evaluation import distributed
    from mrcnn_tf.evaluation.evaluator import CocoEvaluator

    cfg = load_config(args.config, _overrides(args))
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model(cfg)
        model.build()
    if args.run == "single":
        model.save_weights(args.weights)
    else:
        model.load_weights(args.weights)
    pipeline = build_input_pipeline(cfg)
    evaluator = CocoEvaluator(build_dataset(cfg, "val"), pipeline, strategy=strategy)
    evaluator.max_images = 4 * pipeline.batch_size  # warm-up: traces the evaluator's function
    evaluator.predict(model)
    evaluator.max_images = None
    start = time.perf_counter()
    result = evaluator.evaluate(model)
    seconds = time.perf_counter() - start
    worker, _ = distributed.worker_index_and_count(strategy)
    record = {"worker": worker, "replicas": strategy.num_replicas_in_sync, "evaluate_s": seconds}
    if evaluator.is_chief():
        record.update(
            num_images=result["num_images"],
            num_detections=result["num_detections"],
            box_ap=result["bbox"]["AP"],
            mask_ap=result.get("segm", {}).get("AP"),
        )
    Path(args.out if worker == 0 else f"{args.out}.{worker}").write_text(json.dumps(record))


def _overrides(args) -> list[str]:
    return [
        f"data.val.num_images={args.images}",
        "model.detection_generator.score_threshold=0.0",  # every detection slot is a result
        *args.set,
    ]


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    for s in socks:  # all bound at once: no port handed out twice
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def measure(args, mode: str, weights: Path, out: Path) -> dict:
    """Run ``mode`` in fresh processes; its chief's record plus the processes' wall time."""
    argv = [sys.executable, __file__, "--run", mode, "--weights", str(weights), "--out", str(out)]
    argv += ["--config", args.config, "--images", str(args.images)]
    for value in args.set:
        argv += ["--set", value]
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    envs = [env]
    if mode == "multi_worker":
        cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
        envs = [
            {**env, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
            for i in range(2)
        ]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(argv, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for e in envs
    ]
    for proc in procs:
        log, _ = proc.communicate(timeout=3600)
        if proc.returncode:
            raise SystemExit(f"{mode} failed (exit {proc.returncode}):\n{log[-3000:]}")
    record = json.loads(out.read_text())
    others = [json.loads(Path(f"{out}.{i}").read_text()) for i in range(1, len(procs))]
    record["evaluate_s"] = max([record["evaluate_s"], *(o["evaluate_s"] for o in others)])
    record["processes_s"] = time.perf_counter() - start
    record["mode"] = mode
    return record


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="mask_rcnn_r18_fpn_synthetic")
    parser.add_argument("--images", type=int, default=64, help="validation images")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--set", action="append", default=[], help="extra config override (repeatable)")
    parser.add_argument("--json", help="also write the records here")
    parser.add_argument("--run", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        return run_mode(args)
    modes = ["single", *(m for m in args.modes if m != "single")]  # single writes the weights
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.weights.h5"
        records = [measure(args, mode, weights, Path(tmp) / f"{mode}.json") for mode in modes]
    print(f"{args.config}, {args.images} images, {os.cpu_count()} CPUs")
    header = ("mode", "replicas", "evaluate", "processes", "detections", "box AP", "mask AP")
    print("{:14s} {:>8s} {:>10s} {:>10s} {:>10s} {:>7s} {:>7s}".format(*header))
    for r in records:
        mask_ap = "-" if r["mask_ap"] is None else f"{r['mask_ap']:.3f}"
        print(
            f"{r['mode']:14s} {r['replicas']:8d} {r['evaluate_s']:9.2f}s {r['processes_s']:9.1f}s "
            f"{r['num_detections']:10d} {r['box_ap']:7.3f} {mask_ap:>7s}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2))
    base = records[0]
    for r in records[1:]:
        same = (r["num_detections"], r["box_ap"], r["mask_ap"]) == (
            base["num_detections"],
            base["box_ap"],
            base["mask_ap"],
        )
        if not same:
            raise SystemExit(f"{r['mode']} evaluated differently from one device")


if __name__ == "__main__":
    main()
