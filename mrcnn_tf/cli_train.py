"""``mrcnn-tf train``, ``evaluate`` and ``demo``: the main job."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mrcnn_tf.cli_common import (
    category_map_for,
    config_for,
    config_overrides,
    model_category_map,
    model_with_weights,
    synthetic_data_in,
)

__all__ = ["add_train_commands"]


def _print_metrics(metrics: dict | None, indent: str = "  ") -> None:
    if not metrics:
        return
    for iou_type in ("bbox", "segm", "keypoints"):
        if iou_type in metrics:
            m = metrics[iou_type]
            print(f"{indent}{iou_type}: AP {m['AP']:.3f}  AP50 {m['AP50']:.3f}  AP75 {m['AP75']:.3f}")


def cmd_train(args: argparse.Namespace) -> int:
    """Train (or resume) a model with model.fit; see mrcnn_tf.training.trainer."""
    from mrcnn_tf.config import load_config
    from mrcnn_tf.training.trainer import train

    overrides = config_overrides(args)
    if args.strategy:
        overrides.append(f"runtime.strategy={args.strategy}")
    cfg = load_config(args.config, overrides)
    synthetic_data_in(cfg, args.workdir)
    result = train(cfg, args.workdir, overwrite=args.overwrite)
    print(f"finished at step {result['step']}: weights {result['weights']}")
    _print_metrics(result["metrics"])
    print(f"TensorBoard: tensorboard --logdir {Path(args.workdir) / 'logs'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """COCO bbox and segm AP of trained weights on the config's validation set."""
    from mrcnn_tf.data.builder import build_dataset, build_input_pipeline
    from mrcnn_tf.evaluation.evaluator import CocoEvaluator
    from mrcnn_tf.training.settings import EvalSettings, RuntimeSettings
    from mrcnn_tf.training.strategy import build_strategy
    from registry.errors import UserError

    cfg = config_for(args.config, args.weights, config_overrides(args))
    out = Path(args.out)
    existing = [out / name for name in ("metrics.json", "detections.json") if (out / name).exists()]
    if existing and not args.overwrite:
        raise UserError(f"{existing[0]} already exists; choose another --out or pass --overwrite")
    if not (cfg.get("data") or {}).get(args.split):
        raise UserError(f"the config has no data.{args.split} dataset to evaluate on")
    settings = EvalSettings.from_config(cfg)
    dataset = build_dataset(cfg, args.split)
    classes = model_category_map(args.weights, dataset)
    # runtime.strategy: every replica (and, with multi_worker, every worker: run the same command
    # on each with TF_CONFIG) predicts its share of the images; the chief scores and writes
    strategy = build_strategy(RuntimeSettings.from_config(cfg).strategy)
    model, loaded = model_with_weights(cfg, args.weights, num_classes=classes.num_classes, strategy=strategy)
    evaluator = CocoEvaluator(
        dataset,
        build_input_pipeline(cfg),
        mask_threshold=settings.mask_threshold,
        max_images=args.max_images if args.max_images is not None else settings.max_images,
        category_map=classes,
        mask_paste=settings.mask_paste,
        strategy=strategy,
    )
    result = evaluator.evaluate(model, out)
    if result.get("chief") is False:
        print(f"predicted this worker's share of {result['num_images']} images; the chief wrote the metrics")
        return 0
    print(f"weights: {loaded}")
    print(f"{result['num_images']} images, {result['num_detections']} detections")
    print(result["summary"])
    print(f"wrote {out / 'metrics.json'} and {out / 'detections.json'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a SavedModel for TF Serving: OUT/<version>/ with two signatures and the label map."""
    from mrcnn_tf import build_model
    from mrcnn_tf.data.builder import build_input_pipeline
    from mrcnn_tf.export.saved_model import Preprocessing, export_saved_model
    from mrcnn_tf.export.targets import apply_target
    from mrcnn_tf.training.trainer import process_settings
    from mrcnn_tf.training.workdir import load_weights
    from registry.errors import UserError

    cfg = config_for(args.config, args.weights, config_overrides(args))
    if args.format == "tflite":
        return _export_litert(cfg, args)
    if args.image_size is not None or args.quantize != "none":
        raise UserError("--image-size and --quantize are options of --format tflite")
    base = Path(args.out)
    version = args.version
    if version is None:
        existing = [int(p.name) for p in base.iterdir() if p.name.isdigit()] if base.is_dir() else []
        version = max(existing, default=0) + 1
    target = base / str(version)
    if target.exists():
        raise UserError(f"{target} already exists; pass another --version (nothing was overwritten)")
    category_map = category_map_for(cfg, args.weights)
    labels = category_map.to_json()
    cfg = apply_target(cfg, args.target)  # the graph depends on --target, not on this machine
    with process_settings(args.precision, deterministic=False):  # layers keep the policy they were built with
        model = build_model(cfg, num_classes=category_map.num_classes)
        model.build()
        loaded = load_weights(model, args.weights)  # float32 variables under every policy
    preprocess = Preprocessing.from_pipeline(build_input_pipeline(cfg))
    export_saved_model(
        model,
        target,
        preprocess,
        labels,
        paste_masks=args.paste_masks,
        config=cfg,
        target=args.target,
        precision=args.precision,
    )
    print(f"weights: {loaded}")
    print(f"wrote {target} (signatures serving_default, serving_bytes; assets/label_map.json)")
    mount = f"{base.resolve()}:/models/mrcnn"
    print(f"serve: docker run -p 8501:8501 -v {mount} -e MODEL_NAME=mrcnn tensorflow/serving")
    return 0


def _export_litert(cfg: dict, args: argparse.Namespace) -> int:
    """``export --format tflite``: OUT/model.tflite (builtin ops only) with its label map."""
    from mrcnn_tf import build_model
    from mrcnn_tf.data.builder import build_input_pipeline
    from mrcnn_tf.export import litert
    from mrcnn_tf.export.targets import LITERT, apply_target
    from mrcnn_tf.training.workdir import load_weights
    from registry.errors import UserError

    out = Path(args.out)
    litert.require_new_folder(out)  # before a conversion of minutes
    if args.paste_masks or args.version is not None or args.target != "any" or args.precision != "float32":
        raise UserError(
            "--paste-masks, --version, --target and --precision are options of the SavedModel export"
        )
    category_map = category_map_for(cfg, args.weights)
    cfg = apply_target(cfg, LITERT)
    size = args.image_size
    if size is None:  # the largest image the pipeline feeds the model, padded
        pipeline = build_input_pipeline(cfg)
        size = -(-pipeline.max_size // pipeline.size_divisibility) * pipeline.size_divisibility
    if not 32 <= size <= 4096:
        raise UserError(f"--image-size must be between 32 and 4096 pixels, got {size}")
    model = build_model(cfg, num_classes=category_map.num_classes)
    model.build()
    loaded = load_weights(model, args.weights)
    data = litert.convert(model, size, args.quantize)
    path = litert.write_litert(
        data,
        out,
        category_map.to_json(),
        image_size=size,
        quantize=args.quantize,
        config=cfg,
        head_outputs=[
            k
            for k, part in (
                ("detection_masks", model.mask_head),
                ("detection_keypoints", model.keypoint_head),
            )
            if part is not None
        ],
    )
    print(f"weights: {loaded}")
    print(f"wrote {path} ({len(data) / 2**20:.1f} MB; input uint8 [1, {size}, {size}, 3]; builtin ops only)")
    print(
        f"run it: python examples/tflite_predict.py {path} IMAGE (needs only ai-edge-litert, numpy, pillow)"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the built-in synthetic dataset: train, evaluate, export, pictures."""
    import numpy as np
    from PIL import Image

    from mrcnn_tf.config import load_config
    from mrcnn_tf.data.builder import build_dataset, build_input_pipeline
    from mrcnn_tf.evaluation.evaluator import CocoEvaluator
    from mrcnn_tf.export.saved_model import Preprocessing, export_saved_model
    from mrcnn_tf.training import workdir as run_files
    from mrcnn_tf.training.trainer import train

    overrides = config_overrides(args)
    if args.steps is not None:
        overrides += [f"train.max_steps={args.steps}", f"train.steps_per_loop={args.steps}"]
    cfg = load_config(args.config, overrides)
    workdir = Path(args.workdir)
    if workdir.is_dir() and any(workdir.iterdir()) and not run_files.is_run_directory(workdir):
        from registry.errors import UserError

        raise UserError(
            f"{workdir} is not empty and no run of mrcnn-tf wrote it (no {run_files.MARKER}); the demo "
            "writes data, a run, pictures and an export there. Choose a new or empty --workdir"
        )
    synthetic_data_in(cfg, args.workdir)
    started = time.perf_counter()
    print(f"mrcnn-tf demo: {args.config} in {workdir}")
    state = run_files.read_state(workdir)
    if state.get("finished") and not args.overwrite:
        print(
            f"  {workdir} holds a finished demo run (step {state['step']}); reusing it (--overwrite retrains)"
        )
        model, _ = model_with_weights(cfg, str(workdir))
        metrics = state.get("metrics")
    else:
        result = train(cfg, workdir, overwrite=args.overwrite, verbose=2 if args.quiet else "auto")
        model, metrics = result["model"], result["metrics"]
    val = build_dataset(cfg, "val")
    pipeline = build_input_pipeline(cfg)
    pictures = workdir / "predictions"
    pictures.mkdir(parents=True, exist_ok=True)
    first_batch = pipeline.batch_size
    evaluator = CocoEvaluator(val, pipeline, max_images=first_batch, num_pictures=first_batch)
    _, image_ids, drawn = evaluator.predict(model)
    for image_id, picture in zip(image_ids, drawn, strict=True):
        Image.fromarray(np.asarray(picture)).save(pictures / f"val_{image_id}.png")
    exported = workdir / "export" / "1"
    if not exported.exists():
        export_saved_model(model, exported, Preprocessing.from_pipeline(pipeline), val.category_map.to_json())
    print(f"\nmrcnn-tf demo finished in {(time.perf_counter() - started) / 60:.1f} min")
    _print_metrics(metrics)
    print(f"  weights:      {workdir / run_files.WEIGHTS}")
    print(f"  metrics:      {workdir / 'train_state.json'} and {workdir / 'eval'}")
    print(f"  pictures:     {pictures} ({len(drawn)} validation images)")
    print(f"  TensorBoard:  tensorboard --logdir {workdir / 'logs'}")
    print(f"  config:       {workdir / 'config.yaml'}")
    print(f"  SavedModel:   {exported} (serve it with TF Serving; see the README)")
    print(f"  your images:  mrcnn-tf predict IMAGES_OR_DIRS --saved-model {exported} --out predictions")
    if metrics:
        (workdir / "demo_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return 0


def add_train_commands(sub, common, overrides, parser_class, with_framework) -> None:
    """Register ``train``, ``evaluate`` and ``demo`` on the ``mrcnn-tf`` subparsers."""
    p = sub.add_parser("train", parents=[common, overrides], help="train a model with model.fit (resumes)")
    p.add_argument("config", help="a YAML file or the name of a bundled config")
    p.add_argument("--workdir", required=True, help="run directory: checkpoints, logs, weights, metrics")
    p.add_argument("--overwrite", action="store_true", help="delete an earlier run in --workdir first")
    p.add_argument(
        "--strategy",
        choices=("auto", "default", "mirrored", "multi_worker", "tpu"),
        help="tf.distribute strategy (default: runtime.strategy of the config)",
    )
    p.set_defaults(func=with_framework(cmd_train))

    p = sub.add_parser("evaluate", parents=[common, overrides], help="COCO bbox/segm AP of trained weights")
    p.add_argument(
        "config", nargs="?", help="a YAML file or bundled config name (default: the run's config.yaml)"
    )
    p.add_argument("--weights", required=True, help="a run directory, .weights.h5 file or checkpoint prefix")
    p.add_argument(
        "--out", default="work_dirs/evaluate", help="where metrics.json goes (default: %(default)s)"
    )
    p.add_argument("--split", default="val", help="data split of the config (default: %(default)s)")
    p.add_argument("--max-images", type=int, help="evaluate only the first N images")
    p.add_argument("--overwrite", action="store_true", help="replace metrics in --out")
    p.set_defaults(func=with_framework(cmd_evaluate))

    p = sub.add_parser(
        "export",
        parents=[common, overrides],
        help="SavedModel for TF Serving (numbered version), or a LiteRT/TFLite model (--format tflite)",
    )
    p.add_argument(
        "config", nargs="?", help="a YAML file or bundled config name (default: the run's config.yaml)"
    )
    p.add_argument("--weights", required=True, help="a run directory, .weights.h5 file or checkpoint")
    p.add_argument("--out", required=True, help="model base path; the export goes to OUT/<version>/")
    p.add_argument("--version", type=int, help="version number (default: one more than the highest in OUT)")
    p.add_argument(
        "--paste-masks", action="store_true", help="also output full-image masks (detection_masks_image)"
    )
    p.add_argument(
        "--target",
        choices=("any", "cpu", "gpu"),
        default="any",
        help="where the SavedModel will run (default: %(default)s: right on CPU and GPU servers; gpu: "
        "crop_and_resize RoIAlign); never decided by this machine's devices",
    )
    p.add_argument(
        "--precision",
        choices=("float32", "mixed_float16", "mixed_bfloat16"),
        default="float32",
        help="SavedModel: compute in float16 (GPUs) or bfloat16 (GPUs, CPUs with AVX-512 BF16/AMX); "
        "variables and outputs stay float32 (default: %(default)s)",
    )
    p.add_argument(
        "--format",
        choices=("saved_model", "tflite"),
        default="saved_model",
        help="saved_model (TF Serving, default) or tflite: OUT/model.tflite for LiteRT, TFLite builtin ops "
        "only, fixed input size",
    )
    p.add_argument(
        "--image-size", type=int, help="tflite: the input is [1, S, S, 3] (default: the config's max_size)"
    )
    p.add_argument(
        "--quantize",
        choices=("none", "float16", "int8"),
        default="none",
        help="tflite: none (float32), float16 weights, or int8 (dynamic range: int8 weights and "
        "convolutions) (default: %(default)s)",
    )
    p.set_defaults(func=with_framework(cmd_export))

    p = sub.add_parser(
        "demo",
        parents=[common, overrides],
        help="the main job: train on the built-in synthetic dataset, evaluate, predict, pictures",
    )
    p.add_argument(
        "--config", default="mask_rcnn_r18_fpn_synthetic", help="config to run (default: %(default)s)"
    )
    p.add_argument("--workdir", default="work_dirs/demo", help="where outputs go (default: %(default)s)")
    p.add_argument("--steps", type=int, help="training steps (default: the config's train.max_steps)")
    p.add_argument("--overwrite", action="store_true", help="retrain even if --workdir holds a finished demo")
    p.add_argument("--quiet", action="store_true", help="one line per loop instead of a progress bar")
    p.set_defaults(func=with_framework(cmd_demo))
