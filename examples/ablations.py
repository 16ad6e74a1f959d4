"""Mask R-CNN's Table 2 ablations, each by swapping one registry name, on the synthetic dataset.

Every variant is a config in ``configs/ablations/`` that changes one line of the demo config
(``mask_rcnn_r18_fpn_synthetic``): the RoI feature extractor (RoIPool, RoIAlign with max
pooling), the mask loss (a softmax across classes), the mask head (an MLP), or class-agnostic
masks. Each variant trains with the same seed, data and step budget, is evaluated with COCO AP
on the validation split, and the script prints a table like the paper's with the paper's
numbers beside ours for the direction of each effect::

    python examples/ablations.py --steps 600 --workdir runs/ablations
    python examples/ablations.py --variants baseline roipool --seeds 0 1

Finished variants are reused when the script runs again with the same ``--workdir`` (delete
a variant's folder to retrain it), so an interrupted run picks up where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

#: name -> (config, what changes, the paper's mask AP / AP50 / AP75 for it and for its baseline).
#: Paper: He et al. 2017, Table 2 (COCO minival; (b), (c) and class-agnostic on ResNet-50-C4,
#: (e) on ResNet-50-FPN). Class-agnostic: Section 4.2 ("29.7 mask AP vs 30.3").
VARIANTS = {
    "baseline": ("mask_rcnn_r18_fpn_synthetic", "RoIAlign (avg), per-class sigmoid, FCN head", None),
    "roipool": (
        "ablations/roipool",
        "RoIPool instead of RoIAlign (2c)",
        ((26.9, 48.8, 26.4), (30.3, 51.2, 31.5)),
    ),
    "roialign_max": (
        "ablations/roialign_max",
        "RoIAlign with max instead of avg pooling (2c)",
        ((30.2, 51.0, 31.8), (30.3, 51.2, 31.5)),
    ),
    "mask_softmax": (
        "ablations/mask_softmax",
        "softmax across classes instead of per-class sigmoid (2b)",
        ((24.8, 44.1, 25.1), (30.3, 51.2, 31.5)),
    ),
    "mask_head_mlp": (
        "ablations/mask_head_mlp",
        "MLP mask head (fc 1024, fc 1024) instead of the FCN (2e)",
        ((31.5, 53.7, 32.8), (33.6, 55.2, 35.3)),
    ),
    "mask_class_agnostic": (
        "ablations/mask_class_agnostic",
        "class-agnostic masks instead of per-class (4.2)",
        ((29.7, None, None), (30.3, 51.2, 31.5)),
    ),
}


def run_variant(name: str, seed: int, steps: int, workdir: Path, extra: list[str]) -> dict:
    """Train one variant (or reuse a finished run in its folder); its metrics and time."""
    import keras

    from mrcnn_tf.config import load_config
    from mrcnn_tf.training import workdir as run_files
    from mrcnn_tf.training.trainer import train

    run_dir = workdir / f"{name}-seed{seed}"
    state = run_files.read_state(run_dir)
    if state.get("finished") and state.get("step") == steps and state.get("metrics"):
        print(f"[{name} seed {seed}] reusing the finished run in {run_dir}", flush=True)
        return {"metrics": state["metrics"], "minutes": state.get("ablation_minutes")}
    data = str(workdir / "synthetic")  # one copy of the dataset for every variant
    overrides = [
        f"runtime.seed={seed}",
        f"train.max_steps={steps}",
        f"train.steps_per_loop={steps}",
        "train.eval_every=0",
        f"data.train.root={data}",
        f"data.val.root={data}",
        *extra,
    ]
    cfg = load_config(VARIANTS[name][0], overrides)
    print(f"[{name} seed {seed}] {VARIANTS[name][1]}: training {steps} steps in {run_dir}", flush=True)
    keras.backend.clear_session()
    started = time.perf_counter()
    # a finished run with another budget is replaced; an interrupted one resumes from its checkpoint
    result = train(cfg, run_dir, overwrite=bool(state.get("finished")), verbose=2)
    minutes = round((time.perf_counter() - started) / 60, 2)
    run_files.write_state(run_dir, **run_files.read_state(run_dir), ablation_minutes=minutes)
    return {"metrics": result["metrics"], "minutes": minutes}


def _fmt(value: float | None, scale: float = 100.0) -> str:
    return "—" if value is None else f"{value * scale:.1f}"


def table(results: dict[str, list[dict]], steps: int, seeds: list[int]) -> str:
    """The Markdown table: our mask AP (mean over seeds) and the paper's, per variant."""
    lines = [
        f"| variant | what changes | ours: mask AP / AP50 / AP75 ({steps} steps, seeds {seeds}) | "
        "ours: Δ mask AP | ours: box AP | paper: mask AP / AP50 / AP75 | paper: Δ mask AP |",
        "| --- | --- | --- | ---: | ---: | --- | ---: |",
    ]

    def mean(name, iou_type, key):
        return statistics.fmean(r["metrics"][iou_type][key] for r in results[name])

    base = mean("baseline", "segm", "AP") if "baseline" in results else None
    for name, runs in results.items():
        _, what, paper = VARIANTS[name]
        segm = [mean(name, "segm", k) for k in ("AP", "AP50", "AP75")]
        spread = ""
        if len(runs) > 1:
            values = [r["metrics"]["segm"]["AP"] * 100 for r in runs]
            spread = f" (seeds: {', '.join(f'{v:.1f}' for v in values)})"
        delta = "—" if base is None or name == "baseline" else f"{(segm[0] - base) * 100:+.1f}"
        if paper is None:
            paper_ap, paper_delta = "(the baseline of each row)", "—"
        else:
            (ap, ap50, ap75), (b_ap, _, _) = paper
            paper_ap = " / ".join("—" if v is None else f"{v:.1f}" for v in (ap, ap50, ap75))
            paper_delta = f"{ap - b_ap:+.1f}"
        lines.append(
            f"| {name} | {what} | {' / '.join(_fmt(v) for v in segm)}{spread} | {delta} | "
            f"{_fmt(mean(name, 'bbox', 'AP'))} | {paper_ap} | {paper_delta} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=600, help="training steps per variant (default 600)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="runtime.seed values (default 0)")
    parser.add_argument("--workdir", default="runs/ablations", help="one run folder per variant and seed")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="more config overrides")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir)
    results: dict[str, list[dict]] = {}
    for name in args.variants:
        for seed in args.seeds:
            results.setdefault(name, []).append(run_variant(name, seed, args.steps, workdir, args.set))
    print()
    print(table(results, args.steps, args.seeds))
    if args.json:
        record = {"steps": args.steps, "seeds": args.seeds, "overrides": args.set, "results": results}
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
