#!/usr/bin/env python3
"""Input-pipeline throughput and peak memory, against the training step it has to feed.

    python benchmarks/data_pipeline.py                       # 1024x1024, 50 instances, batch 8
    python benchmarks/data_pipeline.py --train-config mask_rcnn_r50_fpn_1x_coco

Generates the synthetic dataset (1024x1024 images with 50 shapes each) once under the cache
folder, then measures, each case in a fresh process:

- ``coco``: the COCO reader (Pillow decode + RLE crops in ``tf.numpy_function``) + pipeline;
- ``tfrecord``: the same data converted to TFRecords (all in the TF graph) + pipeline;
- ``train``: training steps of a config on the same batches (images/s the model consumes).

Prints images/s, the peak resident memory of the process and its growth over the baseline
after imports (what the pipeline itself holds), and the pipeline/training ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _dataset(args):
    from mrcnn_tf.data.synthetic import SyntheticDataset, default_cache_dir

    root = Path(args.root) if args.root else default_cache_dir() / "bench-1024x50"
    return SyntheticDataset(
        num_images=args.num_images,
        image_size=args.image_size,
        min_instances=args.instances,
        max_instances=args.instances,
        root=root,
    )


def _pipeline(args, batch_size):
    from mrcnn_tf.data.pipeline import InputPipeline

    return InputPipeline(
        batch_size=batch_size,
        min_size=args.image_size,
        max_size=args.image_size,
        max_instances=max(args.instances, 1),
        mask_size=112,
    )


def run_case(args) -> dict:
    import tensorflow as tf  # noqa: F401  (the baseline includes TensorFlow)

    from mrcnn_tf.data.tfrecord import TFRecordDataset, write_tfrecords

    dataset = _dataset(args)
    prefix = dataset.root / "records" / "train"
    if args.case == "prepare":  # generation and conversion happen here, outside the measured cases
        if not Path(f"{prefix}-label_map.json").exists():
            write_tfrecords(dataset, prefix, num_shards=8)
        return {"case": "prepare"}
    if args.case == "tfrecord":
        dataset = TFRecordDataset(f"{prefix}-*.tfrecord")
    batch = args.train_batch if args.case == "train" else args.batch
    stream = _pipeline(args, batch)(dataset, training=True)
    baseline = _rss_mb()
    step = None
    if args.case == "train":
        import keras

        from mrcnn_tf import build_model
        from mrcnn_tf.config import load_config

        cfg = load_config(args.train_config, [f"model.num_classes={dataset.num_classes}"])
        model = build_model(cfg)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))

        def step(b):
            model.train_on_batch(b)

    iterator = iter(stream)
    for _ in range(args.warmup):
        b = next(iterator)
        if step:
            step(b)
    start = time.perf_counter()
    for _ in range(args.batches):
        b = next(iterator)
        if step:
            step(b)
    seconds = time.perf_counter() - start
    return {
        "case": args.case,
        "images_per_s": args.batches * batch / seconds,
        "batch": batch,
        "peak_rss_mb": _rss_mb(),
        "pipeline_mb": _rss_mb() - baseline,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--case", choices=["prepare", "coco", "tfrecord", "train"], help="run one case (internal)"
    )
    parser.add_argument("--cases", default="coco,tfrecord,train")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--num-images", type=int, default=24)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--train-config", default="mask_rcnn_r50_fpn_1x_coco")
    parser.add_argument("--train-batch", type=int, default=1)
    parser.add_argument("--root", help="where the synthetic dataset goes (default: the cache folder)")
    args = parser.parse_args()
    if args.case:
        if args.case == "train":
            args.batches, args.warmup = min(args.batches, 3), 1
        print(json.dumps(run_case(args)))
        return 0
    import tensorflow as tf

    print(f"python {sys.version.split()[0]}, tensorflow {tf.__version__}, {os.cpu_count()} CPUs")
    print(f"synthetic {args.image_size}x{args.image_size}, {args.instances} instances/image, masks 112x112")
    results = {}
    forward = [
        f"--{k.replace('_', '-')}={v}"
        for k, v in vars(args).items()
        if k not in ("case", "cases") and v is not None
    ]
    failed = False
    for case in ["prepare", *args.cases.split(",")]:
        out = subprocess.run(
            [sys.executable, __file__, "--case", case, *forward], capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            print(f"{case}: failed\n{out.stderr[-2000:]}")
            failed = True
            continue
        results[case] = json.loads(out.stdout.strip().splitlines()[-1])
        if case == "prepare":
            continue
        r = results[case]
        print(
            f"{case:>9}: {r['images_per_s']:7.2f} images/s (batch {r['batch']}), "
            f"peak RSS {r['peak_rss_mb']:7.0f} MB, growth over baseline {r['pipeline_mb']:6.0f} MB"
        )
    if "train" in results:
        for case in ("coco", "tfrecord"):
            if case in results:
                ratio = results[case]["images_per_s"] / results["train"]["images_per_s"]
                print(f"{case} pipeline / training consumption: {ratio:.1f}x (target >= 4x)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
