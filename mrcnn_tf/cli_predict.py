"""``mrcnn-tf predict``: pictures and COCO results for image files."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_predict_command"]


def cmd_predict(args: argparse.Namespace) -> int:
    """Detect objects in images with an exported SavedModel or a config and its weights."""
    from mrcnn_tf.export.predictor import (
        Predictor,
        assign_image_ids,
        check_outputs,
        find_images,
        image_ids_from_coco,
        predict_images,
    )
    from registry.errors import UserError

    if bool(args.saved_model) == bool(args.config or args.weights):
        raise UserError("pass either --saved-model DIR or --weights W [--config CONFIG] (not both)")
    if args.config and not args.weights:
        raise UserError("--config needs --weights (a run directory or a .weights.h5 file)")
    if not 0.0 <= args.score_threshold <= 1.0:
        raise UserError(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
    out = Path(args.out)
    if (out / "predictions.json").exists() and not args.overwrite:
        raise UserError(
            f"{out / 'predictions.json'} already exists; choose another --out or pass --overwrite"
        )
    images = find_images(args.images)
    image_ids = image_ids_from_coco(args.image_ids) if args.image_ids else None
    assign_image_ids(images, image_ids)  # a file name missing from --image-ids: before any work
    check_outputs(images, out, overwrite=args.overwrite)  # outputs never replace inputs
    shard, gather = (0, 1), None
    if args.strategy == "multi_worker":  # the same command on each worker (TF_CONFIG); the
        # collectives must be set up before TensorFlow runs anything (loading the model)
        from mrcnn_tf.evaluation.distributed import all_gather_json, worker_index_and_count
        from mrcnn_tf.training.strategy import build_strategy

        strategy = build_strategy("multi_worker")
        shard = worker_index_and_count(strategy)
        gather = lambda done: all_gather_json(strategy, done)  # noqa: E731
    paste = {}
    if args.saved_model:
        from mrcnn_tf.export import litert

        if litert.find_litert(args.saved_model):
            predictor = litert.load_predictor(args.saved_model)
        else:
            predictor = Predictor.from_saved_model(args.saved_model)
    else:
        predictor, settings = _predictor_from_config(args)
        paste = {"mask_threshold": settings.mask_threshold, "mask_paste": settings.mask_paste}
    k, n = shard
    share = f" (worker {k} of {n}: images {k + 1}, {k + n + 1}, ...)" if n > 1 else ""
    print(f"predicting {len(images)} image{'s' if len(images) != 1 else ''}{share} with {predictor.source}")
    summary = predict_images(
        predictor,
        images,
        out,
        score_threshold=args.score_threshold,
        image_ids=image_ids,
        progress=not args.quiet,
        shard=shard,
        gather=gather,
        **paste,
    )
    for path, reason in summary["skipped"]:
        print(f"skipped {path}: {reason}")
    if shard[0] != 0:
        print(f"drew this worker's share of the pictures in {out}; the chief wrote predictions.json")
        return 1 if summary["skipped"] else 0
    print(
        f"{summary['images']} images, {summary['detections']} detections with score >= "
        f"{args.score_threshold}: pictures and predictions.json (COCO results; images.json lists "
        f"the images) in {out}"
    )
    return 1 if summary["skipped"] else 0


def _predictor_from_config(args: argparse.Namespace):
    from mrcnn_tf.cli_common import category_map_for, config_for, config_overrides, model_with_weights
    from mrcnn_tf.data.builder import build_input_pipeline
    from mrcnn_tf.export.predictor import Predictor
    from mrcnn_tf.export.saved_model import Preprocessing
    from mrcnn_tf.training.settings import EvalSettings

    cfg = config_for(args.config, args.weights, config_overrides(args))
    settings = EvalSettings.from_config(cfg)
    category_map = category_map_for(cfg, args.weights)
    model, loaded = model_with_weights(cfg, args.weights, num_classes=category_map.num_classes)
    preprocess = Preprocessing.from_pipeline(build_input_pipeline(cfg))
    return Predictor.from_model(model, preprocess, category_map, source=loaded), settings


def add_predict_command(sub, common, overrides, with_framework) -> None:
    """Register ``predict`` on the ``mrcnn-tf`` subparsers."""
    p = sub.add_parser(
        "predict",
        parents=[common, overrides],
        help="draw detections on images and write COCO results (SavedModel or config + weights)",
    )
    p.add_argument("images", nargs="+", metavar="IMAGES_OR_DIRS", help="image files or folders (recursive)")
    p.add_argument(
        "--saved-model",
        help="an export of `mrcnn-tf export`: SavedModel version dir or base path, or the LiteRT folder "
        "or .tflite file of --format tflite",
    )
    p.add_argument("--weights", help="a run directory (its config.yaml is used) or a .weights.h5 file")
    p.add_argument("--config", help="a YAML file or bundled config name (default: the run's config.yaml)")
    p.add_argument("--out", required=True, help="output folder for pictures and predictions.json")
    p.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        help="draw and write detections with at least this score (default: %(default)s; 0 keeps all)",
    )
    p.add_argument("--image-ids", help="a COCO file whose image ids to use (matched by file name)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier predictions.json in --out")
    p.add_argument(
        "--strategy",
        choices=("default", "multi_worker"),
        default="default",
        help="multi_worker: run the same command on each worker (TF_CONFIG, e.g. one per GPU); each "
        "predicts and draws its share of the images, the chief writes predictions.json",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=with_framework(cmd_predict))
