"""Fine-tune a trained model on a dataset with a different number of classes.

The source is the demo model (``mrcnn-tf demo --workdir runs/demo``: circle, square,
triangle); the new dataset has two classes, "circle" and "polygon" (squares and triangles
merged), on new synthetic images. ``train.init_weights`` keeps every weight that fits the new
model and re-initialises the class-dependent predictors; the report says which::

    mrcnn-tf demo --workdir runs/demo
    python examples/finetune.py --from runs/demo --workdir runs/finetune

The same two lines of config work for your own data: point ``data`` at your COCO files, set
``data.num_classes`` and ``train.init_weights`` (see examples/finetune.yaml).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CONFIG = Path(__file__).resolve().parent / "finetune.yaml"
#: New category of each synthetic one (dataset ids): circle -> circle, square/triangle -> polygon.
MERGE = {1: 1, 2: 2, 3: 2}
CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 2, "name": "polygon"}]


def write_two_class_dataset(out: Path, num_train: int, num_val: int) -> list[str]:
    """New synthetic images (seed 1) with their shapes relabelled to circle / polygon.

    Returns the config overrides that point ``data.train`` and ``data.val`` at them.
    """
    from mrcnn_tf.data.synthetic import generate_synthetic_coco

    overrides = []
    for split, count in (("train", num_train), ("val", num_val)):
        ann_path, images = generate_synthetic_coco(out / "synthetic", split, num_images=count, seed=1)
        data = json.loads(ann_path.read_text(encoding="utf-8"))
        for ann in data["annotations"]:
            ann["category_id"] = MERGE[ann["category_id"]]
        data["categories"] = CATEGORIES
        (out / f"instances_{split}.json").write_text(json.dumps(data), encoding="utf-8")
        overrides += [
            f"data.{split}.annotations={out / f'instances_{split}.json'}",
            f"data.{split}.images={images}",
        ]
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--from", dest="source", default="runs/demo", help="trained weights: a run dir or file"
    )
    parser.add_argument("--workdir", default="runs/finetune", help="data/ and the fine-tuning run go here")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--num-train", type=int, default=128)
    parser.add_argument("--num-val", type=int, default=32)
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="more config overrides")
    args = parser.parse_args(argv)

    from mrcnn_tf.config import load_config
    from mrcnn_tf.training.trainer import train

    if not Path(args.source).exists():
        print(
            f"no trained model at {args.source}: run `mrcnn-tf demo --workdir {args.source}` first, "
            "or pass --from"
        )
        return 2
    workdir = Path(args.workdir)
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    overrides = write_two_class_dataset(data, args.num_train, args.num_val)
    loop = min(args.steps, 100)
    overrides += [
        f"train.init_weights={args.source}",
        f"train.max_steps={args.steps}",
        f"train.steps_per_loop={loop if args.steps % loop == 0 else args.steps}",
        *args.set,
    ]
    cfg = load_config(CONFIG, overrides)
    result = train(cfg, workdir / "run")
    metrics = result["metrics"] or {}
    for iou_type in ("bbox", "segm"):
        if iou_type in metrics:
            m = metrics[iou_type]
            print(f"{iou_type}: AP {m['AP']:.3f}  AP50 {m['AP50']:.3f}  AP75 {m['AP75']:.3f}")
    print(f"fine-tuned weights: {result['weights']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
