"""COCO AP of the same trained weights in float32 and in bfloat16 (issue #7's accuracy check).

Evaluates a run's weights on the config's validation split twice, each in a fresh process:
once in float32 and once under Keras's ``mixed_bfloat16`` policy (bfloat16 convolutions and
matmuls, float32 variables, float32 softmax/NMS where the model casts), then prints both and
the difference in AP points::

    python benchmarks/bf16_accuracy.py --config mask_rcnn_r18_fpn_synthetic --weights runs/demo
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys
import keras
policy, config, weights, out = sys.argv[1:5]
keras.mixed_precision.set_global_policy(policy)
from mrcnn_tf.cli_common import model_with_weights
from mrcnn_tf.config import load_config
from mrcnn_tf.data.builder import build_dataset, build_input_pipeline
from mrcnn_tf.evaluation.evaluator import CocoEvaluator
cfg = load_config(config, sys.argv[5:])
model, _ = model_with_weights(cfg, weights)
result = CocoEvaluator(build_dataset(cfg, "val"), build_input_pipeline(cfg)).evaluate(model, out)
json.dump({k: result[k] for k in ("bbox", "segm")}, open(out + "/ap.json", "w"))
"""


def evaluate(policy: str, config: str, weights: str, overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, "-c", CHILD, policy, config, weights, out, *overrides]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"evaluation under {policy} failed:\n{result.stderr[-3000:]}")
        return json.loads((Path(out) / "ap.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True)
    parser.add_argument("--weights", required=True, help="a run directory or .weights.h5 file")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    fp32 = evaluate("float32", args.config, args.weights, args.set)
    bf16 = evaluate("mixed_bfloat16", args.config, args.weights, args.set)
    print("| | AP | AP50 | AP75 |\n| --- | ---: | ---: | ---: |")
    for iou_type in ("bbox", "segm"):
        for name, result in (("float32", fp32), ("bfloat16", bf16)):
            m = result[iou_type]
            print(
                f"| {iou_type} {name} | {m['AP'] * 100:.2f} | {m['AP50'] * 100:.2f} | {m['AP75'] * 100:.2f} |"
            )
        delta = (bf16[iou_type]["AP"] - fp32[iou_type]["AP"]) * 100
        print(f"| {iou_type} bfloat16 − float32 | {delta:+.2f} points | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
