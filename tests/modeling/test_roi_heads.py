"""RoI sampler, box heads and mask heads vs float64 NumPy references."""

from __future__ import annotations

import numpy as np
import numpy_ref
import pytest

from mrcnn_tf.modeling.mask_heads.fcn_mask_head import FCNMaskHead, UpsampleMaskHead
from mrcnn_tf.modeling.roi_heads.fc_box_head import FCBoxHead
from mrcnn_tf.modeling.roi_heads.res5_box_head import Res5BoxHead
from mrcnn_tf.modeling.roi_heads.roi_sampler import RoISampler


def test_roi_sampler_targets_match_reference():
    rng = np.random.default_rng(0)
    centres = rng.uniform(10, 90, (300, 2))
    sizes = rng.uniform(8, 40, (300, 2))
    proposals = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)[None]
    proposal_valid = np.ones((1, 300), bool)
    proposal_valid[0, -20:] = False  # padding slots must never be sampled
    gt = np.array([[[10, 10, 40, 50], [50, 55, 90, 95], [0, 0, 0, 0]]], np.float32)
    classes = np.array([[2, 1, 0]], np.int32)
    sampler = RoISampler(num_samples=64, positive_fraction=0.25)
    out = {k: v.numpy()[0] for k, v in sampler(proposals, proposal_valid, gt, classes).items()}
    candidates = np.concatenate([proposals[0], gt[0, :2]])
    iou = numpy_ref.iou(out["rois"], gt[0, :2])
    pos, valid = out["positive"], out["valid"]
    assert 0 < pos.sum() <= 16 and pos[: pos.sum()].all()  # positives first
    assert valid.sum() == 64
    for slot in range(64):
        roi = out["rois"][slot]
        assert any(np.array_equal(roi, c) for c in candidates[np.r_[proposal_valid[0], True, True]])
        if pos[slot]:
            g = iou[slot].argmax()
            assert iou[slot, g] >= 0.5 and out["classes"][slot] == classes[0, g] and out["matched"][slot] == g
            expect = numpy_ref.encode(gt[0, g], roi, (10, 10, 5, 5))
            np.testing.assert_allclose(out["box_targets"][slot], expect, atol=1e-3)
        else:
            assert iou[slot].max() < 0.5 and out["classes"][slot] == 0
    assert sampler.max_positives == 16


def test_roi_sampler_adds_ground_truth_so_every_object_has_a_positive():
    proposals = np.array([[[0, 0, 5, 5], [80, 80, 90, 90]]], np.float32)
    gt = np.array([[[20, 20, 60, 60], [0, 0, 0, 0]]], np.float32)
    out = RoISampler(num_samples=8)(proposals, np.ones((1, 2), bool), gt, np.array([[3, 0]], np.int32))
    assert out["positive"].numpy()[0, 0]
    np.testing.assert_array_equal(out["rois"].numpy()[0, 0], gt[0, 0])
    np.testing.assert_allclose(out["box_targets"].numpy()[0, 0], 0.0, atol=1e-6)
    assert out["valid"].numpy()[0].sum() == 3  # the GT box and two background proposals


def test_fc_box_head_matches_dense_reference():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 7, 7, 4)).astype(np.float32)
    head = FCBoxHead(num_classes=3, fc_dim=16)
    out = head(x)
    h = x.reshape(2, 3, -1).astype(np.float64)
    for fc in head.fcs:
        h = numpy_ref.relu(h @ fc.kernel.numpy() + fc.bias.numpy())
    cls, box = head.predictor.cls_score, head.predictor.bbox_pred
    np.testing.assert_allclose(out["logits"].numpy(), h @ cls.kernel.numpy() + cls.bias.numpy(), atol=1e-4)
    deltas = (h @ box.kernel.numpy() + box.bias.numpy()).reshape(2, 3, 3, 4)
    np.testing.assert_allclose(out["deltas"].numpy(), deltas, atol=1e-5)
    assert FCBoxHead(num_classes=3, class_agnostic=True)(x)["deltas"].shape == (2, 3, 1, 4)


def _frozen_bn(x, norm):
    scale = norm.gamma.numpy() / np.sqrt(norm.moving_variance.numpy() + norm.epsilon)
    return (x - norm.moving_mean.numpy()) * scale + norm.beta.numpy()


def _basic_block_reference(x, block):
    """A ResNet basic block in float64: conv3x3(stride)-BN-ReLU-conv3x3-BN + shortcut, ReLU."""
    stride = block.strides
    h = numpy_ref.relu(
        _frozen_bn(numpy_ref.conv2d(x, block.convs[0].kernel.numpy(), stride=stride, pad=1), block.norms[0])
    )
    h = _frozen_bn(numpy_ref.conv2d(h, block.convs[1].kernel.numpy(), pad=1), block.norms[1])
    shortcut = x
    if block.shortcut is not None:
        shortcut = _frozen_bn(
            numpy_ref.conv2d(x, block.shortcut.kernel.numpy(), stride=stride), block.shortcut_norm
        )
    return numpy_ref.relu(h + shortcut)


def test_res5_box_head_matches_a_float64_res5_stage_and_pools():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 2, 14, 14, 8)).astype(np.float32)
    head = Res5BoxHead(num_classes=2, depth=18)
    head.build(x.shape)
    for w in head.weights:  # non-trivial frozen batch norm statistics
        if w.path.endswith(("gamma", "moving_variance")):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))
        elif w.path.endswith(("beta", "moving_mean")):
            w.assign(rng.normal(0, 0.2, w.shape).astype(np.float32))
    out = head(x)
    h = x[0].astype(np.float64)  # the two RoIs as a batch
    for block in head.blocks:
        h = _basic_block_reference(h, block)
    assert h.shape == (2, 7, 7, 512)
    np.testing.assert_allclose(out["features"].numpy()[0], h, rtol=1e-4, atol=1e-4 * np.abs(h).max())
    cls, box = head.predictor.cls_score, head.predictor.bbox_pred
    pooled = h.mean(axis=(1, 2))
    np.testing.assert_allclose(
        out["logits"].numpy()[0], pooled @ cls.kernel.numpy() + cls.bias.numpy(), atol=1e-4
    )
    deltas = (pooled @ box.kernel.numpy() + box.bias.numpy()).reshape(2, 2, 4)
    np.testing.assert_allclose(out["deltas"].numpy()[0], deltas, atol=1e-4)


def deconv_reference(x, kernel, bias):
    """2x2 stride-2 transposed conv (PyTorch ConvTranspose2d): out[2i+a, 2j+b] = x[i, j] @ K[a, b]."""
    b, h, w, _ = x.shape
    out = np.zeros((b, 2 * h, 2 * w, kernel.shape[2]))
    for a in range(2):
        for c in range(2):
            out[:, a::2, c::2, :] = x.astype(np.float64) @ kernel[a, c].T  # keras kernel: [kh, kw, out, in]
    return out + bias


def test_fcn_mask_head_matches_conv_and_deconv_reference():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 2, 5, 5, 4)).astype(np.float32)
    head = FCNMaskHead(num_classes=3, num_convs=2, conv_dim=6)
    out = head(x).numpy()
    assert out.shape == (1, 2, 10, 10, 3)
    h = x[0]
    for conv in head.tower.convs:
        h = numpy_ref.relu(numpy_ref.conv2d(h, conv.kernel.numpy(), conv.bias.numpy(), pad=1))
    h = numpy_ref.relu(deconv_reference(h, head.upsampler.kernel.numpy(), head.upsampler.bias.numpy()))
    logits = numpy_ref.conv2d(h, head.predictor.kernel.numpy(), head.predictor.bias.numpy())
    np.testing.assert_allclose(out[0], logits, atol=1e-5)
    # Inference with the detected classes: only each RoI's class channel (class 0 reads class 1's).
    picked = head(x, classes=np.array([[3, 0]], np.int32)).numpy()
    assert picked.shape == (1, 2, 10, 10, 1)
    np.testing.assert_allclose(picked[0, :, ..., 0], [logits[0, ..., 2], logits[1, ..., 0]], atol=1e-5)


def bilinear_2x_reference(x):
    """2× bilinear resize with half-pixel centres, edges clamped (TF/PyTorch align_corners=False)."""
    x = x.astype(np.float64)
    for axis in (1, 2):
        n = x.shape[axis]
        pos = np.clip((np.arange(2 * n) + 0.5) / 2 - 0.5, 0, n - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        frac = (pos - lo).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
        x = np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac
    return x


def test_bilinear_mask_head_matches_resize_then_conv_reference():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(1, 2, 5, 5, 4)).astype(np.float32)
    head = UpsampleMaskHead(num_classes=3, num_convs=1, conv_dim=6)
    out = head(x).numpy()
    h = numpy_ref.relu(
        numpy_ref.conv2d(x[0], head.tower.convs[0].kernel.numpy(), head.tower.convs[0].bias.numpy(), pad=1)
    )
    h = bilinear_2x_reference(h)
    h = numpy_ref.relu(numpy_ref.conv2d(h, head.upsampler.kernel.numpy(), head.upsampler.bias.numpy(), pad=1))
    logits = numpy_ref.conv2d(h, head.predictor.kernel.numpy(), head.predictor.bias.numpy())
    assert out.shape == (1, 2, 10, 10, 3)
    np.testing.assert_allclose(out[0], logits, atol=1e-5)


@pytest.mark.parametrize("cls", [FCNMaskHead, UpsampleMaskHead])
def test_mask_heads_double_the_resolution(cls):
    x = np.zeros((2, 3, 14, 14, 8), np.float32)
    assert cls(num_classes=4, conv_dim=8)(x).shape == (2, 3, 28, 28, 4)
    assert cls(num_classes=4, conv_dim=8, class_agnostic=True)(x).shape == (2, 3, 28, 28, 1)
    assert UpsampleMaskHead(num_classes=1).upsample == "bilinear"
