#!/usr/bin/env python3
"""One benchmark case of TF Model Garden's Mask R-CNN, run with the Python of its own venv.

Called by ``benchmarks/model_speed.py --peers``; prints one JSON line in the same format as our
cases. The model is ``maskrcnn_resnetfpn_coco`` built with ``task.build_model()``, random
weights, 1000 test proposals, 100 detections forced (``pre_nms_score_threshold=0``), and the
paper's 2-fc box head with ``--variant 2fc`` (Model Garden's default is 4 conv + 1 fc).
Inference is Model Garden's own serving function (``DetectionModule.serve``: resize, normalise,
anchors, model) in a ``tf.function``, batch 1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def build(size: int, variant: str, precision: str):
    import official.vision  # noqa: F401  (registers the experiments)
    from official.core import exp_factory
    from official.vision.serving import detection

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
    return detection.DetectionModule(params=cfg, batch_size=1, input_image_size=[size, size])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", required=True, help="keras_<S> (in-process inference)")
    parser.add_argument("--variant", choices=("default", "2fc"), default="2fc")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    import numpy as np
    import tensorflow as tf

    kind, size = args.case.split("_")[0], int(args.case.split("_")[1])
    if kind != "keras":
        print(
            json.dumps({"case": args.case, "skipped": "only in-process inference is wired for Model Garden"})
        )
        return 0
    start = time.perf_counter()
    tf.keras.utils.set_random_seed(0) if hasattr(tf, "keras") else None
    module = build(size, args.variant, args.precision)
    image = tf.constant(np.random.default_rng(0).integers(0, 255, (1, size, size, 3)).astype(np.uint8))
    serve = tf.function(module.serve)

    def run():
        out = serve(image)
        return {k: np.asarray(v) for k, v in out.items()}

    out = run()
    first = time.perf_counter() - start
    run()
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "case": args.case,
                "first_call_s": first,
                "median_s": statistics.median(times),
                "min_s": min(times),
                "max_s": max(times),
                "runs": len(times),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                "num_detections": int(np.sum(out["num_detections"])),
                "tensorflow": tf.__version__,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
