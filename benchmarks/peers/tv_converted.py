#!/usr/bin/env python3
"""torchvision's ``maskrcnn_resnet50_fpn`` with the weights of a ``.pth`` file, timed on one image
(run with the torch environment's Python by ``benchmarks/converted_vs_torchvision.py``).

    tv_converted.py --checkpoint model.pth --image photo.png --min-size 800 --max-size 1333

Prints one JSON line (``peer_timing``'s record): the first call is timed from the start of
the process's work (building the model, loading the weights, the first image), as ours is.
Eager PyTorch, ``inference_mode``, the image in [0, 1] as torchvision takes it; the output
includes torchvision's full-image mask paste.
"""

from __future__ import annotations

import json
import sys
import time

from peer_timing import measure  # next to this script


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--min-size", type=int, default=800)
    parser.add_argument("--max-size", type=int, default=1333)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    start = time.perf_counter()
    import numpy as np
    import torch
    import torchvision
    from PIL import Image
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection._utils import overwrite_eps
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops import misc as misc_nn_ops

    backbone = torchvision.models.resnet50(weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d)
    model = MaskRCNN(_resnet_fpn_extractor(backbone, 3), 91, min_size=args.min_size, max_size=args.max_size)
    model.load_state_dict(torch.load(args.checkpoint, weights_only=True))
    overwrite_eps(model, 0.0)
    model.eval()
    pixels = np.asarray(Image.open(args.image).convert("RGB"))
    image = [torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0]

    def run():
        with torch.inference_mode():
            return model(image)[0]

    record, out = measure("torchvision", start, run, args.repeat)
    record.update(
        torch=torch.__version__, torchvision=torchvision.__version__, num_detections=len(out["boxes"])
    )
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
