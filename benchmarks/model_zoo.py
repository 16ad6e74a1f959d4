"""The numbers of MODEL_ZOO.md: parameters, FLOPs and CPU latency of every zoo config.

For each bundled config (the ablation variants left out), build the model with random weights
and measure:

* parameters: all weights, and the trainable ones (frozen stem/res2 and frozen BN excluded);
* FLOPs of one inference at ``--size`` (default 1024×1024), counted by TensorFlow's profiler
  on the frozen graph of the serving path (backbone to masks, with the config's test-time
  proposal count and ``max_detections`` mask slots: the graph is static, so this is what every
  image costs). Reported as GMACs (multiply-adds) and GFLOPs (= 2 × GMACs; Detectron2's and
  fvcore's "FLOPs" are multiply-adds);
* latency of one inference at that size in this process (``tf.function``, float32, batch 1):
  median over ``--repeat`` calls after a warm-up (``--no-latency`` skips it).

    python benchmarks/model_zoo.py                      # every config, markdown rows
    python benchmarks/model_zoo.py --configs mask_rcnn_r50_fpn_1x_coco --repeat 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time


def measure(config: str, size: int, repeat: int, latency: bool) -> dict:
    """Parameters, FLOPs and (optionally) latency of one config's model."""
    import keras
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    import mrcnn_tf
    from mrcnn_tf.config import load_config

    keras.backend.clear_session()
    backbone = load_config(config)["model"]["backbone"]
    offline = ["model.backbone.weights=null"] if backbone.get("weights") == "imagenet" else []
    # Static shapes (the mask head on all max_detections slots): the profiler counts what a
    # busy image costs; with the default mask_slots: used, fewer detections cost less.
    cfg = load_config(config, [*offline, "model.mask_slots=all"])
    model = mrcnn_tf.build_model(cfg)
    model.build()
    total = model.count_params()
    trainable = sum(math.prod(v.shape) for v in model.trainable_weights)

    fn = tf.function(lambda x: model({"images": x}))
    concrete = fn.get_concrete_function(tf.TensorSpec([1, size, size, 3], tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    flops = tf.compat.v1.profiler.profile(graph=frozen.graph, options=options).total_float_ops
    record = {
        "config": config,
        "backbone": backbone.get("application") or f"ResNet-{backbone.get('depth')}",
        "params_m": total / 1e6,
        "trainable_params_m": trainable / 1e6,
        "size": size,
        "gmacs": flops / 2e9,
        "gflops": flops / 1e9,
    }
    if latency:
        image = tf.random.uniform([1, size, size, 3], 0, 255, seed=0)
        started = time.perf_counter()
        fn(image)["masks"].numpy()
        record["first_call_s"] = time.perf_counter() - started
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            fn(image)["masks"].numpy()
            times.append(time.perf_counter() - started)
        record["latency_s"] = statistics.median(times)
        record["latency_min_s"], record["latency_max_s"] = min(times), max(times)
    return record


def _num(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def row(r: dict) -> str:
    latency = "—" if "latency_s" not in r else f"{r['latency_s']:.2f} s"
    return (
        f"| `{r['config']}` | {r['backbone']} | {r['params_m']:.1f} M ({r['trainable_params_m']:.1f} M) | "
        f"{_num(r['gmacs'])} / {_num(r['gflops'])} | {latency} |"
    )


def main(argv: list[str] | None = None) -> int:
    from mrcnn_tf.config import CONFIG_ROOT, list_configs

    zoo = [
        str(p.relative_to(CONFIG_ROOT).with_suffix(""))
        for p in list_configs()
        if p.parent.name != "ablations"
    ]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", nargs="+", default=zoo)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--json", help="also write the records here")
    args = parser.parse_args(argv)

    records = []
    size = f"{args.size}²"
    print(
        f"| config | backbone | parameters (trainable) | GMACs / GFLOPs at {size} | CPU latency at {size} |"
    )
    print("| --- | --- | ---: | ---: | ---: |")
    for config in args.configs:
        records.append(measure(config, args.size, args.repeat, not args.no_latency))
        print(row(records[-1]), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(records, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
