"""torchvision Mask R-CNN checkpoints → our model, exactly.

Architectures, recognised from the keys: ``maskrcnn_resnet50_fpn`` (v1: FrozenBN ResNet-50
with epsilon 0, FPN, one-conv RPN head, two-fc box head, four-conv mask head) and
``maskrcnn_resnet50_fpn_v2`` (BN in the FPN and heads, two-conv RPN head, 4conv1fc box head).
Both key formats torchvision has used are read (its 2019 files say ``rpn.head.conv.weight``,
``backbone.fpn.inner_blocks.0.weight``, ``roi_heads.mask_head.mask_fcn1.weight``; today's
``...conv.0.0...``, ``...inner_blocks.0.0...``, ``...mask_head.0.0...``).

Layouts as in :mod:`mrcnn_tf.convert.layouts`; torchvision's 91 outputs
keep index = COCO category id (the 10 unused ids included, so that softmax scores match), and
its background rows of ``bbox_pred`` and channel 0 of the mask logits, which inference never
reads, are dropped.
"""

from __future__ import annotations

import re

import numpy as np

from mrcnn_tf.convert.checkpoint_io import CheckpointError
from mrcnn_tf.convert.layouts import (
    assign_pairs,
    chw_dense_kernel,
    conv_kernel,
    conv_pairs,
    dense_kernel,
    norm_pairs,
    torchvision_resnet_pairs,
    yx_deltas,
)

ARCHS = ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "keypointrcnn_resnet50_fpn")
KEYPOINT_ARCH = "keypointrcnn_resnet50_fpn"
#: The zoo config that reproduces each architecture's conventions.
CONFIGS = {
    "maskrcnn_resnet50_fpn": "mask_rcnn_r50_fpn_torchvision_coco.yaml",
    "maskrcnn_resnet50_fpn_v2": "mask_rcnn_r50_fpn_v2_torchvision_coco.yaml",
    KEYPOINT_ARCH: "keypoint_rcnn_r50_fpn_torchvision_coco.yaml",
}
#: torchvision's 91 COCO labels: index = COCO category id, "N/A" for the 10 unused ids.
COCO_91 = (
    "__background__ person bicycle car motorcycle airplane bus train truck boat traffic_light "
    "fire_hydrant N/A stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear "
    "zebra giraffe N/A backpack umbrella N/A N/A handbag tie suitcase frisbee skis snowboard "
    "sports_ball kite baseball_bat baseball_glove skateboard surfboard tennis_racket bottle N/A "
    "wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog "
    "pizza donut cake chair couch potted_plant bed N/A dining_table N/A N/A toilet N/A tv laptop "
    "mouse remote keyboard cell_phone microwave oven toaster sink refrigerator N/A book clock "
    "vase scissors teddy_bear hair_drier toothbrush"
).split()
COCO_91 = tuple(name.replace("_", " ") for name in COCO_91)

_OLD_TO_NEW = [
    (
        re.compile(r"^backbone\.fpn\.(inner|layer)_blocks\.(\d)\.(weight|bias)$"),
        r"backbone.fpn.\1_blocks.\2.0.\3",
    ),
    (re.compile(r"^rpn\.head\.conv\.(weight|bias)$"), r"rpn.head.conv.0.0.\1"),
    (re.compile(r"^roi_heads\.mask_head\.mask_fcn(\d)\.(weight|bias)$"), None),
]


def label_map(arch: str | None = None) -> dict:
    """``label_map.json`` content: classes 1..90 are COCO category ids 1..90; for Keypoint R-CNN
    one class, person (id 1), with COCO's 17 keypoints, skeleton, flip map and OKS sigmas."""
    if arch == KEYPOINT_ARCH:
        from mrcnn_tf.data.coco_keypoints import COCO_PERSON_KEYPOINTS, COCO_SIGMAS, COCO_SKELETON, flip_map

        keypoints = {
            "names": list(COCO_PERSON_KEYPOINTS),
            "skeleton": [[a - 1, b - 1] for a, b in COCO_SKELETON],
            "flip_map": flip_map(COCO_PERSON_KEYPOINTS),
            "sigmas": list(COCO_SIGMAS),
        }
        return {"categories": [{"id": 1, "name": "person"}], "keypoints": keypoints}
    return {"categories": [{"id": i, "name": name} for i, name in enumerate(COCO_91) if i > 0]}


def normalise_keys(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Today's key names: ``module.`` prefixes stripped, the 2019 names renamed."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.endswith("num_batches_tracked"):
            continue
        for pattern, replacement in _OLD_TO_NEW:
            match = pattern.match(key)
            if match and replacement is None:  # mask_fcn{k} -> mask_head.{k-1}.0
                key = f"roi_heads.mask_head.{int(match.group(1)) - 1}.0.{match.group(2)}"
            elif match:
                key = pattern.sub(replacement, key)
        out[key] = value
    return out


def detect_arch(state: dict[str, np.ndarray], path) -> str:
    """The architecture of a (normalised) state dict, or a :class:`CheckpointError` saying what it is."""
    if any(k.startswith("roi_heads.keypoint_predictor") for k in state):
        if "roi_heads.box_head.5.weight" in state or any(k.startswith("roi_heads.mask_") for k in state):
            raise CheckpointError(
                f"{path}: a Keypoint R-CNN with other heads; only keypointrcnn_resnet50_fpn is read"
            )
        return KEYPOINT_ARCH
    if "fc.weight" in state and "conv1.weight" in state:
        raise CheckpointError(
            f"{path}: an image classifier (conv1, fc) that is not a ResNet-50/101, not a detector; a COCO "
            "Mask R-CNN checkpoint has backbone.body.*, rpn.* and roi_heads.* keys"
        )
    if not any(k.startswith("roi_heads.mask_") for k in state):
        raise CheckpointError(
            f"{path}: not a torchvision Mask R-CNN checkpoint (no roi_heads.mask_head / mask_predictor "
            f"keys; first keys: {', '.join(list(state)[:3])})"
        )
    if "roi_heads.box_head.5.weight" in state:
        return "maskrcnn_resnet50_fpn_v2"
    return "maskrcnn_resnet50_fpn"


def weight_pairs(model, arch: str) -> list:
    """``(variable, torch key, transform)`` for every variable of ``model``."""
    v2 = arch == "maskrcnn_resnet50_fpn_v2"
    backbone, neck = model.backbone, model.neck
    pairs = torchvision_resnet_pairs(backbone, "backbone.body.")
    for i, k in enumerate(neck.input_levels):
        pairs += conv_pairs(neck.laterals[f"C{k}"], f"backbone.fpn.inner_blocks.{i}.0")
        pairs += conv_pairs(neck.outputs[f"C{k}"], f"backbone.fpn.layer_blocks.{i}.0")
        if v2:
            pairs += norm_pairs(neck.lateral_norms[f"C{k}"], f"backbone.fpn.inner_blocks.{i}.1")
            pairs += norm_pairs(neck.output_norms[f"C{k}"], f"backbone.fpn.layer_blocks.{i}.1")
    rpn = model.rpn_head
    for i, conv in enumerate(rpn.convs):
        pairs += conv_pairs(conv, f"rpn.head.conv.{i}.0")
    pairs += conv_pairs(rpn.objectness, "rpn.head.cls_logits")
    pairs += [
        (rpn.box_deltas.kernel, "rpn.head.bbox_pred.weight", lambda w: conv_kernel(yx_deltas(w))),
        (rpn.box_deltas.bias, "rpn.head.bbox_pred.bias", yx_deltas),
    ]
    head = model.box_head
    for i, conv in enumerate(head.tower.convs):
        pairs += conv_pairs(conv, f"roi_heads.box_head.{i}.0")
        pairs += norm_pairs(head.tower.norms[i], f"roi_heads.box_head.{i}.1")
    fc_names = ["roi_heads.box_head.5"] if v2 else ["roi_heads.box_head.fc6", "roi_heads.box_head.fc7"]
    channels = head.tower.filters if head.tower.num_convs else model.neck.num_channels
    transforms = [lambda w: chw_dense_kernel(w, channels)] + [dense_kernel] * (len(head.fcs) - 1)
    for fc, name, transform in zip(head.fcs, fc_names, transforms, strict=True):
        pairs += [(fc.kernel, f"{name}.weight", transform), (fc.bias, f"{name}.bias", None)]
    predictor = head.predictor
    prefix = "roi_heads.box_predictor"
    pairs += [
        (predictor.cls_score.kernel, f"{prefix}.cls_score.weight", dense_kernel),
        (predictor.cls_score.bias, f"{prefix}.cls_score.bias", None),
        (
            predictor.bbox_pred.kernel,
            f"{prefix}.bbox_pred.weight",
            lambda w: dense_kernel(yx_deltas(w, True)),
        ),
        (predictor.bbox_pred.bias, f"{prefix}.bbox_pred.bias", lambda b: yx_deltas(b, True)),
    ]
    if arch == KEYPOINT_ARCH:
        head = model.keypoint_head
        for i, conv in enumerate(head.tower.convs):  # Sequential(conv, ReLU, conv, ReLU, ...)
            pairs += conv_pairs(conv, f"roi_heads.keypoint_head.{2 * i}")
        # ConvTranspose2d weight [in, out, 4, 4] -> Keras Conv2DTranspose [4, 4, out, in]
        return pairs + conv_pairs(head.deconv, "roi_heads.keypoint_predictor.kps_score_lowres")
    mask = model.mask_head
    for i, conv in enumerate(mask.tower.convs):
        pairs += conv_pairs(conv, f"roi_heads.mask_head.{i}.0")
        if v2:
            pairs += norm_pairs(mask.tower.norms[i], f"roi_heads.mask_head.{i}.1")
    pairs += conv_pairs(mask.upsampler, "roi_heads.mask_predictor.conv5_mask")
    pairs += [
        (
            mask.predictor.kernel,
            "roi_heads.mask_predictor.mask_fcn_logits.weight",
            lambda w: conv_kernel(w[1:]),
        ),
        (mask.predictor.bias, "roi_heads.mask_predictor.mask_fcn_logits.bias", lambda b: b[1:]),
    ]
    return pairs


def assign(model, state: dict[str, np.ndarray], arch: str, path) -> None:
    """Set every variable of a built ``model`` from a torchvision ``state`` (normalised keys).

    Raises:
        CheckpointError: see :func:`assign_pairs`.
    """
    assign_pairs(weight_pairs(model, arch), state, f"{arch} checkpoint as torchvision writes it", path)
