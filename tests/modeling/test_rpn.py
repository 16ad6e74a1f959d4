"""RPN head, proposal generator and anchor labeler vs float64 NumPy references."""

from __future__ import annotations

import numpy as np
import numpy_ref
import pytest
import tensorflow as tf

from mrcnn_tf.modeling.rpn.anchor_labeler import AnchorLabeler
from mrcnn_tf.modeling.rpn.proposal_generator import ProposalGenerator
from mrcnn_tf.modeling.rpn.rpn_head import RPNHead


def test_rpn_head_matches_conv_reference_and_anchor_order():
    rng = np.random.default_rng(0)
    feats = {
        "P2": rng.normal(size=(1, 6, 5, 4)).astype(np.float32),
        "P3": rng.normal(size=(1, 3, 3, 4)).astype(np.float32),
    }
    head = RPNHead(num_anchors=3)
    objectness, deltas = head(feats)
    conv = head.convs[0]
    for key, x in feats.items():
        hidden = numpy_ref.relu(numpy_ref.conv2d(x, conv.kernel.numpy(), conv.bias.numpy(), pad=1))
        logits = numpy_ref.conv2d(hidden, head.objectness.kernel.numpy(), head.objectness.bias.numpy())
        boxes = numpy_ref.conv2d(hidden, head.box_deltas.kernel.numpy(), head.box_deltas.bias.numpy())
        # (row, column, anchor) order; deltas grouped per anchor as [dy, dx, dh, dw]
        np.testing.assert_allclose(objectness[key].numpy(), logits.reshape(1, -1), atol=1e-5)
        np.testing.assert_allclose(deltas[key].numpy(), boxes.reshape(1, -1, 4), atol=1e-5)


def reference_proposals(logits, deltas, anchors, size, pre_k, post_k, threshold, min_size=0.0):
    boxes_all, scores_all = [], []
    for key in sorted(logits):
        z, d, a = logits[key], deltas[key], anchors[key]
        order = np.argsort(-z, kind="stable")[: min(pre_k, len(z))]
        boxes = np.array([numpy_ref.decode(d[i], a[i], (1, 1, 1, 1)) for i in order])
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, size[0])
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, size[1])
        scores = z[order]
        big = ((boxes[:, 2] - boxes[:, 0]) > min_size) & ((boxes[:, 3] - boxes[:, 1]) > min_size)
        boxes, scores = boxes[big], scores[big]
        keep = numpy_ref.nms(boxes, scores, threshold)[:post_k]
        boxes_all.append(boxes[keep])
        scores_all.append(scores[keep])
    boxes, scores = np.concatenate(boxes_all), np.concatenate(scores_all)
    order = np.argsort(-scores, kind="stable")[:post_k]
    return boxes[order], 1 / (1 + np.exp(-scores[order]))


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("backend", ["combined", "padded"])
@pytest.mark.parametrize("training", [True, False])
def test_proposals_match_reference(training, backend, traced):
    rng = np.random.default_rng(1)
    anchors = {
        "P2": numpy_ref_anchors(rng, 60, 16.0),
        "P3": numpy_ref_anchors(rng, 30, 32.0),
    }
    logits = {k: rng.normal(size=(len(a),)).astype(np.float32) for k, a in anchors.items()}
    deltas = {k: rng.normal(scale=0.2, size=(len(a), 4)).astype(np.float32) for k, a in anchors.items()}
    gen = ProposalGenerator(
        pre_nms_topk_train=40,
        post_nms_topk_train=25,
        pre_nms_topk_test=20,
        post_nms_topk_test=12,
        nms_iou_threshold=0.5,
        nms_backend=backend,
    )

    def run():
        return gen(
            {k: v[None] for k, v in logits.items()},
            {k: v[None] for k, v in deltas.items()},
            anchors,
            np.array([[60.0, 50.0]], np.float32),
            training=training,
        )

    boxes, scores, valid = tf.function(run)() if traced else run()
    pre_k, post_k = (40, 25) if training else (20, 12)
    ref_boxes, ref_scores = reference_proposals(logits, deltas, anchors, (60, 50), pre_k, post_k, 0.5)
    n = len(ref_boxes)
    assert boxes.shape == (1, post_k, 4)
    assert valid.numpy()[0].sum() == n and valid.numpy()[0, :n].all()
    np.testing.assert_allclose(boxes.numpy()[0, :n], ref_boxes, atol=1e-4)
    np.testing.assert_allclose(scores.numpy()[0, :n], ref_scores, atol=1e-6)
    np.testing.assert_array_equal(boxes.numpy()[0, n:], 0.0)


def numpy_ref_anchors(rng, n, size):
    centres = rng.uniform(0, 60, (n, 2))
    return np.concatenate([centres - size / 2, centres + size / 2], axis=1).astype(np.float32)


def test_backends_agree_on_a_crowded_five_level_batch():
    """Training settings on two images, five levels of very different sizes, many overlaps:
    the fused op and the padded loop keep the same proposals (vs the float64 reference too)."""
    rng = np.random.default_rng(3)
    sizes = {"P2": 3000, "P3": 900, "P4": 250, "P5": 60, "P6": 15}
    anchors = {k: numpy_ref_anchors(rng, n, 8.0 * 2 ** int(k[1:])) for k, n in sizes.items()}
    logits = {k: rng.normal(scale=6.0, size=(2, len(a))).astype(np.float32) for k, a in anchors.items()}
    deltas = {k: rng.normal(scale=0.3, size=(2, len(a), 4)).astype(np.float32) for k, a in anchors.items()}
    size = np.array([[60.0, 60.0], [50.0, 40.0]], np.float32)
    out = {}
    for backend in ("combined", "padded"):
        gen = ProposalGenerator(pre_nms_topk_train=400, post_nms_topk_train=300, nms_backend=backend)
        out[backend] = [t.numpy() for t in gen(logits, deltas, anchors, size, training=True)]
    for i in range(2):
        ref_boxes, ref_scores = reference_proposals(
            {k: v[i] for k, v in logits.items()},
            {k: v[i] for k, v in deltas.items()},
            anchors,
            tuple(size[i]),
            400,
            300,
            0.7,
        )
        n = len(ref_boxes)
        assert n > 100  # the reference keeps many, from several levels
        for boxes, scores, valid in out.values():
            assert valid[i].sum() == n
            np.testing.assert_allclose(boxes[i, :n], ref_boxes, atol=1e-4)
            np.testing.assert_allclose(scores[i, :n], ref_scores, atol=1e-6)
    np.testing.assert_array_equal(out["combined"][0], out["padded"][0])


def test_unknown_nms_backend_is_named():
    with pytest.raises(ValueError, match="nms_backend must be one of"):
        ProposalGenerator(nms_backend="fast")


@pytest.mark.parametrize("backend", ["combined", "padded"])
def test_min_size_removes_small_boxes_and_padding_fills_the_rest(backend):
    anchors = {"P2": np.array([[0, 0, 10, 10], [20, 20, 21, 21], [30, 30, 40, 45]], np.float32)}
    gen = ProposalGenerator(post_nms_topk_test=5, min_size=2.0, nms_backend=backend)
    boxes, scores, valid = gen(
        {"P2": np.array([[0.5, 3.0, -1.0]], np.float32)},
        {"P2": np.zeros((1, 3, 4), np.float32)},
        anchors,
        np.array([[64.0, 64.0]], np.float32),
    )
    np.testing.assert_array_equal(valid.numpy(), [[True, True, False, False, False]])
    np.testing.assert_allclose(boxes.numpy()[0, :2], anchors["P2"][[0, 2]])
    np.testing.assert_allclose(scores.numpy()[0, :2], 1 / (1 + np.exp([-0.5, 1.0])), atol=1e-6)


def test_anchor_labeler_targets_match_reference():
    rng = np.random.default_rng(2)
    anchors = numpy_ref_anchors(rng, 400, 20.0)
    gt = np.array([[[5, 5, 25, 27], [30, 40, 52, 58], [0, 0, 0, 0]]], np.float32)
    valid_gt = np.array([[True, True, False]])
    out = AnchorLabeler(num_samples=64, positive_fraction=0.5)(anchors, gt, valid_gt)
    iou = numpy_ref.iou(anchors, gt[0, :2])
    best = iou.max(axis=1)
    forced = np.zeros(len(anchors), bool)
    for g in range(2):
        forced |= iou[:, g] == iou[:, g].max()
    indices, positive, valid = (out[k].numpy()[0] for k in ("indices", "positive", "valid"))
    targets = out["box_targets"].numpy()[0]
    assert positive.any() and (valid & ~positive).any() and positive.sum() <= 32
    for slot in np.flatnonzero(valid):
        a = indices[slot]
        if positive[slot]:
            assert best[a] >= 0.7 or forced[a]
            expect = numpy_ref.encode(gt[0, iou[a].argmax()], anchors[a], (1, 1, 1, 1))
            np.testing.assert_allclose(targets[slot], expect, atol=1e-4)
        else:
            assert best[a] < 0.3
            np.testing.assert_array_equal(targets[slot], 0.0)
