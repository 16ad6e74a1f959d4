"""Detectron2 model-zoo Mask R-CNN checkpoints (``model_final_*.pkl``) → our model.

Architectures, recognised from the keys: R50-FPN (``backbone.bottom_up.*``, ``backbone.fpn_*``;
the 1x and 3x models) and R50-C4 (``backbone.res4.*``, ``roi_heads.res5.*``). The ``.pkl`` holds
NumPy arrays (read by :func:`mrcnn_tf.convert.checkpoint_io.read_checkpoint`, no torch).

Conventions handled here (the zoo config sets the rest: adaptive RoIAlign, unrounded anchors at
offset 0, the stride in the 1×1 conv, BN epsilon 1e-5): Detectron2 feeds BGR images in 0..255
with the MSRA mean and std 1 — our models take RGB, so conv1's input channels are reversed (the
config's mean is the RGB order of the same numbers); the background is the **last** of the 81
class logits (ours is first), ``bbox_pred`` has no background rows and its deltas are
``(dx, dy, dw, dh)`` (ours ``(dy, dx, dh, dw)``); the mask predictor has 80 channels, as ours.
Class k (1..80) is the k-th COCO category in id order.
"""

from __future__ import annotations

import numpy as np

from mrcnn_tf.convert.checkpoint_io import CheckpointError
from mrcnn_tf.convert.layouts import (
    assign_pairs,
    bgr_conv_kernel,
    chw_dense_kernel,
    conv_kernel,
    conv_pairs,
    dense_kernel,
    norm_pairs,
    yx_deltas,
)
from mrcnn_tf.convert.torchvision import COCO_91

ARCHS = ("mask_rcnn_R_50_FPN", "mask_rcnn_R_50_C4")
CONFIGS = {
    "mask_rcnn_R_50_FPN": "mask_rcnn_r50_fpn_detectron2_coco.yaml",
    "mask_rcnn_R_50_C4": "mask_rcnn_r50_c4_detectron2_coco.yaml",
}
#: Keys the model does not use: anchors (old finals), normalisation constants.
IGNORED = ("proposal_generator.anchor_generator.cell_anchors.", "pixel_mean", "pixel_std")


def label_map(arch: str | None = None) -> dict:
    """``label_map.json`` content: class k is the k-th COCO category in id order (80 classes)."""
    return {"categories": [{"id": i, "name": n} for i, n in enumerate(COCO_91) if i > 0 and n != "N/A"]}


def normalise_keys(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``module.`` prefixes stripped; anchors and normalisation constants dropped."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith(IGNORED) or key.endswith("num_batches_tracked"):
            continue
        out[key] = value
    return out


def detect_arch(state: dict[str, np.ndarray], path) -> str:
    """The architecture of a (normalised) state dict, or a :class:`CheckpointError` saying what it is."""
    keys = list(state)
    if any(k.startswith("roi_heads.keypoint_head") for k in keys):
        raise CheckpointError(
            f"{path}: a Keypoint R-CNN checkpoint (roi_heads.keypoint_head.*); this takes Mask R-CNN"
        )
    if any(k.endswith("_w") or k.endswith("_b") for k in keys[:20]) and not any("." in k for k in keys[:20]):
        raise CheckpointError(
            f"{path}: a Caffe2/Detectron1 file (blob names like {keys[0]}), e.g. an MSRA ImageNet backbone; "
            "only Detectron2 model-zoo Mask R-CNN finals are converted"
        )
    if any(".norm." in k for k in keys if k.startswith(("backbone.fpn_", "roi_heads.box_head.conv"))):
        raise CheckpointError(
            f"{path}: a Detectron2 model with normalised FPN/heads (the LSJ new_baselines); only the "
            "R50-FPN and R50-C4 Mask R-CNN models of the classic zoo are converted"
        )
    if not any(k.startswith("roi_heads.mask_head.") for k in keys):
        raise CheckpointError(
            f"{path}: not a Detectron2 Mask R-CNN checkpoint (no roi_heads.mask_head keys; first keys: "
            f"{', '.join(keys[:3])})"
        )
    if "backbone.fpn_lateral2.weight" in state:
        return "mask_rcnn_R_50_FPN"
    if "roi_heads.res5.0.conv1.weight" in state:
        return "mask_rcnn_R_50_C4"
    raise CheckpointError(
        f"{path}: a Detectron2 Mask R-CNN, but neither R50-FPN nor R50-C4 (first keys: {keys[:3]})"
    )


def _block(block, prefix: str) -> list:
    pairs = []
    for k, (conv, norm) in enumerate(zip(block.convs, block.norms, strict=True)):
        pairs += conv_pairs(conv, f"{prefix}.conv{k + 1}") + norm_pairs(norm, f"{prefix}.conv{k + 1}.norm")
    if block.shortcut is not None:
        pairs += conv_pairs(block.shortcut, f"{prefix}.shortcut") + norm_pairs(
            block.shortcut_norm, f"{prefix}.shortcut.norm"
        )
    return pairs


def weight_pairs(model, arch: str) -> list:
    """``(variable, Detectron2 key, transform)`` for every variable of ``model``."""
    fpn = arch == "mask_rcnn_R_50_FPN"
    body = "backbone.bottom_up" if fpn else "backbone"
    backbone = model.backbone
    pairs = [(backbone.stem_conv.kernel, f"{body}.stem.conv1.weight", bgr_conv_kernel)]
    pairs += norm_pairs(backbone.stem_norm, f"{body}.stem.conv1.norm")
    for s, stage in enumerate(backbone.stages):
        for b, block in enumerate(stage):
            pairs += _block(block, f"{body}.res{s + 2}.{b}")
    if fpn:
        for k in model.neck.input_levels:
            pairs += conv_pairs(model.neck.laterals[f"C{k}"], f"backbone.fpn_lateral{k}")
            pairs += conv_pairs(model.neck.outputs[f"C{k}"], f"backbone.fpn_output{k}")
    rpn = model.rpn_head
    names = ["proposal_generator.rpn_head.conv"] if len(rpn.convs) == 1 else [
        f"proposal_generator.rpn_head.conv.conv{i}" for i in range(len(rpn.convs))
    ]  # fmt: skip
    for conv, name in zip(rpn.convs, names, strict=True):
        pairs += conv_pairs(conv, name)
    pairs += conv_pairs(rpn.objectness, "proposal_generator.rpn_head.objectness_logits")
    pairs += [
        (
            rpn.box_deltas.kernel,
            "proposal_generator.rpn_head.anchor_deltas.weight",
            lambda w: conv_kernel(yx_deltas(w)),
        ),
        (rpn.box_deltas.bias, "proposal_generator.rpn_head.anchor_deltas.bias", yx_deltas),
    ]
    head = model.box_head
    if fpn:  # Detectron2 flattens the RoI map (C, H, W), we flatten (H, W, C)
        channels = model.neck.num_channels
        transforms = [lambda w: chw_dense_kernel(w, channels)] + [dense_kernel] * (len(head.fcs) - 1)
        for i, (fc, transform) in enumerate(zip(head.fcs, transforms, strict=True)):
            pairs += [(fc.kernel, f"roi_heads.box_head.fc{i + 1}.weight", transform)]
            pairs += [(fc.bias, f"roi_heads.box_head.fc{i + 1}.bias", None)]
    else:
        for i, block in enumerate(head.blocks):
            pairs += _block(block, f"roi_heads.res5.{i}")
    predictor = head.predictor

    def background_first(a):  # Detectron2's background is the last class, ours the first
        return np.concatenate([a[-1:], a[:-1]])

    prefix = "roi_heads.box_predictor"
    pairs += [
        (
            predictor.cls_score.kernel,
            f"{prefix}.cls_score.weight",
            lambda w: dense_kernel(background_first(w)),
        ),
        (predictor.cls_score.bias, f"{prefix}.cls_score.bias", background_first),
        (predictor.bbox_pred.kernel, f"{prefix}.bbox_pred.weight", lambda w: dense_kernel(yx_deltas(w))),
        (predictor.bbox_pred.bias, f"{prefix}.bbox_pred.bias", yx_deltas),
    ]
    mask = model.mask_head
    for i, conv in enumerate(mask.tower.convs):
        pairs += conv_pairs(conv, f"roi_heads.mask_head.mask_fcn{i + 1}")
    pairs += conv_pairs(mask.upsampler, "roi_heads.mask_head.deconv")
    pairs += conv_pairs(mask.predictor, "roi_heads.mask_head.predictor")
    return pairs


def assign(model, state: dict[str, np.ndarray], arch: str, path) -> None:
    """Set every variable of a built ``model`` from a Detectron2 ``state`` (normalised keys)."""
    assign_pairs(weight_pairs(model, arch), state, f"Detectron2 {arch} checkpoint", path)
