#!/usr/bin/env python3
"""A converted torchvision Mask R-CNN against torchvision itself: same weights, same image, one run.

    python benchmarks/converted_vs_torchvision.py [--checkpoint maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth]
        [--image PHOTO] [--min-size 800] [--max-size 1333] [--repeat 5] [--torch-python PY]

Without ``--checkpoint`` a seeded random ``maskrcnn_resnet50_fpn`` is made by the parity tests'
reference script (the numbers do not depend on the weights' values); without ``--image`` a
synthetic 640×480 photo is written and resized like a real one. Each side runs in a fresh
process, one after the other, and reports: the first call (from the start of the work: model
built, weights loaded, first image done), the median of ``--repeat`` further calls, and the
process's peak resident memory. torchvision runs in the torch environment
(``python3 dev.py test-torch`` creates ``.venv-torch``); ours is ``mrcnn-tf convert`` + the
predictor of ``mrcnn-tf predict`` (in-graph resize, ``tf.function``; masks stay box-relative,
torchvision pastes them at full size).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "benchmarks" / "peers"


def ours(run: str, image: str, repeat: int) -> dict:
    """Our side (runs in its own process: ``--ours RUN``)."""
    start = time.perf_counter()
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(PEERS))
    from peer_timing import measure

    from mrcnn_tf.cli_common import category_map_for, config_for, model_with_weights
    from mrcnn_tf.data.builder import build_input_pipeline
    from mrcnn_tf.export.predictor import Predictor
    from mrcnn_tf.export.saved_model import Preprocessing

    cfg = config_for(None, run, [])
    classes = category_map_for(cfg, run)
    model, _ = model_with_weights(cfg, run, num_classes=classes.num_classes)
    predictor = Predictor.from_model(model, Preprocessing.from_pipeline(build_input_pipeline(cfg)), classes)
    pixels = np.asarray(Image.open(image).convert("RGB"))
    record, out = measure("mrcnn_tf", start, lambda: predictor(pixels), repeat)
    record["num_detections"] = int(np.asarray(out["num_detections"]).reshape(-1)[0])
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", help="a torchvision maskrcnn_resnet50_fpn .pth (default: seeded random)"
    )
    parser.add_argument("--image", help="an RGB photo (default: a synthetic 640x480 one)")
    parser.add_argument("--min-size", type=int, default=800)
    parser.add_argument("--max-size", type=int, default=1333)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--torch-python", default=str(ROOT / ".venv-torch" / "bin" / "python"))
    parser.add_argument("--json", help="also write the two records here")
    parser.add_argument("--ours", help=argparse.SUPPRESS)  # internal: run our side in this process
    args = parser.parse_args()
    if args.ours:
        print(json.dumps(ours(args.ours, args.image, args.repeat)))
        return 0
    if not Path(args.torch_python).exists():
        sys.exit(f"no torch environment at {args.torch_python}: `python3 dev.py test-torch` makes one")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image = args.image
        if image is None:
            sys.path.insert(0, str(ROOT / "tests"))
            from parity_helpers import write_photo

            image = str(tmp / "photo.png")
            write_photo(Path(image), 480, 640)
        checkpoint = args.checkpoint
        if checkpoint is None:
            reference = ROOT / "tests" / "torch_reference" / "maskrcnn_reference.py"
            subprocess.run(
                [args.torch_python, str(reference), "--image", image, "--out", str(tmp / "ref")],
                check=True, capture_output=True,
            )  # fmt: skip
            checkpoint = str(tmp / "ref" / "model.pth")
        sizes = [
            "--set",
            f"data.pipeline.min_size={args.min_size}",
            f"data.pipeline.max_size={args.max_size}",
        ]
        convert = [sys.executable, "-m", "mrcnn_tf.cli", "convert", "torchvision", checkpoint]
        subprocess.run(
            [*convert, "--out", str(tmp / "run"), *sizes], check=True, capture_output=True, env=env
        )
        records = []
        common = ["--image", image, "--repeat", str(args.repeat)]
        sizes = ["--min-size", str(args.min_size), "--max-size", str(args.max_size)]
        for cmd in (
            [args.torch_python, str(PEERS / "tv_converted.py"), "--checkpoint", checkpoint, *common, *sizes],
            [sys.executable, __file__, "--ours", str(tmp / "run"), *common],
        ):
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                sys.exit(f"{cmd[1]} failed:\n{done.stderr[-3000:]}")
            records.append(json.loads(done.stdout.strip().splitlines()[-1]))
    tv, us = records
    print(f"{'':<12} {'first call':>11} {'median':>9} {'peak RSS':>10} {'detections':>11}")
    for record in records:
        print(
            f"{record['case']:<12} {record['first_call_s']:>10.2f}s {record['median_s']:>8.3f}s "
            f"{record['peak_rss_mb']:>8.0f}MB {record['num_detections']:>11}"
        )
    print(
        f"ratio (ours / torchvision): latency {us['median_s'] / tv['median_s']:.2f}, first call "
        f"{us['first_call_s'] / tv['first_call_s']:.2f}, memory {us['peak_rss_mb'] / tv['peak_rss_mb']:.2f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
