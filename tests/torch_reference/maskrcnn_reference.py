"""torchvision's Mask R-CNN as the reference: seeded random weights, a checkpoint, every stage.

Runs in the separate torch environment (``python3 dev.py test-torch`` creates it); it imports
neither TensorFlow nor mrcnn_tf. Writes into ``--out``:

* ``model.pth``: the state dict, as ``torch.save`` writes it (``--old-keys``: the key names of
  torchvision's 2019 COCO file, which torchvision renames when it loads them; ``--legacy-format``:
  the serialization of that time, before torch 1.6's zip files);
* ``stages.npz``: the preprocessed image and every stage's output on it (NCHW as torch has it;
  boxes ``[x1, y1, x2, y2]``): FPN maps, RPN logits and deltas, proposals, box RoI features,
  class logits, box deltas, detections, mask RoI features, 28×28 mask probabilities, and the
  final pasted masks in the input image.

Weights: seeded, with non-trivial batch-norm statistics (means ~N(0, 0.1), variances in
[0.5, 2]) and "decisive" heads (scaled class logits) so that detections are well separated.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torchvision
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn_v2
from torchvision.models.detection._utils import overwrite_eps
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import misc as misc_nn_ops


def build(arch: str, min_size: int, max_size: int) -> torch.nn.Module:
    if arch == "v1":  # as maskrcnn_resnet50_fpn builds it with COCO weights: FrozenBN, eps 0
        backbone = torchvision.models.resnet50(weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d)
        backbone = _resnet_fpn_extractor(backbone, 3)
        model = MaskRCNN(backbone, num_classes=91, min_size=min_size, max_size=max_size)
        overwrite_eps(model, 0.0)
    else:
        model = maskrcnn_resnet50_fpn_v2(
            weights=None, weights_backbone=None, num_classes=91, min_size=min_size, max_size=max_size
        )
    return model


def randomise(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)

    def uniform(shape, low, high):
        return low + (high - low) * torch.rand(shape, generator=generator)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                fan_in = (
                    module.weight[0].numel()
                    if not isinstance(module, torch.nn.ConvTranspose2d)
                    else (module.weight.shape[0] * module.weight[0, 0].numel() / 4)
                )
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5
                )
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
            if isinstance(module, (torch.nn.BatchNorm2d, misc_nn_ops.FrozenBatchNorm2d)):
                c = module.weight.shape[0]
                module.weight.copy_(uniform((c,), 0.5, 1.0))
                module.bias.copy_(torch.randn((c,), generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn((c,), generator=generator) * 0.1)
                module.running_var.copy_(uniform((c,), 0.5, 2.0))
        heads = model.roi_heads
        heads.box_predictor.cls_score.weight.mul_(0.5)  # decisive, not saturated (no ties at 1.0)
        heads.box_predictor.bbox_pred.weight.mul_(0.1)  # boxes near their proposals, not slivers
        model.rpn.head.bbox_pred.weight.mul_(0.1)
        model.rpn.head.cls_logits.weight.mul_(0.2)  # logits within ~±15: sigmoid does not saturate to ties


OLD_KEYS = [  # (new prefix, old prefix) as torchvision's 2019 files name them
    *[(f"backbone.fpn.inner_blocks.{i}.0.", f"backbone.fpn.inner_blocks.{i}.") for i in range(4)],
    *[(f"backbone.fpn.layer_blocks.{i}.0.", f"backbone.fpn.layer_blocks.{i}.") for i in range(4)],
    ("rpn.head.conv.0.0.", "rpn.head.conv."),
    *[(f"roi_heads.mask_head.{i}.0.", f"roi_heads.mask_head.mask_fcn{i + 1}.") for i in range(4)],
]


def old_names(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        for new, old in OLD_KEYS:
            if key.startswith(new):
                key = old + key[len(new) :]
                break
        out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", choices=("v1", "v2"), default="v1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image", required=True, help="an RGB picture (PNG/JPEG)")
    parser.add_argument("--min-size", type=int, default=800)
    parser.add_argument("--max-size", type=int, default=1333)
    parser.add_argument("--old-keys", action="store_true")
    parser.add_argument(
        "--legacy-format",
        action="store_true",
        help="torch.save's pre-1.6 format (not a zip), as 2019 files are",
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = build(args.arch, args.min_size, args.max_size).eval()
    randomise(model, args.seed)
    state = model.state_dict()
    torch.save(
        old_names(state) if args.old_keys else state,
        out / "model.pth",
        _use_new_zipfile_serialization=not args.legacy_format,
    )

    from PIL import Image

    pixels = np.asarray(Image.open(args.image).convert("RGB"))
    image = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0
    captured: dict[str, object] = {}

    def keep(name):
        def hook(_module, inputs, output):
            captured[name] = output
            captured[name + ".inputs"] = inputs

        return hook

    heads = model.roi_heads
    for name, module in [
        ("transform", model.transform),
        ("backbone", model.backbone),
        ("rpn_head", model.rpn.head),
        ("rpn", model.rpn),
        ("box_roi_pool", heads.box_roi_pool),
        ("box_head", heads.box_head),
        ("box_predictor", heads.box_predictor),
        ("mask_roi_pool", heads.mask_roi_pool),
        ("mask_predictor", heads.mask_predictor),
        ("roi_heads", heads),
    ]:
        module.register_forward_hook(keep(name))
    with torch.no_grad():
        [result] = model([image])
    arrays = {}
    images = captured["transform"][0]
    arrays["image"] = images.tensors.numpy()  # [1, 3, Hp, Wp] normalised, padded
    arrays["image_size"] = np.asarray(images.image_sizes[0])
    for key, value in captured["backbone"].items():
        arrays[f"fpn_{key}"] = value.numpy()
    logits, deltas = captured["rpn_head"]
    for level, (lg, dl) in enumerate(zip(logits, deltas, strict=True)):
        arrays[f"rpn_logits_{level}"] = lg.numpy()
        arrays[f"rpn_deltas_{level}"] = dl.numpy()
    arrays["proposals"] = captured["rpn"][0][0].numpy()
    arrays["box_roi_features"] = captured["box_roi_pool"].numpy()
    arrays["box_features"] = captured["box_head"].numpy()
    class_logits, box_deltas = captured["box_predictor"]
    arrays["class_logits"] = class_logits.numpy()
    arrays["box_deltas"] = box_deltas.numpy()
    detections = captured["roi_heads"][0][0]
    arrays["det_boxes"] = detections["boxes"].numpy()  # resized-image pixels
    arrays["det_scores"] = detections["scores"].numpy()
    arrays["det_labels"] = detections["labels"].numpy()
    arrays["mask_roi_features"] = captured["mask_roi_pool"].numpy()
    mask_logits = captured["mask_predictor"]
    labels = detections["labels"]
    arrays["mask_probs"] = mask_logits.sigmoid()[torch.arange(len(labels)), labels].numpy()
    arrays["final_boxes"] = result["boxes"].numpy()  # original-image pixels
    arrays["final_scores"] = result["scores"].numpy()
    arrays["final_labels"] = result["labels"].numpy()
    arrays["final_masks"] = result["masks"][:, 0].numpy()  # soft, pasted in the input image
    np.savez(out / "stages.npz", **arrays)
    print(f"wrote {out / 'model.pth'} and {out / 'stages.npz'}: {len(labels)} detections")


if __name__ == "__main__":
    main()
