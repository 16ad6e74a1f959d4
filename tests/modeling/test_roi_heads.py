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


def test_res5_box_head_halves_the_roi_and_pools():
    x = np.random.default_rng(2).normal(size=(1, 2, 14, 14, 8)).astype(np.float32)
    head = Res5BoxHead(num_classes=2, depth=18)
    out = head(x)
    assert out["features"].shape == (1, 2, 7, 7, 512) and hasattr(head, "extract")
    pooled = out["features"].numpy().mean(axis=(2, 3)).astype(np.float64)
    cls = head.predictor.cls_score
    np.testing.assert_allclose(
        out["logits"].numpy(), pooled @ cls.kernel.numpy() + cls.bias.numpy(), atol=1e-4
    )


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


@pytest.mark.parametrize("cls", [FCNMaskHead, UpsampleMaskHead])
def test_mask_heads_double_the_resolution(cls):
    x = np.zeros((2, 3, 14, 14, 8), np.float32)
    assert cls(num_classes=4, conv_dim=8)(x).shape == (2, 3, 28, 28, 4)
    assert cls(num_classes=4, conv_dim=8, class_agnostic=True)(x).shape == (2, 3, 28, 28, 1)
    assert UpsampleMaskHead(num_classes=1).upsample == "bilinear"
