"""Proposals from RPN outputs: per-level top-k, decode, clip, NMS, top-k (Detectron2 defaults)."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import tensorflow as tf

from mrcnn_tf.ops import boxes as box_ops
from mrcnn_tf.ops.nms import BACKENDS, padded_nms
from mrcnn_tf.registries import PROPOSAL_GENERATORS

#: Score given to removed candidates (below any real logit).
_REMOVED = -1e9
#: Below exp(-80): what the combined backend's scores must exceed.
_MIN_EXP_SCORE = 1e-36


@PROPOSAL_GENERATORS.register(injected=("box_coder",))
class ProposalGenerator(keras.layers.Layer):
    """Turn RPN logits and deltas into a fixed number of proposals per image.

    On each level: the ``pre_nms_topk`` highest-scoring anchors, their boxes decoded
    (with ``box_coder``) and clipped to the image, boxes with a side ``<= min_size``
    removed, then NMS at ``nms_iou_threshold`` (levels are suppressed independently, as
    Detectron2's ``batched_nms`` by level does). The ``post_nms_topk`` best of all levels
    are kept (equal scores may come in either order). Defaults: pre 2000 / post 1000 in
    training, 1000 / 1000 at test (Detectron2's FPN defaults, per image). Proposals carry no
    gradient.

    Args:
        pre_nms_topk_train, post_nms_topk_train, pre_nms_topk_test, post_nms_topk_test: see
            above.
        nms_iou_threshold: 0.7 in the papers.
        min_size: minimum box side in input pixels (0 removes only empty boxes).
        box_coder: a :class:`~mrcnn_tf.ops.boxes.BoxCoder` (weights ``(1, 1, 1, 1)`` for the RPN);
            the builder passes the anchor labeler's, so that both use the same.
        nms_backend: ``combined`` (TF's fused greedy op, levels as its classes: fast on CPU, no
            XLA kernel, not a LiteRT builtin) or ``padded`` (TF's tiled padded NMS, all levels
            as one batch of problems: static shapes, compiles with XLA, LiteRT builtins). The
            same proposals; on a 2-core CPU at 640×640 ``combined`` takes 10 ms instead of
            36 (inference) and 24 ms instead of 183 (training, batch 2, 2000 per level).

    Call:
        objectness: ``{"P2": [B, N2], ...}`` logits; deltas: ``{"P2": [B, N2, 4], ...}``;
        anchors: ``{"P2": [N2, 4], ...}`` ``[y1, x1, y2, x2]`` input pixels;
        image_size: ``[B, 2]`` float32 (height, width) of each image before padding;
        post_nms_topk: optional int, fewer proposals than configured for this call only.

    Returns:
        ``(boxes [B, P, 4], scores [B, P], valid [B, P])``: float32 ``[y1, x1, y2, x2]``
        input-pixel proposals, sorted by score; objectness probabilities; False for the
        padding slots (boxes 0, score 0) when fewer than ``P = post_nms_topk`` survive.
    """

    def __init__(
        self,
        pre_nms_topk_train: int = 2000,
        post_nms_topk_train: int = 1000,
        pre_nms_topk_test: int = 1000,
        post_nms_topk_test: int = 1000,
        nms_iou_threshold: float = 0.7,
        min_size: float = 0.0,
        box_coder: box_ops.BoxCoder | Mapping | None = None,
        nms_backend: str = "combined",
        **kwargs,
    ):
        super().__init__(**kwargs)
        counts = (pre_nms_topk_train, post_nms_topk_train, pre_nms_topk_test, post_nms_topk_test)
        if min(counts) < 1:
            raise ValueError(f"ProposalGenerator top-k values must be >= 1, got {counts}")
        if not 0.0 < nms_iou_threshold <= 1.0:
            raise ValueError(
                f"ProposalGenerator nms_iou_threshold must be in (0, 1], got {nms_iou_threshold}"
            )
        if nms_backend not in BACKENDS:
            raise ValueError(f"ProposalGenerator nms_backend must be one of {BACKENDS}, got '{nms_backend}'")
        self.nms_backend = nms_backend
        self.pre_nms_topk_train = int(pre_nms_topk_train)
        self.post_nms_topk_train = int(post_nms_topk_train)
        self.pre_nms_topk_test = int(pre_nms_topk_test)
        self.post_nms_topk_test = int(post_nms_topk_test)
        self.nms_iou_threshold = float(nms_iou_threshold)
        self.min_size = float(min_size)
        self.box_coder = box_ops.BoxCoder.coerce(box_coder, box_ops.RPN_WEIGHTS)

    def _candidates(self, logits, deltas, anchors, image_size, pre_k):
        """A level's ``pre_k`` best anchors decoded and clipped, small boxes removed, sorted:
        ``(boxes [B, k, 4], scores [B, k])`` with a static k."""
        if logits.shape[1] is None:  # image size unknown when traced: pad to pre_k entries
            extra = tf.maximum(pre_k - tf.shape(logits)[1], 0)
            logits = tf.pad(logits, [[0, 0], [0, extra]], constant_values=_REMOVED)
            deltas = tf.pad(deltas, [[0, 0], [0, extra], [0, 0]])
            anchors = tf.pad(anchors, [[0, extra], [0, 0]])
            k = pre_k
        else:
            k = min(pre_k, logits.shape[1])
        scores, index = tf.math.top_k(logits, k=k)
        boxes = self.box_coder.decode(tf.gather(deltas, index, batch_dims=1), tf.gather(anchors, index))
        boxes = box_ops.clip_boxes(boxes, image_size)
        heights = boxes[..., 2] - boxes[..., 0]
        widths = boxes[..., 3] - boxes[..., 1]
        big_enough = tf.logical_and(heights > self.min_size, widths > self.min_size)
        scores = tf.where(big_enough, scores, _REMOVED)
        # Re-sort after removing small boxes; NMS then keeps the best of the rest.
        scores, order = tf.math.top_k(scores, k=k)
        return tf.gather(boxes, order, batch_dims=1), scores

    def call(self, objectness, deltas, anchors, image_size, training=None, post_nms_topk=None):
        pre_k = self.pre_nms_topk_train if training else self.pre_nms_topk_test
        post_k = self.post_nms_topk_train if training else self.post_nms_topk_test
        if post_nms_topk is not None:  # a smaller count for this call only (the detector's build)
            post_k = min(post_k, int(post_nms_topk))
        levels = [
            self._candidates(
                tf.stop_gradient(tf.cast(objectness[key], tf.float32)),
                tf.stop_gradient(tf.cast(deltas[key], tf.float32)),
                anchors[key],
                image_size,
                pre_k,
            )
            for key in sorted(objectness, key=lambda k: int(k[1:]))
        ]
        nms = self._combined_nms if self.nms_backend == "combined" else self._padded_nms
        boxes, scores = nms(levels, post_k)
        valid = scores > _REMOVED / 2
        boxes = tf.where(valid[..., None], boxes, 0.0)
        probs = tf.where(valid, tf.sigmoid(scores), 0.0)
        return boxes, probs, valid

    def _combined_nms(self, levels, post_k):
        """NMS with TF's fused per-class op, each level a class: ``(boxes [B, post_k, 4],
        scores [B, post_k])`` sorted, ``_REMOVED`` scores past the kept ones.

        The op needs scores above -1 (its empty result slots score -1 and outrank lower ones),
        so it ranks ``exp(logit)`` (order kept; logits clamped to ±80, beyond float32's range:
        ties only above 80) and the logits come back as its log."""
        boxes = tf.concat([b for b, _ in levels], 1)
        logits = tf.concat([s for _, s in levels], 1)
        positive = tf.where(logits > _REMOVED / 2, tf.exp(tf.clip_by_value(logits, -80.0, 80.0)), 0.0)
        level = tf.concat([tf.fill([s.shape[1]], i) for i, (_, s) in enumerate(levels)], 0)
        own_level = tf.one_hot(level, len(levels), on_value=True, off_value=False)  # [N, L]
        scores = tf.where(own_level[None], positive[..., None], 0.0)  # [B, N, L]
        out = tf.image.combined_non_max_suppression(
            boxes[:, :, None, :],
            scores,
            max_output_size_per_class=min(post_k, max(s.shape[1] for _, s in levels)),
            max_total_size=post_k,
            iou_threshold=self.nms_iou_threshold,
            score_threshold=_MIN_EXP_SCORE,
            pad_per_class=False,
            clip_boxes=False,
        )
        kept = tf.range(post_k)[None, :] < out.valid_detections[:, None]
        logits = tf.math.log(tf.maximum(out.nmsed_scores, _MIN_EXP_SCORE))
        return out.nmsed_boxes, tf.where(kept, logits, _REMOVED)

    def _padded_nms(self, levels, post_k):
        """The same with TF's padded NMS: one problem per image and level ([B, L, k], padded to
        the largest level's k with removed entries: sorted input stays sorted), one loop."""
        per_level = max(s.shape[1] for _, s in levels)
        boxes = tf.stack([tf.pad(b, [[0, 0], [0, per_level - b.shape[1]], [0, 0]]) for b, _ in levels], 1)
        scores = tf.stack(
            [tf.pad(s, [[0, 0], [0, per_level - s.shape[1]]], constant_values=_REMOVED) for _, s in levels],
            1,
        )
        out = min(post_k, per_level)
        keep, num_kept = padded_nms(boxes, scores, out, self.nms_iou_threshold, _REMOVED / 2)
        # padding slots repeat index 0: their scores become _REMOVED
        kept = tf.where(tf.range(out) < num_kept[..., None], tf.gather(scores, keep, batch_dims=2), _REMOVED)
        scores = tf.reshape(kept, [-1, len(levels) * out])
        boxes = tf.reshape(tf.gather(boxes, keep, batch_dims=2), [-1, len(levels) * out, 4])
        k = min(post_k, scores.shape[1])
        scores, index = tf.math.top_k(scores, k=k)
        boxes = tf.gather(boxes, index, batch_dims=1)
        if k < post_k:  # fewer anchors than slots: pad so that the shape is always post_k
            pad = [[0, 0], [0, post_k - k]]
            boxes = tf.pad(boxes, [*pad, [0, 0]])
            scores = tf.pad(scores, pad, constant_values=_REMOVED)
        return boxes, scores

    def get_config(self):
        config = super().get_config()
        config.update(
            pre_nms_topk_train=self.pre_nms_topk_train,
            post_nms_topk_train=self.post_nms_topk_train,
            pre_nms_topk_test=self.pre_nms_topk_test,
            post_nms_topk_test=self.post_nms_topk_test,
            nms_iou_threshold=self.nms_iou_threshold,
            min_size=self.min_size,
            box_coder=self.box_coder.get_config(),
            nms_backend=self.nms_backend,
        )
        return config
