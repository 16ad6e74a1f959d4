"""``mrcnn-tf convert``: checkpoints of other frameworks → a run directory of ours."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import shutil
import tempfile
from pathlib import Path

from registry.errors import UserError

#: The zoo config whose backbone an ImageNet ResNet of each depth becomes.
BACKBONE_CONFIGS = {50: "mask_rcnn_r50_fpn_1x_coco.yaml", 101: "mask_rcnn_r101_fpn_1x_coco.yaml"}


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not empty; nothing was written. Choose a new folder")


def _convert(args: argparse.Namespace, source: str) -> int:
    """A checkpoint of ``source`` (torchvision, detectron2) → DIR with config.yaml,
    model.weights.h5, label_map.json (and the run marker); nothing is written on any error."""
    from mrcnn_tf import build_model
    from mrcnn_tf.cli_common import CONFIG_FILE, LABEL_MAP, config_overrides
    from mrcnn_tf.config import load_config
    from mrcnn_tf.convert import backbones, detectron2, torchvision
    from mrcnn_tf.convert.checkpoint_io import read_checkpoint
    from mrcnn_tf.convert.layouts import assign_pairs
    from mrcnn_tf.data.category_map import CategoryMap
    from mrcnn_tf.training import workdir as run_files
    from registry.config import dump_config

    converter = {"torchvision": torchvision, "detectron2": detectron2}[source]
    out = Path(args.out)
    _check_out(out)
    state = read_checkpoint(args.checkpoint)
    classifier = backbones.classifier_depth(state)
    if classifier is not None:  # an ImageNet ResNet: the backbone of a COCO zoo config
        kind, depth = classifier
        if depth not in BACKBONE_CONFIGS:
            raise UserError(f"{args.checkpoint}: a ResNet classifier of unsupported depth (50 or 101 are)")
        arch = f"{kind} ResNet-{depth} ImageNet classifier"
        overrides = [*backbones.config_overrides(kind, depth), *config_overrides(args)]
        cfg = load_config(BACKBONE_CONFIGS[depth], overrides)
        cfg.setdefault("train", {})["init_weights"] = None  # this folder is the start itself
        model = build_model(cfg)
        model.build()
        kept = {k: v for k, v in state.items() if not backbones.is_ignored(k)}
        assign_pairs(backbones.backbone_pairs(model.backbone, kind), kept, arch, args.checkpoint)
        labels = None
    else:
        state = converter.normalise_keys(state)
        found = converter.detect_arch(state, args.checkpoint)
        arch = args.arch or found
        if arch != found:
            raise UserError(f"{args.checkpoint}: --arch {arch}, but its keys are those of {found}")
        cfg = load_config(converter.CONFIGS[arch], config_overrides(args))
        model = build_model(cfg)
        model.build()
        converter.assign(model, state, arch, args.checkpoint)
        table = converter.label_map(arch)
        labels = CategoryMap.from_categories(table["categories"])
        if table.get("keypoints"):
            labels = dataclasses.replace(labels, keypoints=table["keypoints"])
    # Written into a temporary folder beside DIR, then moved: a failure leaves nothing in DIR.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (staging / run_files.MARKER).write_text(f"converted by mrcnn-tf convert {source}\n", encoding="utf-8")
        (staging / CONFIG_FILE).write_text(dump_config(cfg), encoding="utf-8")
        if labels is not None:
            labels.save(staging / LABEL_MAP)
        else:
            backbones.write_manifest(staging, *classifier, args.checkpoint)
        model.save_weights(str(staging / run_files.WEIGHTS))
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"{args.checkpoint}: {source} {arch}, {len(state)} tensors")
    if labels is None:
        needs = ", ".join(f"{k}={v}" for k, v in backbones.requirements(*classifier).items())
        print(
            f"wrote {out}: the backbone of {BACKBONE_CONFIGS[classifier[1]]} ({backbones.MANIFEST} says so)"
        )
        print(f"start a run from it: train.init_weights: {out} (the backbone only; the model needs {needs})")
        return 0
    print(f"wrote {out} ({CONFIG_FILE}, {run_files.WEIGHTS}, {LABEL_MAP}: {labels.num_classes} COCO classes)")
    print(f"predict: mrcnn-tf predict IMAGES --weights {out} --out predictions")
    return 0


def add_convert_command(sub, common, overrides, parser_class, with_framework) -> None:
    """Register ``convert torchvision`` and ``convert detectron2`` on the ``mrcnn-tf`` subparsers."""
    from mrcnn_tf.convert import detectron2, torchvision  # NumPy only: no TensorFlow at start-up

    p = sub.add_parser(
        "convert",
        parents=[common],
        help="convert a torchvision or Detectron2 checkpoint into a run directory",
    )
    convert_sub = p.add_subparsers(dest="convert_command", metavar="SOURCE", parser_class=parser_class)
    convert_sub.required = True
    sources = {
        "torchvision": (
            "maskrcnn_resnet50_fpn (v1) or _v2 .pth (also .npz/.safetensors), or an ImageNet resnet50/101; "
            "torch is not needed",
            "e.g. maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
            torchvision.ARCHS,
        ),
        "detectron2": (
            "a Detectron2 model-zoo Mask R-CNN R50-FPN or R50-C4 model_final_*.pkl, or an MSRA "
            "R-50/R-101.pkl (read without torch)",
            "e.g. model_final_f10217.pkl (mask_rcnn_R_50_FPN_3x)",
            detectron2.ARCHS,
        ),
    }
    for source, (summary, example, archs) in sources.items():
        q = convert_sub.add_parser(source, parents=[common, overrides], help=summary)
        q.add_argument("checkpoint", help=example)
        q.add_argument("--out", required=True, help="the run directory to write (new or empty)")
        q.add_argument("--arch", choices=archs, help="default: from the keys")
        command = functools.partial(_convert, source=source)
        command.__doc__ = _convert.__doc__
        q.set_defaults(func=with_framework(command))
