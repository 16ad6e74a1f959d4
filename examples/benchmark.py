"""Time a config's training step and inference, and the two RoIAlign backends.

    .venv/bin/python examples/benchmark.py --config mask_rcnn_r50_fpn_1x_coco --size 512 --batch 2

Prints milliseconds per call (median of ``--repeat`` runs after one warm-up/compile run). Record
results in BENCHMARKS.md with the machine, the versions and the command.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def timed(fn, repeat: int) -> float:
    fn()  # trace / compile
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        for value in out.values() if isinstance(out, dict) else [out]:
            np.asarray(value)  # wait for the device
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="mask_rcnn_r18_fpn_synthetic")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--xla", action="store_true", help="gather aligners + padded NMS, jit_compile=True")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    import mrcnn_tf
    from mrcnn_tf.config import load_config
    from mrcnn_tf.data.synthetic import random_model_batch
    from mrcnn_tf.export.targets import XLA_OVERRIDES
    from mrcnn_tf.ops.roi_align import multilevel_roi_align

    overrides = list(XLA_OVERRIDES) if args.xla else []
    model = mrcnn_tf.build_model(load_config(args.config, overrides))
    x = random_model_batch(args.batch, args.size)
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)

    @tf.function(jit_compile=args.xla)
    def train_step(inputs):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(y_pred=model(inputs, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    infer = tf.function(lambda images: model({"images": images}), jit_compile=args.xla)
    device = tf.config.list_logical_devices("GPU")
    print(f"TF {tf.__version__}, Keras {keras.__version__}, device: {device[0].name if device else 'CPU'}")
    print(f"{args.config} batch {args.batch} at {args.size}x{args.size}, xla={args.xla}")
    print(f"  train step: {timed(lambda: train_step(x), args.repeat):9.1f} ms")
    print(f"  inference:  {timed(lambda: infer(x['images']), args.repeat):9.1f} ms")

    rng = np.random.default_rng(1)
    pyramid = [
        rng.normal(size=(2, args.size // 2**k, args.size // 2**k, 256)).astype(np.float32)
        for k in range(2, 6)
    ]
    boxes = x["gt_boxes"][:, :1].repeat(512, axis=1)
    for backend in ("crop_and_resize", "gather"):
        fn = tf.function(lambda p, b, backend=backend: multilevel_roi_align(p, b, 7, backend=backend))
        ms = timed(lambda fn=fn: fn(pyramid, boxes), args.repeat)
        print(f"  RoIAlign 2x512 RoIs 7x7x256 ({backend}): {ms:7.1f} ms")


if __name__ == "__main__":
    main()
