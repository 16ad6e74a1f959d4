"""A tiny Mask R-CNN on a tiny synthetic set: the model and data of the training tests."""

from __future__ import annotations

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
