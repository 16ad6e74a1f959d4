"""IoU matching, labelling and balanced sampling vs NumPy references."""

from __future__ import annotations

import numpy as np
import numpy_ref
import pytest
import tensorflow as tf

from mrcnn_tf.ops import sampling


def np_labels(boxes, gt, valid, hi, lo, low_quality):
    """Detectron2 Matcher semantics, written out with loops."""
    iou = numpy_ref.iou(boxes, gt)
    iou[:, ~valid] = -1
    max_iou = iou.max(axis=1) if gt.shape[0] else -np.ones(len(boxes))
    labels = np.where(max_iou >= hi, 1, np.where(max_iou < lo, 0, -1))
    if low_quality:
        for g in np.flatnonzero(valid):
            best = iou[:, g].max()
            if best > 0:
                labels[iou[:, g] == best] = 1
    return labels, iou.argmax(axis=1)


def random_boxes(rng, n, size=64.0):
    yx = rng.uniform(0, size * 0.8, (n, 2))
    hw = rng.uniform(2, size * 0.5, (n, 2))
    return np.concatenate([yx, yx + hw], axis=1).astype(np.float32)


@pytest.mark.parametrize("low_quality", [False, True])
def test_labels_match_reference(low_quality):
    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, 200)
    gt = random_boxes(rng, 6)
    gt[4] = boxes[7]  # an exact match
    valid = np.array([True, True, True, True, True, False])
    matched, max_iou, iou = sampling.match_boxes(boxes[None], gt[None], valid[None])
    labels = sampling.label_by_iou(max_iou, 0.7, 0.3, iou, allow_low_quality_matches=low_quality)
    expect, expect_match = np_labels(boxes, gt, valid, 0.7, 0.3, low_quality)
    np.testing.assert_array_equal(labels.numpy()[0], expect)
    np.testing.assert_array_equal(matched.numpy()[0], expect_match)
    assert labels.numpy()[0][7] == 1


def test_thresholds_are_inclusive_for_positives_and_exclusive_for_negatives():
    max_iou = tf.constant([[0.7, 0.6999, 0.3, 0.2999, -1.0]])
    np.testing.assert_array_equal(sampling.label_by_iou(max_iou, 0.7, 0.3).numpy(), [[1, -1, -1, 0, 0]])


def test_low_quality_matches_include_ties_and_skip_non_overlapping_gt():
    boxes = np.array([[0, 0, 10, 10], [0, 10, 10, 20], [50, 50, 60, 60]], np.float32)
    gt = np.array([[0, 5, 10, 15], [100, 100, 110, 110]], np.float32)  # equal overlap with boxes 0 and 1
    _, max_iou, iou = sampling.match_boxes(boxes[None], gt[None], np.ones((1, 2), bool))
    labels = sampling.label_by_iou(max_iou, 0.7, 0.3, iou, allow_low_quality_matches=True)
    np.testing.assert_array_equal(labels.numpy(), [[1, 1, 0]])


def test_image_without_ground_truth_is_all_background():
    boxes = random_boxes(np.random.default_rng(0), 10)[None]
    _, max_iou, iou = sampling.match_boxes(boxes, np.zeros((1, 3, 4), np.float32), np.zeros((1, 3), bool))
    labels = sampling.label_by_iou(max_iou, 0.7, 0.3, iou, allow_low_quality_matches=True)
    np.testing.assert_array_equal(labels.numpy(), 0)


@pytest.mark.parametrize(
    ("num_pos", "num_neg", "expect_pos", "expect_neg"),
    [(300, 1000, 128, 384), (20, 1000, 20, 492), (20, 100, 20, 100), (0, 0, 0, 0)],
)
def test_balanced_sample_counts_order_and_labels(num_pos, num_neg, expect_pos, expect_neg):
    n = 2000
    labels = np.full((2, n), -1, np.int32)
    rng = np.random.default_rng(0)
    for b in range(2):
        perm = rng.permutation(n)
        labels[b, perm[:num_pos]] = 1
        labels[b, perm[num_pos : num_pos + num_neg]] = 0
    indices, positive, valid = (t.numpy() for t in sampling.balanced_sample(tf.constant(labels), 512, 0.25))
    assert indices.shape == (2, 512)
    for b in range(2):
        assert positive[b].sum() == expect_pos
        assert valid[b].sum() == expect_pos + expect_neg
        assert positive[b, :expect_pos].all()  # positives first
        picked = indices[b, valid[b]]
        assert len(set(picked.tolist())) == len(picked)
        np.testing.assert_array_equal(labels[b, indices[b, positive[b]]], 1)
        np.testing.assert_array_equal(labels[b, indices[b, valid[b] & ~positive[b]]], 0)


def test_balanced_sample_is_random():
    labels = tf.constant(np.ones((1, 1000), np.int32))

    def draw():
        indices, _, valid = sampling.balanced_sample(labels, 256, 0.5)
        return set(indices.numpy()[0][valid.numpy()[0]].tolist())

    first, second = draw(), draw()
    assert len(first) == 128 and first != second


@pytest.mark.parametrize("n", [5, 40])
def test_balanced_sample_with_an_unknown_number_of_candidates(n):
    """Traced with N = None (any image size): fixed S slots, valid ones point at real candidates."""
    labels = np.full((2, n), sampling.NEGATIVE, np.int32)
    labels[0, :3] = sampling.POSITIVE
    labels[1, 1] = sampling.IGNORE
    fn = tf.function(
        lambda x: sampling.balanced_sample(x, 16, 0.25), input_signature=[tf.TensorSpec([2, None], tf.int32)]
    )
    indices, positive, valid = (t.numpy() for t in fn(tf.constant(labels)))
    assert indices.shape == (2, 16) and (indices >= 0).all() and (indices < n).all()
    assert valid.sum(1).tolist() == [min(16, n), min(16, n - 1)]
    assert positive.sum(1).tolist() == [3, 0]
    for b in range(2):
        chosen = indices[b][valid[b]]
        assert len(set(chosen.tolist())) == len(chosen)  # no candidate twice
        np.testing.assert_array_equal(labels[b][chosen] == sampling.POSITIVE, positive[b][valid[b]])
