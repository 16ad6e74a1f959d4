#!/usr/bin/env python3
"""Where inference time goes: each stage of Mask R-CNN timed on its own (CPU or GPU).

    python benchmarks/profile_inference.py                    # R50-FPN, 640x640, batch 1
    python benchmarks/profile_inference.py --size 1024 --set model.detection_generator.nms_backend=padded

Each stage runs as its own ``tf.function`` on the previous stage's outputs (median of
``--repeat`` runs after a warm-up), with the same settings as ``model_speed.py`` (1000
proposals, 100 detections forced). The stages add up to about the whole call; the whole call is
timed too.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _median(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls of ``fn`` after a warm-up (model_speed's timing loop)."""
    import time

    from model_speed import _peer_timing, _synced

    record, _ = _peer_timing().measure("stage", time.perf_counter(), _synced(fn), repeat)
    return record["median_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="mask_rcnn_r50_fpn_1x_coco")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--precision", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument("--set", action="append", default=[])
    parser.set_defaults(xla=False)  # model_speed's settings without its XLA variant
    args = parser.parse_args(argv)

    import tensorflow as tf
    from model_speed import _build, _image

    from mrcnn_tf.modeling.detectors import targets as target_ops

    _, model = _build(args, args.size)
    images = tf.constant(_image(args.size, "float32"))
    size = tf.constant([[args.size, args.size]], tf.float32)
    x = (images - tf.constant(model.pixel_mean)) / tf.constant(model.pixel_std)
    rows = []

    def stage(name, fn):
        fn = tf.function(fn)
        rows.append((name, _median(fn, args.repeat)))
        return fn()

    features = stage("backbone", lambda: model.backbone(x, training=False))
    pyramid = stage("FPN", lambda: model.neck(features))
    anchors = model.anchor_generator(pyramid)
    rpn = stage("RPN head", lambda: model.rpn_head({k: pyramid[k] for k in anchors}))
    proposals = stage(
        "proposals (top-k, decode, NMS per level)",
        lambda: model.proposal_generator(rpn[0], rpn[1], anchors, size, training=False),
    )
    rois, _, valid = proposals
    box_features = stage("box RoIAlign (1000 RoIs, 7x7)", lambda: model.box_roi_aligner(pyramid, rois))
    head = stage("box head (2 fc)", lambda: model.box_head(box_features, training=False))

    def detect():
        return model.detection_generator(head["logits"], head["deltas"], rois, valid, size)

    generator = model.detection_generator
    detections = stage(f"decode + per-class NMS ({generator.nms_backend})", detect)
    det_boxes, det_classes = detections["boxes"], detections["classes"]
    mask_features = stage(
        "mask RoIAlign (100 RoIs, 14x14)", lambda: model.mask_roi_aligner(pyramid, det_boxes)
    )
    logits = stage("mask head (4 conv + deconv)", lambda: model.mask_head(mask_features, training=False))
    stage("mask class select + sigmoid", lambda: tf.sigmoid(target_ops.select_class(logits, det_classes)))
    whole = _median(tf.function(lambda: model({"images": images}, training=False)), args.repeat)

    total = sum(t for _, t in rows)
    print(f"{args.config} {args.size}x{args.size} batch 1, {args.precision}, TF {tf.__version__}")
    for name, seconds in rows:
        print(f"  {name:<44}{seconds * 1000:9.1f} ms  {100 * seconds / total:5.1f}%")
    print(f"  {'sum of stages':<44}{total * 1000:9.1f} ms")
    print(f"  {'whole model call':<44}{whole * 1000:9.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
