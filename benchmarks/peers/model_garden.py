#!/usr/bin/env python3
"""One benchmark case of TF Model Garden's Mask R-CNN, run with the Python of its own venv.

Called by ``benchmarks/model_speed.py --peers``; prints one JSON line in the same format as our
cases. The model is ``maskrcnn_resnetfpn_coco`` built with ``task.build_model()``, random
weights, 1000 test proposals, 100 detections forced (``pre_nms_score_threshold=0``), and the
paper's 2-fc box head with ``--variant 2fc`` (Model Garden's default is 4 conv + 1 fc).
Inference is Model Garden's own serving function (``DetectionModule.serve``: resize, normalise,
anchors, model) in a ``tf.function``, batch 1. A training step (``train_<S>_b<B>``) is Model
Garden's ``task.train_step`` (forward, its losses, backward, SGD with momentum 0.9) in a
``tf.function`` on one batch made by its own training parser (``maskrcnn_input.Parser``, the
settings ``task.build_inputs`` uses, no scale jitter) from a synthetic decoded example with 8
objects per image, like ours.
"""

from __future__ import annotations

import json
import os
import sys
import time

from peer_timing import measure, peer_arguments  # next to this script (its folder is first on sys.path)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def experiment(size: int, variant: str, precision: str):
    """Model Garden's ``maskrcnn_resnetfpn_coco`` config with the benchmark's settings."""
    import official.vision  # noqa: F401  (registers the experiments)
    from official.core import exp_factory

    cfg = exp_factory.get_exp_config("maskrcnn_resnetfpn_coco")
    cfg.task.model.input_size = [size, size, 3]
    cfg.task.model.roi_generator.test_pre_nms_num_proposals = 1000
    cfg.task.model.roi_generator.test_num_proposals = 1000
    cfg.task.model.detection_generator.max_num_detections = 100
    cfg.task.model.detection_generator.pre_nms_score_threshold = 0.0
    cfg.task.model.norm_activation.use_sync_bn = False
    if variant == "2fc":
        cfg.task.model.detection_head.num_convs = 0
        cfg.task.model.detection_head.num_fcs = 2
    if precision == "bfloat16":
        import tf_keras

        tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
    return cfg


def build(size: int, variant: str, precision: str):
    from official.vision.serving import detection

    cfg = experiment(size, variant, precision)
    return detection.DetectionModule(params=cfg, batch_size=1, input_image_size=[size, size])


def training_batch(cfg, batch_size: int, num_objects: int = 8):
    """One batch ``(images, labels)`` from Model Garden's training parser on synthetic data."""
    import numpy as np
    import tensorflow as tf
    from official.vision.dataloaders import maskrcnn_input

    model, parser_cfg = cfg.task.model, cfg.task.train_data.parser
    size = model.input_size[0]
    parser = maskrcnn_input.Parser(
        output_size=model.input_size[:2],
        min_level=model.min_level,
        max_level=model.max_level,
        num_scales=model.anchor.num_scales,
        aspect_ratios=model.anchor.aspect_ratios,
        anchor_size=model.anchor.anchor_size,
        rpn_match_threshold=parser_cfg.rpn_match_threshold,
        rpn_unmatched_threshold=parser_cfg.rpn_unmatched_threshold,
        rpn_batch_size_per_im=parser_cfg.rpn_batch_size_per_im,
        rpn_fg_fraction=parser_cfg.rpn_fg_fraction,
        aug_rand_hflip=False,
        skip_crowd_during_training=parser_cfg.skip_crowd_during_training,
        max_num_instances=parser_cfg.max_num_instances,
        include_mask=True,
        mask_crop_size=parser_cfg.mask_crop_size,
        dtype="bfloat16" if tf_keras_policy_is_bf16() else "float32",
    )
    rng = np.random.default_rng(0)
    examples = []
    for _ in range(batch_size):
        corners = rng.uniform(0.05, 0.6, (num_objects, 2))
        extent = rng.uniform(0.1, 0.35, (num_objects, 2))
        boxes = np.concatenate([corners, corners + extent], axis=1).astype(np.float32)  # y1 x1 y2 x2
        masks = np.zeros((num_objects, size, size), np.float32)
        for i, (y1, x1, y2, x2) in enumerate((boxes * size).astype(int)):
            masks[i, y1:y2, x1:x2] = 1.0
        decoded = {
            "image": tf.constant(rng.integers(0, 255, (size, size, 3)).astype(np.uint8)),
            "groundtruth_boxes": tf.constant(boxes),
            "groundtruth_classes": tf.constant(rng.integers(1, 81, num_objects).astype(np.int64)),
            "groundtruth_is_crowd": tf.zeros([num_objects], tf.bool),
            "groundtruth_instance_masks": tf.constant(masks),
            "groundtruth_area": tf.constant((extent[:, 0] * extent[:, 1] * size * size).astype(np.float32)),
            "height": tf.constant(size),
            "width": tf.constant(size),
            "source_id": tf.constant("0"),
        }
        examples.append(parser.parse_fn(True)(decoded))
    return tf.nest.map_structure(lambda *parts: tf.stack(parts), *examples)


def tf_keras_policy_is_bf16() -> bool:
    import tf_keras

    return tf_keras.mixed_precision.global_policy().name == "mixed_bfloat16"


def main() -> int:
    args, kind, size, batch = peer_arguments(
        lambda parser: parser.add_argument("--variant", choices=("default", "2fc"), default="2fc")
    )
    import numpy as np
    import tensorflow as tf

    start = time.perf_counter()
    tf.random.set_seed(0)
    if kind == "keras":
        module = build(size, args.variant, args.precision)
        image = tf.constant(np.random.default_rng(0).integers(0, 255, (1, size, size, 3)).astype(np.uint8))
        serve = tf.function(module.serve)

        def run():
            out = serve(image)
            return {k: np.asarray(v) for k, v in out.items()}

    elif kind == "train":
        import tf_keras
        from official.core import task_factory

        cfg = experiment(size, args.variant, args.precision)
        task = task_factory.get_task(cfg.task)
        model = task.build_model()
        optimizer = tf_keras.optimizers.SGD(0.01, momentum=0.9)
        inputs = training_batch(cfg, batch)
        step = tf.function(lambda: task.train_step(inputs, model, optimizer))

        def run():
            return {k: np.asarray(v) for k, v in step().items()}

    else:
        raise SystemExit(f"unknown case {args.case}")

    record, out = measure(args.case, start, run, args.repeat)
    if kind == "keras":
        record["num_detections"] = int(np.sum(out["num_detections"]))
    print(json.dumps({**record, "tensorflow": tf.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
