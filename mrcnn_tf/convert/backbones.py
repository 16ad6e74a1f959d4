"""ImageNet classifiers → the ResNet backbone of a zoo config, as a start for COCO training.

* torchvision ``resnet50``/``resnet101`` (``conv1``, ``bn1``, ``layer{1..4}``, ``fc``): the stride
  in the 3×3 conv and ImageNet mean/std on RGB, as our ``mask_rcnn_r50_fpn_*``/``r101`` configs;
* MSRA ``R-50.pkl``/``R-101.pkl`` (Detectron2's ``ImageNetPretrained/MSRA``, Caffe2 blob names
  ``res2_0_branch2a_w``, ``res2_0_branch2a_bn_s``/``_b``): the stride in the 1×1 conv, BGR input
  with std 1 absorbed into conv1 — conv1 is turned to RGB and the folded batch norm becomes a
  frozen norm with mean 0 and variance ``1 - eps`` (exactly the affine transform Caffe2 applies).

The result is a run directory of the config's whole model (only the backbone is the file's;
the rest is fresh) with ``backbone.json``: ``train.init_weights: DIR`` then takes the backbone
only, and refuses a model whose backbone conventions differ (an MSRA backbone in a model that
puts the stride in the 3×3 conv computes something else).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from mrcnn_tf.convert.checkpoint_io import CheckpointError
from mrcnn_tf.convert.layouts import bgr_conv_kernel, conv_kernel, torchvision_resnet_pairs

MANIFEST = "backbone.json"
#: Where to get each ImageNet start, by the folder name the zoo configs give it.
KNOWN = {
    "resnet50_imagenet": (
        "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        "mrcnn-tf convert torchvision resnet50-0676ba61.pth --out {path}",
    ),
    "resnet101_imagenet": (
        "https://download.pytorch.org/models/resnet101-63fe2227.pth",
        "mrcnn-tf convert torchvision resnet101-63fe2227.pth --out {path}",
    ),
}
#: Caffe2 ImageNet files carry these besides the backbone (the classifier, solver state).
_IGNORED = re.compile(r"^(pred_[wb]|fc1000_[wb]|.*_momentum|lr|weight_order|model_iter)$")


def classifier_depth(state: dict[str, np.ndarray]) -> tuple[str, int] | None:
    """``("torchvision" | "msra", depth)`` of an ImageNet ResNet classifier, else None."""
    blocks = {"torchvision": r"^layer3\.(\d+)\.conv1\.weight$", "msra": r"^res4_(\d+)_branch2a_w$"}
    for source, pattern in blocks.items():
        found = [int(m.group(1)) for k in state if (m := re.match(pattern, k))]
        if found and ("conv1_w" in state or "conv1.weight" in state):
            return source, {6: 50, 23: 101, 36: 152}.get(max(found) + 1, 0)
    return None


def _norm_msra(layer, prefix: str) -> list:
    eps = float(layer.epsilon)
    return [
        (layer.gamma, f"{prefix}_s", None),
        (layer.beta, f"{prefix}_b", None),
        (layer.moving_mean, f"{prefix}_s", lambda s: np.zeros_like(s)),
        (layer.moving_variance, f"{prefix}_s", lambda s: np.full_like(s, 1.0 - eps)),
    ]


def backbone_pairs(backbone, source: str) -> list:
    """``(variable, key, transform)`` for every variable of our ``ResNet``."""
    if source == "torchvision":
        return torchvision_resnet_pairs(backbone)
    pairs = [(backbone.stem_conv.kernel, "conv1_w", bgr_conv_kernel)]
    pairs += _norm_msra(backbone.stem_norm, "res_conv1_bn")
    for s, stage in enumerate(backbone.stages):
        for b, block in enumerate(stage):
            prefix = f"res{s + 2}_{b}"
            for branch, conv, norm in zip("abc", block.convs, block.norms, strict=True):
                pairs += [(conv.kernel, f"{prefix}_branch2{branch}_w", conv_kernel)]
                pairs += _norm_msra(norm, f"{prefix}_branch2{branch}_bn")
            if block.shortcut is not None:
                pairs += [(block.shortcut.kernel, f"{prefix}_branch1_w", conv_kernel)]
                pairs += _norm_msra(block.shortcut_norm, f"{prefix}_branch1_bn")
    return pairs


def requirements(source: str, depth: int) -> dict:
    """The model settings a backbone of ``source`` needs (checked by ``train.init_weights``)."""
    if source == "torchvision":
        mean, std, stride_in_1x1 = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375], False
    else:  # MSRA: BGR mean, std absorbed into conv1; conv1 is turned to RGB here
        mean, std, stride_in_1x1 = [123.675, 116.28, 103.53], [1.0, 1.0, 1.0], True
    return {
        "model.backbone.depth": depth,
        "model.backbone.stride_in_1x1": stride_in_1x1,
        "model.pixel_mean": mean,
        "model.pixel_std": std,
    }


def config_overrides(source: str, depth: int) -> list[str]:
    """``--set`` overrides that make a zoo config's model fit the backbone."""
    return [f"{key}={json.dumps(value)}" for key, value in requirements(source, depth).items()]


def write_manifest(folder: Path, source: str, depth: int, checkpoint: str) -> None:
    manifest = {"source": source, "checkpoint": str(checkpoint), "components": ["backbone"]}
    manifest["requires"] = requirements(source, depth)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def check_manifest(model, folder: Path) -> list[str] | None:
    """The components to take from a converted backbone folder (None if it has no manifest).

    Raises:
        CheckpointError: the model's backbone conventions are not those the weights need.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text(encoding="utf-8"))
    actual = {
        "model.backbone.depth": getattr(model.backbone, "depth", None),
        "model.backbone.stride_in_1x1": getattr(model.backbone, "stride_in_1x1", None),
        "model.pixel_mean": [float(v) for v in model.pixel_mean],
        "model.pixel_std": [float(v) for v in model.pixel_std],
    }
    wrong = [
        f"{key}: {actual[key]!r}, the weights need {value!r}"
        for key, value in manifest["requires"].items()
        if (np.asarray(actual[key], np.float64).tolist() != np.asarray(value, np.float64).tolist())
    ]
    if wrong:
        raise CheckpointError(
            f"train.init_weights {folder}: a {manifest['source']} ImageNet backbone, but this model has "
            f"{'; '.join(wrong)} (set those keys)"
        )
    return list(manifest["components"])


def missing_start_message(path: str) -> str | None:
    """Where to get a zoo config's ImageNet start that is not there yet, or None."""
    known = KNOWN.get(Path(path).name)
    if known is None:
        return None
    url, command = known
    return (
        f"train.init_weights: {path} does not exist: the config starts from ImageNet weights. Download "
        f"{url} and run `{command.format(path=path)}` (or set train.init_weights: null to start from scratch)"
    )


def is_ignored(key: str) -> bool:
    """Keys of an ImageNet file that are not the backbone (classifier, solver state)."""
    return key.startswith("fc.") or key.endswith("num_batches_tracked") or bool(_IGNORED.match(key))
