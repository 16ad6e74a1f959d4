"""torchvision's ``paste_masks_in_image`` on given masks and boxes (run in the torch env).

    python paste_reference.py IN.npz OUT.npz

IN holds ``masks [N, M, M]`` float32, ``boxes [N, 4]`` ``[x1, y1, x2, y2]`` float32 and
``image_size [2]`` (height, width); OUT gets ``pasted [N, H, W]`` (soft, float32).
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

data = np.load(sys.argv[1])
height, width = (int(v) for v in data["image_size"])
masks = torch.from_numpy(data["masks"])[:, None]
pasted = paste_masks_in_image(masks, torch.from_numpy(data["boxes"]), (height, width), padding=1)
np.savez(sys.argv[2], pasted=pasted[:, 0].numpy())
