"""``torchvision.ops.roi_align`` on given features and boxes (run in the torch env): the op that
Detectron2's ``ROIAlignV2`` (``aligned=True``, ``sampling_ratio=0``) calls.

    python roi_align_reference.py IN.npz OUT.npz

IN: ``features [B, C, H, W]`` float32, ``rois [K, 5]`` (image index, x1, y1, x2, y2),
``output_size``, ``spatial_scale``, ``sampling_ratio``, ``aligned``; OUT: ``pooled [K, C, S, S]``.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torchvision.ops import roi_align

data = np.load(sys.argv[1])
pooled = roi_align(
    torch.from_numpy(data["features"]),
    torch.from_numpy(data["rois"]),
    output_size=int(data["output_size"]),
    spatial_scale=float(data["spatial_scale"]),
    sampling_ratio=int(data["sampling_ratio"]),
    aligned=bool(data["aligned"]),
)
np.savez(sys.argv[2], pooled=pooled.numpy())
