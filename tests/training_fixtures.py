"""A tiny Mask R-CNN on a tiny synthetic set: the model and data of the training tests."""

from __future__ import annotations

from mrcnn_tf.export.targets import XLA_OVERRIDES

TINY_MODEL = [
    "model.backbone.width=8",
    "model.backbone.norm=bn",
    "model.backbone.freeze_at=0",
    "model.neck.num_channels=16",
    "model.anchor_generator.sizes=[16,32,64,128,256]",
    "model.box_head.fc_dim=32",
    "model.mask_head.conv_dim=8",
    "model.mask_head.num_convs=1",
    "model.roi_sampler.num_samples=32",
    "model.anchor_labeler.num_samples=64",
    "model.proposal_generator.pre_nms_topk_train=200",
    "model.proposal_generator.post_nms_topk_train=64",
    "model.proposal_generator.pre_nms_topk_test=100",
    "model.proposal_generator.post_nms_topk_test=32",
    "model.detection_generator.max_detections=20",
]
TINY_DATA = [
    "data.train.num_images=4",
    "data.val.num_images=2",
    "data.train.image_size=64",
    "data.val.image_size=64",
    "data.pipeline.batch_size=2",
    "data.pipeline.min_size=64",
    "data.pipeline.max_size=64",
    "data.pipeline.mask_size=16",
    "data.pipeline.max_instances=6",
]
TINY_TRAIN = [
    "optimizer={type: SGD, momentum: 0.9, weight_decay: 0.0001, clipnorm: 10.0}",
    "schedule={type: WarmupStepDecay, base_learning_rate: 0.01, warmup_steps: 2, warmup_factor: 0.1}",
    "train.max_steps=4",
    "train.steps_per_loop=2",
    "train.num_pictures=1",
]
TINY = TINY_MODEL + TINY_DATA + TINY_TRAIN
CONFIG = "mask_rcnn_r18_fpn_synthetic"


def tiny_config(*extra: str) -> dict:
    from mrcnn_tf.config import load_config

    return load_config(CONFIG, [*TINY, *extra])


#: The distributed evaluation tests' run: 7 validation images in batches of 2 (4 batches, the last
#: one short), every detection slot kept.
DISTRIBUTED_EVAL = (
    "model.detection_generator.score_threshold=0.0",
    "data.val.num_images=7",
    "data.pipeline.batch_size=2",
)

#: An XLA-compiled training step and what it needs (static shapes, gather RoIAlign, padded NMS).
XLA_TRAINING = ["train.jit_compile=true", *XLA_OVERRIDES]


def child_env(**extra: str) -> dict:
    """The environment of a child process: this one's, quiet TensorFlow, no inherited ``TF_CONFIG``."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


def worker_envs(n: int, **extra: str) -> list[dict]:
    """:func:`child_env` for each worker of an ``n``-worker cluster on free localhost ports."""
    import json
    import socket

    sockets = [socket.socket() for _ in range(n)]  # all bound at once: n different ports
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    return [
        child_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}), **extra)
        for i in range(n)
    ]


def strategy_for(mode: str):
    """The strategy of a child process's run: ``single`` (one device), ``mirrored`` (the CPU split
    into two logical devices; call before TensorFlow runs anything) or ``multi_worker``
    (``TF_CONFIG``)."""
    import tensorflow as tf

    from mrcnn_tf.training.strategy import build_strategy

    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    return build_strategy({"single": "default", "multi_worker": "multi_worker"}[mode])


def evaluation_pass(model, pipeline, image) -> tuple[dict, dict]:
    """The model on the evaluation pipeline's resize of a uint8 ``[H, W, 3]`` image, as the
    exports and ``predict`` see it: ``(outputs of batch size 1, the pipeline's example)`` (its
    ``image_scale`` maps outputs back to the image)."""
    import tensorflow as tf

    example = {
        "image": tf.constant(image),
        "image_id": tf.constant(0, tf.int64),
        "boxes": tf.zeros([0, 4]),
        "classes": tf.zeros([0], tf.int32),
        "masks": tf.zeros([0, pipeline.mask_size, pipeline.mask_size], tf.uint8),
    }
    batch = pipeline.transform(example, tf.constant([0, 0]), training=False)
    out = model({"images": batch["images"][None], "image_size": batch["image_size"][None]}, training=False)
    return out, batch
