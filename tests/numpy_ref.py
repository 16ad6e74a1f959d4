"""Independent float64 NumPy references for the tests (written from the formulas)."""

from __future__ import annotations

import numpy as np


def conv2d(
    x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None = None, stride: int = 1, pad: int = 0
) -> np.ndarray:
    """PyTorch-style conv: x [B,H,W,Cin], kernel [kh,kw,Cin,Cout], symmetric zero padding."""
    x = np.pad(x.astype(np.float64), [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    kh, kw, _, cout = kernel.shape
    b, h, w, _ = x.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((b, oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            out[:, i, j, :] = np.tensordot(patch, kernel.astype(np.float64), axes=([1, 2, 3], [0, 1, 2]))
    if bias is not None:
        out += bias
    return out


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)
