#!/usr/bin/env python3
"""Where inference time and memory go: each stage of Mask R-CNN on its own (CPU or GPU).

    python benchmarks/profile_inference.py                    # R50-FPN, 640x640, batch 1
    python benchmarks/profile_inference.py --size 1024 --set model.detection_generator.nms_backend=padded

Each stage runs as its own ``tf.function`` on the previous stage's outputs (median of
``--repeat`` runs after a warm-up), with the same settings as ``model_speed.py`` (1000
proposals, 100 detections forced). The stages add up to about the whole call; the whole call is
timed too.

Memory: resident memory (Linux) after importing TensorFlow and Keras and after building the
model (its weights), and for each stage the peak of TensorFlow's allocator during one more call
above what it held before (the stage's temporaries and outputs; tensors only: not the code,
the graphs or oneDNN's kernels), and the same for the whole call.
"""

from __future__ import annotations

import argparse
import os
import resource
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


def _memory_mb() -> float:
    """Resident memory of this process now (``VmRSS``), MB; NaN where /proc has no such line."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_above(fn) -> float:
    """Peak MB of tensors (TensorFlow's allocator, CPU or GPU:0) during one call of ``fn``,
    above what was allocated before it: the call's temporaries and outputs."""
    import numpy as np
    import tensorflow as tf

    device = "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0"
    before = tf.config.experimental.get_memory_info(device)["current"]
    tf.config.experimental.reset_memory_stats(device)
    for value in tf.nest.flatten(fn()):
        np.asarray(value)
    return (tf.config.experimental.get_memory_info(device)["peak"] - before) / 2**20


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

    imported = _memory_mb()
    _, model = _build(args, args.size)
    weights = sum(v.numpy().nbytes for v in model.weights) / 2**20
    built = _memory_mb()
    images = tf.constant(_image(args.size, "float32"))
    size = tf.constant([[args.size, args.size]], tf.float32)
    x = (images - tf.constant(model.pixel_mean)) / tf.constant(model.pixel_std)
    rows = []

    def stage(name, fn):
        fn = tf.function(fn)
        rows.append((name, _median(fn, args.repeat), _peak_above(fn)))
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
    before_whole = _memory_mb()
    call = tf.function(lambda: model({"images": images}, training=False))
    whole = _median(call, args.repeat)
    whole_peak = _peak_above(call)

    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # as model_speed's peer_timing
    total = sum(t for _, t, _ in rows)
    print(f"{args.config} {args.size}x{args.size} batch 1, {args.precision}, TF {tf.__version__}")
    print(f"  {'stage':<44}{'time':>9}     {'share':>6}{'tensors: peak above before':>29}")
    for name, seconds, peak in rows:
        print(f"  {name:<44}{seconds * 1000:9.1f} ms  {100 * seconds / total:5.1f}%{peak:>26.0f} MB")
    print(f"  {'sum of stages':<44}{total * 1000:9.1f} ms")
    print(f"  {'whole model call':<44}{whole * 1000:9.1f} ms  {'':6}{whole_peak:>26.0f} MB")
    print(
        f"resident: {imported:.0f} MB after importing TensorFlow/Keras/mrcnn_tf, {built:.0f} MB after "
        f"building the model ({weights:.0f} MB of weights), {before_whole:.0f} MB before the whole "
        f"call (the stages' outputs still held); peak of the process {peak_rss:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
