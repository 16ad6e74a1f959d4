"""torchvision's Keypoint R-CNN as the reference: seeded random weights, a checkpoint, its stages.

Runs in the separate torch environment, like ``maskrcnn_reference.py`` (whose weight
randomisation it reuses). Writes into ``--out``: ``model.pth`` (the state dict as ``torch.save``
writes it) and ``stages.npz``: the detections in the resized image (boxes ``[x1, y1, x2, y2]``),
the keypoint RoI features and heatmap logits (NCHW), and the final boxes, keypoints
``[N, 17, 3]`` (x, y, 1) and keypoint scores in the input image's pixels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torchvision
from maskrcnn_reference import randomise
from torchvision.models.detection import KeypointRCNN
from torchvision.models.detection._utils import overwrite_eps
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import misc as misc_nn_ops


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image", required=True)
    parser.add_argument("--min-size", type=int, default=800)
    parser.add_argument("--max-size", type=int, default=1333)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # as keypointrcnn_resnet50_fpn builds it with COCO weights: FrozenBN with epsilon 0
    backbone = torchvision.models.resnet50(weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(backbone, 3)
    model = KeypointRCNN(backbone, num_classes=2, min_size=args.min_size, max_size=args.max_size).eval()
    overwrite_eps(model, 0.0)
    randomise(model, args.seed)
    with torch.no_grad():  # peaked heatmaps (one clear maximum each), as a trained head gives
        model.roi_heads.keypoint_predictor.kps_score_lowres.weight.mul_(4.0)
    torch.save(model.state_dict(), out / "model.pth")

    from PIL import Image

    pixels = np.asarray(Image.open(args.image).convert("RGB"))
    image = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0
    captured: dict[str, object] = {}

    def keep(name):
        def hook(_module, inputs, output):
            captured[name] = output

        return hook

    heads = model.roi_heads
    for name, module in [
        ("keypoint_roi_pool", heads.keypoint_roi_pool),
        ("keypoint_predictor", heads.keypoint_predictor),
        ("box_predictor", heads.box_predictor),
    ]:
        module.register_forward_hook(keep(name))
    boxes_in_resized = {}

    def keep_detections(_module, inputs, output):
        boxes_in_resized["boxes"] = output[0][0]["boxes"].clone()

    heads.register_forward_hook(keep_detections)
    with torch.no_grad():
        [result] = model([image])
    arrays = {
        "det_boxes": boxes_in_resized["boxes"].numpy(),
        "keypoint_roi_features": captured["keypoint_roi_pool"].numpy(),
        "keypoint_logits": captured["keypoint_predictor"].numpy(),
        "final_boxes": result["boxes"].numpy(),
        "final_scores": result["scores"].numpy(),
        "final_labels": result["labels"].numpy(),
        "final_keypoints": result["keypoints"].numpy(),
        "final_keypoint_scores": result["keypoints_scores"].numpy(),
    }
    np.savez(out / "stages.npz", **arrays)
    print(f"wrote {out / 'model.pth'} and {out / 'stages.npz'}: {len(result['scores'])} detections")


if __name__ == "__main__":
    main()
