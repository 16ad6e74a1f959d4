"""Per-class NMS, both backends, vs a greedy float64 reference."""

from __future__ import annotations

import numpy as np
import numpy_ref
import pytest
import tensorflow as tf

from mrcnn_tf.ops.nms import padded_nms, per_class_nms


def reference(boxes, scores, max_det, iou, thresh):
    found = []
    for c in range(scores.shape[1]):
        b = boxes[:, c if boxes.shape[1] > 1 else 0]
        keep_mask = scores[:, c] > thresh
        idx = np.flatnonzero(keep_mask)
        kept = numpy_ref.nms(b[idx], scores[idx, c], iou)[:max_det]
        found += [(scores[idx[i], c], c, b[idx[i]]) for i in kept]
    found.sort(key=lambda t: -t[0])
    return found[:max_det]


@pytest.mark.parametrize("backend", ["combined", "padded"])
@pytest.mark.parametrize("shared_boxes", [False, True])
def test_per_class_nms_matches_reference(backend, shared_boxes):
    rng = np.random.default_rng(0)
    b, n, k, d = 2, 40, 3, 12
    centres = rng.uniform(10, 50, (b, n, k if not shared_boxes else 1, 2))
    sizes = rng.uniform(5, 25, (b, n, k if not shared_boxes else 1, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], -1).astype(np.float32)
    scores = rng.uniform(0, 0.3, (b, n, k)).astype(np.float32)
    out_boxes, out_scores, out_classes, count = (
        t.numpy() for t in per_class_nms(boxes, scores, d, 0.5, 0.05, backend=backend)
    )
    assert out_boxes.shape == (b, d, 4) and out_classes.dtype == np.int32
    for i in range(b):
        expect = reference(boxes[i], scores[i], d, 0.5, 0.05)
        assert count[i] == len(expect)
        np.testing.assert_allclose(out_scores[i, : count[i]], [e[0] for e in expect], atol=1e-6)
        np.testing.assert_array_equal(out_classes[i, : count[i]], [e[1] for e in expect])
        np.testing.assert_allclose(out_boxes[i, : count[i]], [e[2] for e in expect], atol=1e-5)
        assert (out_scores[i, count[i] :] == 0).all() and (out_classes[i, count[i] :] == 0).all()


def test_padded_backend_compiles_with_xla_and_handles_no_detections():
    fn = tf.function(lambda b, s: per_class_nms(b, s, 5, 0.5, 0.05, backend="padded"), jit_compile=True)
    boxes = np.tile(np.array([0, 0, 10, 10], np.float32), (1, 8, 2, 1))
    _, scores, _, count = fn(boxes, np.full((1, 8, 2), 0.01, np.float32))
    assert count.numpy().tolist() == [0] and scores.shape == (1, 5)


@pytest.mark.parametrize("mode", ["eager", "traced"])
def test_padded_nms_matches_greedy_nms_eager_and_traced(mode):
    """Inside a tf.function TF's NMS body is traced inline (no AutoGraph, no function call);
    eager calls TF's function. Both give the float64 greedy NMS, over 2 x 3 problems."""
    rng = np.random.default_rng(1)
    centres = rng.uniform(10, 50, (2, 3, 60, 2))
    sizes = rng.uniform(5, 30, (2, 3, 60, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], -1).astype(np.float32)
    scores = -np.sort(-rng.uniform(0, 1, (2, 3, 60)), axis=-1).astype(np.float32)  # sorted input
    scores[1, 2, 40:] = -1.0  # below the score threshold

    def run(b, s):
        return padded_nms(b, s, 25, 0.6, 0.0)

    if mode == "eager":
        keep, count = run(boxes, scores)
    else:
        fn = tf.function(run)
        graph = fn.get_concrete_function(boxes, scores).graph
        types = {op.type for op in graph.get_operations()}
        assert "While" in types or "StatelessWhile" in types  # inlined, not a function call
        assert not types & {"StatefulPartitionedCall", "PartitionedCall"}
        keep, count = fn(boxes, scores)
    assert keep.shape == (2, 3, 25) and count.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            valid = np.flatnonzero(scores[i, j] > 0.0)
            kept = numpy_ref.nms(boxes[i, j, valid].astype(np.float64), scores[i, j, valid], 0.6)
            expect = [valid[k] for k in kept][:25]
            assert int(count[i, j]) == len(expect)
            np.testing.assert_array_equal(keep.numpy()[i, j, : len(expect)], expect)
