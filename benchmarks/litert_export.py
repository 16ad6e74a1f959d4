"""LiteRT (TFLite) exports of one run: size, CPU latency in the interpreter and COCO AP, against
the SavedModel of the same weights (issue 21's table).

For each ``--quantize`` mode the run is exported with ``mrcnn-tf export --format tflite`` (a child
process each, as a user would), then every image of the config's validation split is predicted
with the LiteRT interpreter (letterboxed into the fixed input, boxes mapped back) and scored with
pycocotools; the SavedModel (``export --target any``) is scored the same way on the same images.
Latency: the median of ``--repeat`` calls on the first validation image after two warm-up calls,
in this process, ``--threads`` interpreter threads (default: every core)::

    python benchmarks/litert_export.py --weights runs/demo                 # the demo's run
    python benchmarks/litert_export.py --weights runs/demo --quantize none int8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported (children too)


def export(weights: str, out: Path, extra: list[str], sets: list[str]) -> None:
    argv = [sys.executable, "-m", "mrcnn_tf.cli", "export", "--weights", weights, "--out", str(out), *extra]
    if sets:
        argv += ["--set", *sets]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"export {' '.join(extra)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def score(predictor, images: list[tuple[Path, int]], ground_truth: dict, repeat: int) -> dict:
    """AP (bbox, segm) over ``images`` and the median latency on the first one."""
    from mrcnn_tf.evaluation.coco_metrics import coco_metrics
    from mrcnn_tf.export.predictor import find_images, predict_images, read_image

    first = read_image(images[0][0])
    for _ in range(2):
        predictor(first)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        predictor(first)
        times.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as out:
        files = find_images([path for path, _ in images])
        ids = {path.name: image_id for path, image_id in images}
        predict_images(predictor, files, out, score_threshold=0.0, image_ids=ids, progress=False)
        results = json.loads((Path(out) / "predictions.json").read_text())
    metrics, _ = coco_metrics(ground_truth, results)
    return {
        "latency_ms": statistics.median(times) * 1000,
        "bbox_AP": metrics["bbox"]["AP"] * 100,
        "segm_AP": metrics["segm"]["AP"] * 100,
        "detections": len(results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", required=True, help="a run directory (its config.yaml is used)")
    parser.add_argument("--quantize", nargs="+", default=["none", "float16", "int8"])
    parser.add_argument("--image-size", type=int, help="the LiteRT input size (default: the config's)")
    parser.add_argument("--max-images", type=int, help="score only the first N validation images")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    from mrcnn_tf.cli_common import config_for
    from mrcnn_tf.data.builder import build_dataset
    from mrcnn_tf.export import litert
    from mrcnn_tf.export.predictor import Predictor
    from mrcnn_tf.registries import load_builtins

    load_builtins()
    cfg = config_for(None, args.weights, args.set)
    dataset = build_dataset(cfg, "val")
    ground_truth = dataset.coco_dict()
    entries = ground_truth["images"][: args.max_images]
    ground_truth = {**ground_truth, "images": entries}
    kept = {e["id"] for e in entries}
    ground_truth["annotations"] = [a for a in ground_truth["annotations"] if a["image_id"] in kept]
    images = [(dataset.images / e["file_name"], int(e["id"])) for e in entries]
    size = ["--image-size", str(args.image_size)] if args.image_size else []

    rows = {}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        export(args.weights, work / "sm", [], args.set)
        saved = work / "sm" / "1"
        size_mb = sum(p.stat().st_size for p in saved.rglob("*") if p.is_file()) / 2**20
        rows["SavedModel (float32)"] = {
            "size_mb": size_mb,
            **score(Predictor.from_saved_model(saved), images, ground_truth, args.repeat),
        }
        for mode in args.quantize:
            out = work / f"lite-{mode}"
            export(args.weights, out, ["--format", "tflite", "--quantize", mode, *size], args.set)
            record = json.loads((out / "export.json").read_text())
            predictor = litert.load_predictor(out, num_threads=args.threads)
            rows[f"LiteRT {mode} ({record['image_size']}²)"] = {
                "size_mb": (out / "model.tflite").stat().st_size / 2**20,
                **score(predictor, images, ground_truth, args.repeat),
            }
    reference = next((v for k, v in rows.items() if k.startswith("LiteRT none")), None)
    print(f"{len(images)} validation images; latency: median of {args.repeat} calls, {args.threads} threads")
    print("| model | size (MB) | latency (ms) | bbox AP | segm AP | Δ bbox vs float32 LiteRT | Δ segm |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, row in rows.items():
        delta = ("", "")
        if reference is not None and name.startswith("LiteRT"):
            delta = (
                f"{row['bbox_AP'] - reference['bbox_AP']:+.2f}",
                f"{row['segm_AP'] - reference['segm_AP']:+.2f}",
            )
        print(
            f"| {name} | {row['size_mb']:.2f} | {row['latency_ms']:.1f} | {row['bbox_AP']:.2f} | "
            f"{row['segm_AP']:.2f} | {delta[0]} | {delta[1]} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"images": len(images), "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
