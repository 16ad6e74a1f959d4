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


def roi_align(features, boxes, output_size, spatial_scale, sampling_ratio, aligned, pooling="avg"):
    """Detectron2's ROIAlign CPU algorithm, re-written in float64 loops from its formulas.

    features [H, W, C]; boxes [N, 4] as [y1, x1, y2, x2] input pixels -> [N, S, S, C].
    """
    features = features.astype(np.float64)
    height, width, channels = features.shape
    out = np.zeros((len(boxes), output_size, output_size, channels))

    def bilinear(y, x):
        if y < -1.0 or y > height or x < -1.0 or x > width:
            return np.zeros(channels)
        y, x = max(y, 0.0), max(x, 0.0)
        y_low, x_low = int(y), int(x)
        if y_low >= height - 1:
            y_high = y_low = height - 1
            y = float(y_low)
        else:
            y_high = y_low + 1
        if x_low >= width - 1:
            x_high = x_low = width - 1
            x = float(x_low)
        else:
            x_high = x_low + 1
        ly, lx = y - y_low, x - x_low
        hy, hx = 1.0 - ly, 1.0 - lx
        return (
            hy * hx * features[y_low, x_low]
            + hy * lx * features[y_low, x_high]
            + ly * hx * features[y_high, x_low]
            + ly * lx * features[y_high, x_high]
        )

    offset = 0.5 if aligned else 0.0
    for n, (y1, x1, y2, x2) in enumerate(np.asarray(boxes, np.float64)):
        start_y, start_x = y1 * spatial_scale - offset, x1 * spatial_scale - offset
        roi_h, roi_w = (y2 - y1) * spatial_scale, (x2 - x1) * spatial_scale
        if not aligned:
            roi_h, roi_w = max(roi_h, 1.0), max(roi_w, 1.0)
        bin_h, bin_w = roi_h / output_size, roi_w / output_size
        # sampling_ratio 0: Detectron2's adaptive grid, ceil(roi / output) samples per axis
        grid_h = sampling_ratio if sampling_ratio > 0 else int(np.ceil(roi_h / output_size))
        grid_w = sampling_ratio if sampling_ratio > 0 else int(np.ceil(roi_w / output_size))
        for py in range(output_size):
            for px in range(output_size):
                samples = [
                    bilinear(
                        start_y + py * bin_h + (iy + 0.5) * bin_h / grid_h,
                        start_x + px * bin_w + (ix + 0.5) * bin_w / grid_w,
                    )
                    for iy in range(grid_h)
                    for ix in range(grid_w)
                ]
                if not samples:  # an empty RoI: no samples, count max(0, 1) -> 0
                    continue
                if pooling == "max":
                    out[n, py, px] = np.max(samples, axis=0)
                else:
                    out[n, py, px] = np.sum(samples, axis=0) / max(grid_h * grid_w, 1)
    return out


def roi_pool(features, boxes, output_size, spatial_scale):
    """Caffe/torchvision RoIPool: rounded box, "+1" size, quantized bins, max; empty bin = 0."""
    _, h, w, c = features.shape
    out = np.zeros((boxes.shape[0], boxes.shape[1], output_size, output_size, c))

    def rnd(v):
        return float(np.sign(v) * np.floor(abs(v) + 0.5))

    for b in range(boxes.shape[0]):
        for n in range(boxes.shape[1]):
            y1, x1, y2, x2 = (rnd(float(v) * spatial_scale) for v in boxes[b, n])
            bh = max(y2 - y1 + 1, 1) / output_size
            bw = max(x2 - x1 + 1, 1) / output_size
            for py in range(output_size):
                hs = int(min(max(np.floor(py * bh) + y1, 0), h))
                he = int(min(max(np.ceil((py + 1) * bh) + y1, 0), h))
                for px in range(output_size):
                    ws = int(min(max(np.floor(px * bw) + x1, 0), w))
                    we = int(min(max(np.ceil((px + 1) * bw) + x1, 0), w))
                    if he > hs and we > ws:
                        out[b, n, py, px] = features[b, hs:he, ws:we].reshape(-1, c).max(axis=0)
    return out


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``[N, 4]`` and ``[M, 4]`` ``[y1, x1, y2, x2]`` boxes; 0 for empty unions."""
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(np.asarray(a, np.float64)):
        for j, q in enumerate(np.asarray(b, np.float64)):
            h = max(min(p[2], q[2]) - max(p[0], q[0]), 0)
            w = max(min(p[3], q[3]) - max(p[1], q[1]), 0)
            inter = h * w
            union = (
                max(p[2] - p[0], 0) * max(p[3] - p[1], 0) + max(q[2] - q[0], 0) * max(q[3] - q[1], 0) - inter
            )
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def encode(box, ref, weights):
    """Fast R-CNN deltas [dy, dx, dh, dw] of ``box`` relative to ``ref`` (float64)."""
    box, ref = np.asarray(box, np.float64), np.asarray(ref, np.float64)
    bh, bw = box[2] - box[0], box[3] - box[1]
    rh, rw = ref[2] - ref[0], ref[3] - ref[1]
    wy, wx, wh, ww = weights
    return np.array(
        [
            wy * ((box[0] + bh / 2) - (ref[0] + rh / 2)) / rh,
            wx * ((box[1] + bw / 2) - (ref[1] + rw / 2)) / rw,
            wh * np.log(bh / rh),
            ww * np.log(bw / rw),
        ]
    )


SCALE_CLAMP = float(np.log(1000.0 / 16))


def decode(delta, ref, weights, clamp=SCALE_CLAMP):
    """Inverse of :func:`encode`, with the log-size clamp (float64)."""
    ref = np.asarray(ref, np.float64)
    wy, wx, wh, ww = weights
    rh, rw = ref[2] - ref[0], ref[3] - ref[1]
    cy = delta[0] / wy * rh + ref[0] + rh / 2
    cx = delta[1] / wx * rw + ref[1] + rw / 2
    h = np.exp(min(delta[2] / wh, clamp)) * rh
    w = np.exp(min(delta[3] / ww, clamp)) * rw
    return np.array([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS: indices kept, by decreasing score; a box is dropped if IoU > threshold."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if iou(boxes[i : i + 1], boxes[j : j + 1])[0, 0] <= threshold]
    return keep


def reference_crop(mask: np.ndarray, box, size: int) -> np.ndarray:
    """Cell (i, j) of an S×S crop holds the pixel under the cell's centre (float64, loops)."""
    y1, x1, y2, x2 = box
    out = np.zeros((size, size), np.uint8)
    for i in range(size):
        for j in range(size):
            # the cell height (y2 - y1) / size first: ties at exact pixel edges round alike
            cy = y1 + (i + 0.5) * ((y2 - y1) / size)
            cx = x1 + (j + 0.5) * ((x2 - x1) / size)
            r = min(max(int(np.floor(cy)), 0), mask.shape[0] - 1)
            c = min(max(int(np.floor(cx)), 0), mask.shape[1] - 1)
            out[i, j] = mask[r, c]
    return out


def crop_and_resize_image_grad(d_crops, image_shape, boxes, box_indices):
    """TensorFlow's bilinear crop_and_resize kernel's image gradient, written out in float64."""
    grad = np.zeros(image_shape)
    _, height, width, _ = image_shape
    n_h, n_w = d_crops.shape[1:3]
    for k, (y1, x1, y2, x2) in enumerate(boxes.astype(np.float64)):
        for i in range(n_h):
            y = y1 * (height - 1) + i * (y2 - y1) * (height - 1) / (n_h - 1)
            if not 0 <= y <= height - 1:
                continue
            for j in range(n_w):
                x = x1 * (width - 1) + j * (x2 - x1) * (width - 1) / (n_w - 1)
                if not 0 <= x <= width - 1:
                    continue
                top, left, bottom, right = (
                    int(np.floor(y)),
                    int(np.floor(x)),
                    int(np.ceil(y)),
                    int(np.ceil(x)),
                )
                fy, fx = y - top, x - left
                g = d_crops[k, i, j].astype(np.float64)
                b = box_indices[k]
                grad[b, top, left] += (1 - fy) * (1 - fx) * g
                grad[b, top, right] += (1 - fy) * fx * g
                grad[b, bottom, left] += fy * (1 - fx) * g
                grad[b, bottom, right] += fy * fx * g
    return grad
