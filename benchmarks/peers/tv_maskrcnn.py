#!/usr/bin/env python3
"""One benchmark case of torchvision's ``maskrcnn_resnet50_fpn``, run with the Python of its venv.

Called by ``benchmarks/model_speed.py --peers``; prints one JSON line in the same format as our
cases. Random weights (``weights=None, weights_backbone=None``), 91 classes (torchvision's COCO
head), the image resized to exactly ``S x S`` (``min_size = max_size = S``), 1000 test
proposals, 100 detections forced (``box_score_thresh=0``). Eager PyTorch on the CPU, default
threads (one per core), so the first call has no tracing to do.

- ``keras_<S>``: inference (``eval()``, ``torch.inference_mode()``) on one float image in
  [0, 1]; ``--precision bfloat16`` runs it under ``torch.autocast("cpu", torch.bfloat16)``.
- ``train_<S>_b<B>``: the summed losses, backward and an SGD step (momentum 0.9) on ``B``
  images with 8 objects each (boxes and full-image masks), like ours.

The file is not named ``torchvision.py``: run as a script, its folder comes first on
``sys.path`` and would shadow the package.
"""

from __future__ import annotations

import json
import sys
import time

from peer_timing import measure, peer_arguments  # next to this script (its folder is first on sys.path)


def build(size: int):
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    return maskrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=91,
        min_size=size,
        max_size=size,
        rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_test=1000,
        box_detections_per_img=100,
        box_score_thresh=0.0,
    )


def targets(size: int, batch: int, num_objects: int = 8) -> list[dict]:
    """Random boxes (``x1, y1, x2, y2`` pixels, sides 10-40 % of the image) with box masks."""
    import torch

    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(batch):
        corner = torch.rand(num_objects, 2, generator=generator) * size * 0.6
        extent = size * (0.1 + 0.3 * torch.rand(num_objects, 2, generator=generator))
        boxes = torch.cat([corner, corner + extent], dim=1)
        masks = torch.zeros(num_objects, size, size, dtype=torch.uint8)
        for i, (x1, y1, x2, y2) in enumerate(boxes.round().int().tolist()):
            masks[i, y1:y2, x1:x2] = 1
        labels = torch.randint(1, 91, (num_objects,), generator=generator)
        out.append({"boxes": boxes, "labels": labels, "masks": masks})
    return out


def main() -> int:
    args, kind, size, batch = peer_arguments()
    import torch

    start = time.perf_counter()
    torch.manual_seed(0)
    model = build(size)
    generator = torch.Generator().manual_seed(0)
    if kind == "keras":
        model.eval()
        image = [torch.rand(3, size, size, generator=generator)]

        def run():
            with (
                torch.inference_mode(),
                torch.autocast("cpu", torch.bfloat16, enabled=args.precision != "float32"),
            ):
                return model(image)[0]

    elif kind == "train":
        if args.precision != "float32":
            raise SystemExit("torchvision training is wired for float32 only")
        model.train()
        images = [torch.rand(3, size, size, generator=generator) for _ in range(batch)]
        labels = targets(size, batch)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def run():
            losses = model(images, labels)
            loss = sum(losses.values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return {"boxes": loss.detach()}

    else:
        raise SystemExit(f"unknown case {args.case}")
    record, out = measure(args.case, start, run, args.repeat)
    record["torch"] = torch.__version__
    if kind == "keras":
        record["num_detections"] = int(out["boxes"].shape[0])
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
