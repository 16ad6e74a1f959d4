"""``mrcnn-tf data ...``: check, show, convert and generate datasets."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_data_commands"]


def _dataset_from_args(args: argparse.Namespace, *, strict: bool):
    """A dataset from ``--annotations/--images`` or from ``--config``'s ``data.<split>``."""
    from registry.errors import UserError

    if args.annotations or args.images:
        if not (args.annotations and args.images):
            raise UserError("give both --annotations and --images (or --config)")
        from mrcnn_tf.data.coco import CocoDataset

        return CocoDataset(
            args.annotations,
            args.images,
            strict=strict,
            skip_empty=getattr(args, "skip_empty", False),
            verify_images=getattr(args, "verify_images", False),
        ), None
    if not args.config:
        raise UserError("name the dataset: --annotations FILE --images DIR, or --config CONFIG")
    from mrcnn_tf.cli_common import config_overrides
    from mrcnn_tf.config import load_config
    from mrcnn_tf.data.builder import build_dataset

    cfg = load_config(args.config, config_overrides(args))
    spec = dict((cfg.get("data") or {}).get(args.split) or {})
    if spec.get("type") == "CocoDataset":
        spec["strict"] = strict
    cfg = {**cfg, "data": {**cfg["data"], args.split: spec}} if spec else cfg
    return build_dataset(cfg, args.split), cfg


def cmd_check(args: argparse.Namespace) -> int:
    """Print what a dataset holds and what is wrong with it; exit 1 on problems with --strict."""
    logging.getLogger("mrcnn_tf.data").setLevel(logging.ERROR)  # the report is printed below
    dataset, _ = _dataset_from_args(args, strict=False)
    report, counts = dataset.report, dataset.report.counts
    print(f"{report.source}")
    print(
        f"  {counts['images']} images ({counts['empty_images']} without instances"
        f"{', skipped' if counts['skipped_empty_images'] else ', kept as background'}), "
        f"{counts['instances']} instances, {counts['crowd']} crowd regions"
    )
    print(f"  {dataset.num_classes} classes (class id: dataset id, name, instances):")
    cmap = dataset.category_map
    for k, (dataset_id, name) in enumerate(zip(cmap.dataset_ids, cmap.names, strict=True), start=1):
        print(f"    {k:>4}: {dataset_id:>6}  {name:<24} {report.instances_per_class.get(k, 0)}")
    crowded = [r for r in getattr(dataset, "records", []) if len(r.instances) > args.max_instances]
    if crowded:
        print(
            f"  {len(crowded)} images have more than max_instances={args.max_instances} instances "
            f"(e.g. image {crowded[0].image_id} with {len(crowded[0].instances)}); the pipeline keeps "
            f"{args.max_instances} of them at random; raise data.pipeline.max_instances to keep all"
        )
    print("  " + report.summary(examples=args.examples).replace("\n", "\n  "))
    if report.problems and args.strict:
        print(f"strict mode: {len(report.problems)} problem(s); exit status 1")
        return 1
    return 0


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    from registry.errors import UserError

    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise UserError(f"{existing[0]} already exists; choose another --out or pass --overwrite")


def cmd_show(args: argparse.Namespace) -> int:
    """Write pictures of what the input pipeline produces: boxes, masks, class names and, for a
    keypoint dataset, the keypoints joined by the skeleton (flipped images: left/right swapped)."""
    import numpy as np
    from PIL import Image

    from mrcnn_tf.data.builder import build_input_pipeline
    from mrcnn_tf.data.pipeline import InputPipeline
    from mrcnn_tf.visualization import draw_instances, paste_box_masks

    dataset, cfg = _dataset_from_args(args, strict=False)
    pipeline = build_input_pipeline(cfg) if cfg else InputPipeline()
    out = Path(args.out)
    paths = [out / f"sample_{k:03d}.png" for k in range(args.num)]
    _refuse_existing(paths, args.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for batch in pipeline(dataset, training=not args.no_augment, repeat=False):
        batch = {k: v.numpy() for k, v in batch.items()}
        for b in range(batch["images"].shape[0]):
            if written == args.num:
                break
            h, w = batch["image_size"][b].astype(int)
            valid = batch["gt_classes"][b] > 0
            classes = batch["gt_classes"][b][valid]
            masks = paste_box_masks(batch["gt_masks"][b][valid], batch["gt_mask_boxes"][b][valid], (h, w))
            masks &= paste_box_masks(np.ones((len(classes), 1, 1)), batch["gt_boxes"][b][valid], (h, w))
            labels = [dataset.category_map.name(c) for c in classes]
            keypoints = batch["gt_keypoints"][b][valid] if "gt_keypoints" in batch else None
            skeleton = dataset.keypoints.skeleton if keypoints is not None else ()
            picture = draw_instances(
                batch["images"][b][:h, :w],
                batch["gt_boxes"][b][valid],
                labels,
                masks,
                keypoints=keypoints,
                skeleton=skeleton,
                keypoint_threshold=0.5,  # v: 1 hidden, 2 visible
            )
            Image.fromarray(picture).save(paths[written])
            written += 1
        if written == args.num:
            break
    print(
        f"wrote {written} picture(s) of {'augmented ' if not args.no_augment else ''}pipeline output to {out}"
    )
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Write a COCO dataset as sharded TFRecords."""
    from mrcnn_tf.data.tfrecord import write_tfrecords

    logging.getLogger("mrcnn_tf.data").setLevel(logging.ERROR)
    dataset, _ = _dataset_from_args(args, strict=args.strict)
    if dataset.report.problems:
        print(dataset.report.summary())
    paths = write_tfrecords(
        dataset, args.out, args.shards, overwrite=args.overwrite, mask_format=args.mask_format
    )
    print(f"wrote {len(dataset.records)} images to {len(paths)} shard(s): {args.out}-*.tfrecord")
    print(f"  label map: {args.out}-label_map.json; ground truth for evaluation: {args.out}-instances.json")
    print(f"  use them with: data.train: {{type: TFRecordDataset, pattern: '{args.out}-*.tfrecord'}}")
    return 0


def cmd_synthetic(args: argparse.Namespace) -> int:
    """Generate the built-in synthetic dataset as COCO files."""
    from mrcnn_tf.data.synthetic import generate_synthetic_coco

    for split, num in (("train", args.num_train), ("val", args.num_val)):
        ann, images = generate_synthetic_coco(
            args.out, split, num, args.image_size, 1, args.max_instances, args.seed
        )
        print(f"{split}: {num} images: --annotations {ann} --images {images}")
    return 0


def add_data_commands(
    sub: Any,
    common: argparse.ArgumentParser,
    overrides: argparse.ArgumentParser,
    parser_class: type,
    wrap: Callable,
) -> None:
    """Add ``data check|show|convert|synthetic`` to the ``mrcnn-tf`` parser."""
    p = sub.add_parser("data", parents=[common], help="check, show, convert or generate datasets")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", parser_class=parser_class)
    data_sub.required = True

    source = argparse.ArgumentParser(add_help=False)
    source.add_argument("--annotations", help="a COCO instances JSON file")
    source.add_argument("--images", help="the folder its file_name entries are relative to")
    source.add_argument("--config", help="or: the dataset of a config's data.<split>")
    source.add_argument("--split", default="train", help="with --config: which split (default: %(default)s)")

    c = data_sub.add_parser("check", parents=[common, overrides, source], help="count and check a dataset")
    c.add_argument("--strict", action="store_true", help="exit with status 1 if anything is wrong")
    c.add_argument("--skip-empty", action="store_true", help="leave out images without instances")
    c.add_argument(
        "--verify-images", action="store_true", help="decode every image fully (finds truncated files)"
    )
    c.add_argument(
        "--max-instances", type=int, default=100, help="report images with more (default: %(default)s)"
    )
    c.add_argument("--examples", type=int, default=5, help="cases shown per kind of problem")
    c.set_defaults(func=cmd_check, needs_framework=False)

    s = data_sub.add_parser("show", parents=[common, overrides, source], help="draw pipeline outputs to PNGs")
    s.add_argument("--out", required=True, help="folder for the pictures")
    s.add_argument("--num", type=int, default=8, help="how many pictures (default: %(default)s)")
    s.add_argument("--no-augment", action="store_true", help="show evaluation inputs (no flips or jitter)")
    s.add_argument("--overwrite", action="store_true", help="replace pictures from an earlier run")
    s.set_defaults(func=cmd_show, needs_framework=True)

    v = data_sub.add_parser("convert", parents=[common, overrides, source], help="write sharded TFRecords")
    v.add_argument("--out", required=True, help="output prefix: PREFIX-00000-of-0000N.tfrecord ...")
    v.add_argument("--shards", type=int, default=8, help="number of files (default: %(default)s)")
    v.add_argument("--strict", action="store_true", help="refuse to convert a dataset with problems")
    v.add_argument(
        "--mask-format",
        choices=["rle", "png"],
        default="rle",
        help="masks as compressed RLE (fast to read) or one PNG per instance (Model Garden's key)",
    )
    v.add_argument("--overwrite", action="store_true", help="replace existing output files")
    v.set_defaults(func=cmd_convert, needs_framework=True)

    g = data_sub.add_parser("synthetic", parents=[common], help="generate the built-in synthetic dataset")
    g.add_argument("--out", required=True, help="root folder (annotations/ and train/, val/)")
    g.add_argument("--num-train", type=int, default=64)
    g.add_argument("--num-val", type=int, default=16)
    g.add_argument("--image-size", type=int, default=128)
    g.add_argument("--max-instances", type=int, default=6)
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=cmd_synthetic, needs_framework=False)

    for action in (c, s, v, g):
        action.set_defaults(func=wrap(action.get_default("func")))
