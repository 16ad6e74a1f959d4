"""Detectron2 model-zoo Mask R-CNN state dicts with the real key names and shapes (random values),
written as its ``.pkl`` files are: ``{"model": {name: ndarray}, "__author__": ...}``.

Detectron2 cannot be installed here; the names and shapes follow its module code (``ResNet``
``BottleneckBlock`` with ``conv{1,2,3}.norm`` and ``shortcut``, ``FPN`` ``fpn_lateral{k}`` /
``fpn_output{k}``, ``StandardRPNHead``, ``FastRCNNConvFCHead`` ``fc1``/``fc2``,
``FastRCNNOutputLayers`` with 81 class logits and 320 box deltas, ``MaskRCNNConvUpsampleHead``
``mask_fcn{1..4}``/``deconv``/``predictor``, ``Res5ROIHeads`` ``res5``), as listed in
``shared/reference/converters.md`` §2.2-2.3 (tensorpack's ``convert_d2.py`` enumerates the same).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def _conv_norm(out: dict, name: str, cout: int, cin: int, k: int) -> None:
    out[f"{name}.weight"] = (cout, cin, k, k)
    for part in ("weight", "bias", "running_mean", "running_var"):
        out[f"{name}.norm.{part}"] = (cout,)


def _resnet(out: dict, prefix: str, stages=(2, 3, 4, 5), stem: bool = True) -> None:
    if stem:
        _conv_norm(out, f"{prefix}stem.conv1", 64, 3, 7)
    blocks = {2: 3, 3: 4, 4: 6, 5: 3}
    cin = 64 if stages[0] == 2 else 64 * 2 ** (stages[0] - 2) * 2  # res5 reads res4's 1024
    for stage in stages:
        width = 64 * 2 ** (stage - 2)
        for b in range(blocks[stage]):
            name = f"{prefix}res{stage}.{b}"
            _conv_norm(out, f"{name}.conv1", width, cin, 1)
            _conv_norm(out, f"{name}.conv2", width, width, 3)
            _conv_norm(out, f"{name}.conv3", width * 4, width, 1)
            if b == 0:
                _conv_norm(out, f"{name}.shortcut", width * 4, cin, 1)
            cin = width * 4


def shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of Detectron2's ``mask_rcnn_R_50_FPN`` or ``mask_rcnn_R_50_C4`` final."""
    out: dict[str, tuple[int, ...]] = {}
    if arch == "mask_rcnn_R_50_FPN":
        _resnet(out, "backbone.bottom_up.")
        for k, c in zip(range(2, 6), (256, 512, 1024, 2048), strict=True):
            out[f"backbone.fpn_lateral{k}.weight"], out[f"backbone.fpn_lateral{k}.bias"] = (
                (256, c, 1, 1),
                (256,),
            )
            out[f"backbone.fpn_output{k}.weight"], out[f"backbone.fpn_output{k}.bias"] = (
                (256, 256, 3, 3),
                (256,),
            )
        channels, anchors, feature = 256, 3, 256 * 7 * 7
        out["roi_heads.box_head.fc1.weight"], out["roi_heads.box_head.fc1.bias"] = (1024, feature), (1024,)
        out["roi_heads.box_head.fc2.weight"], out["roi_heads.box_head.fc2.bias"] = (1024, 1024), (1024,)
        head_dim, mask_in = 1024, 256
        for i in range(1, 5):
            out[f"roi_heads.mask_head.mask_fcn{i}.weight"] = (256, 256, 3, 3)
            out[f"roi_heads.mask_head.mask_fcn{i}.bias"] = (256,)
        for level in range(5):  # old finals still carry the anchors (the converter drops them)
            out[f"proposal_generator.anchor_generator.cell_anchors.{level}"] = (3, 4)
    else:
        _resnet(out, "backbone.", stages=(2, 3, 4))
        _resnet(out, "roi_heads.", stages=(5,), stem=False)
        channels, anchors, head_dim, mask_in = 1024, 15, 2048, 2048
    out["proposal_generator.rpn_head.conv.weight"] = (channels, channels, 3, 3)
    out["proposal_generator.rpn_head.conv.bias"] = (channels,)
    out["proposal_generator.rpn_head.objectness_logits.weight"] = (anchors, channels, 1, 1)
    out["proposal_generator.rpn_head.objectness_logits.bias"] = (anchors,)
    out["proposal_generator.rpn_head.anchor_deltas.weight"] = (anchors * 4, channels, 1, 1)
    out["proposal_generator.rpn_head.anchor_deltas.bias"] = (anchors * 4,)
    out["roi_heads.box_predictor.cls_score.weight"] = (81, head_dim)
    out["roi_heads.box_predictor.cls_score.bias"] = (81,)
    out["roi_heads.box_predictor.bbox_pred.weight"] = (320, head_dim)
    out["roi_heads.box_predictor.bbox_pred.bias"] = (320,)
    out["roi_heads.mask_head.deconv.weight"] = (mask_in, 256, 2, 2)
    out["roi_heads.mask_head.deconv.bias"] = (256,)
    out["roi_heads.mask_head.predictor.weight"] = (80, 256, 1, 1)
    out["roi_heads.mask_head.predictor.bias"] = (80,)
    return out


def state_dict(arch: str, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in shapes(arch).items():
        value = rng.normal(0, 0.01, shape).astype(np.float32)
        if key.endswith("running_var"):
            value = np.abs(value) + 1.0
        out[key] = value
    return out


def write_pkl(path: Path, state: dict[str, np.ndarray]) -> Path:
    path.write_bytes(pickle.dumps({"model": state, "__author__": "Detectron2 Model Zoo"}))
    return path
