"""The input pipeline: resize, flip, scale jitter, padding, sharding, determinism, alignment."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from coco_fixtures import COLOURS

from mrcnn_tf.data import transforms as T
from mrcnn_tf.data.pipeline import InputPipeline


def batches(pipeline, dataset, n, **kwargs):
    return [{k: v.numpy() for k, v in b.items()} for b in pipeline(dataset, **kwargs).take(n)]


def assert_masks_sit_on_their_objects(batch, tolerance=0.85):
    """Each valid instance's mask cells land on pixels of its class colour, and only there.

    Cells on an object's edge may see a blend (resizing is bilinear), hence the tolerance; a
    mask that is mirrored or shifted against its object scores far below it.
    """
    for b in range(batch["images"].shape[0]):
        image = batch["images"][b].astype(np.float32)
        for frame, cls, mask in zip(
            batch["gt_mask_boxes"][b], batch["gt_classes"][b], batch["gt_masks"][b], strict=True
        ):
            if cls == 0:
                continue
            y1, x1, y2, x2 = frame
            s = mask.shape[0]
            ys = np.floor(y1 + (np.arange(s) + 0.5) * (y2 - y1) / s).astype(int)
            xs = np.floor(x1 + (np.arange(s) + 0.5) * (x2 - x1) / s).astype(int)
            h, w = batch["image_size"][b].astype(int)
            seen = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None]  # a crop may cut the frame
            colours = image[np.clip(ys, 0, h - 1)][:, np.clip(xs, 0, w - 1)]
            near = np.abs(colours - np.array(COLOURS[int(cls)])).max(-1) < 60
            inside, outside = near[(mask == 1) & seen], near[(mask == 0) & seen]
            if inside.size:
                assert inside.mean() >= tolerance, (cls, inside.mean())
            if outside.size:
                assert outside.mean() <= 1 - tolerance, (cls, outside.mean())


def test_evaluation_batches_resize_exactly_and_carry_what_maps_back(solid):
    pipe = InputPipeline(batch_size=3, min_size=90, max_size=200, max_instances=5, mask_size=16)
    (batch,) = batches(pipe, solid, 1, training=False)
    assert batch["images"].shape == (3, 96, 128, 3) and batch["images"].dtype == np.uint8
    np.testing.assert_array_equal(batch["image_size"], [[90, 120]] * 3)
    np.testing.assert_array_equal(batch["image_id"], [0, 1, 2])
    np.testing.assert_allclose(batch["image_scale"], [[1.5, 1.5]] * 3)
    np.testing.assert_array_equal(batch["original_size"], [[60, 80]] * 3)
    assert not batch["images"][:, 90:].any() and not batch["images"][:, :, 120:].any()  # zero padding
    for b in range(3):
        raw = solid.load_example(b, 16)
        np.testing.assert_allclose(batch["gt_boxes"][b, :3], raw["boxes"] * 1.5, rtol=1e-6)
        np.testing.assert_array_equal(batch["gt_masks"][b, :3], raw["masks"])  # box-relative: unchanged
        np.testing.assert_array_equal(batch["gt_classes"][b], [1, 2, 3, 0, 0])
        assert not batch["gt_masks"][b, 3:].any() and not batch["gt_boxes"][b, 3:].any()
    assert_masks_sit_on_their_objects(batch)
    with pytest.raises(AssertionError):  # the check itself notices mirrored masks
        assert_masks_sit_on_their_objects({**batch, "gt_masks": batch["gt_masks"][..., ::-1]})


def test_flip_mirrors_image_boxes_and_masks_together(solid):
    kw = {"batch_size": 1, "min_size": 90, "max_size": 200, "mask_size": 16, "max_instances": 4}
    plain = batches(InputPipeline(flip_prob=0.0, **kw), solid, 3, training=True)
    flipped = batches(InputPipeline(flip_prob=1.0, **kw), solid, 3, training=True)
    for a, b in zip(plain, flipped, strict=True):
        w = int(a["image_size"][0, 1])
        np.testing.assert_array_equal(b["images"][0, :, :w], a["images"][0, :, :w][:, ::-1])
        valid = a["gt_classes"][0] > 0
        y1, x1, y2, x2 = a["gt_boxes"][0][valid].T
        np.testing.assert_allclose(b["gt_boxes"][0][valid], np.stack([y1, w - x2, y2, w - x1], -1), atol=1e-4)
        np.testing.assert_array_equal(b["gt_mask_boxes"], b["gt_boxes"])  # nothing was cut
        np.testing.assert_array_equal(b["gt_masks"][0][valid], a["gt_masks"][0][valid][:, :, ::-1])
        assert_masks_sit_on_their_objects(b)


def test_flipping_twice_is_the_identity():
    rng = np.random.default_rng(0)
    image = tf.constant(rng.integers(0, 255, (7, 9, 3)), tf.uint8)
    boxes = tf.constant([[1.0, 2.5, 5.0, 8.0], [0.0, 0.0, 7.0, 9.0]])
    instances = {
        "boxes": boxes,
        "mask_boxes": boxes - 1.0,
        "classes": tf.constant([1, 2]),
        "masks": tf.constant(rng.integers(0, 2, (2, 6, 6)), tf.uint8),
    }
    once = T.flip_left_right(image, instances, 9)
    image2, twice = T.flip_left_right(*once, 9)
    np.testing.assert_array_equal(image2.numpy(), image.numpy())
    for key, value in instances.items():
        np.testing.assert_array_equal(twice[key].numpy(), value.numpy())
    np.testing.assert_allclose(once[1]["boxes"].numpy(), [[1.0, 1.0, 5.0, 6.5], [0.0, 0.0, 7.0, 9.0]])
    np.testing.assert_array_equal(once[1]["masks"].numpy(), instances["masks"].numpy()[:, :, ::-1])


def test_crop_clips_boxes_keeps_mask_frames_and_drops_what_falls_outside():
    masks = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    boxes = tf.constant([[10.0, 10.0, 30.0, 30.0], [0.0, 0.0, 8.0, 8.0], [20.0, 5.0, 50.0, 25.0]])
    instances = {
        "boxes": boxes,
        "mask_boxes": boxes,
        "classes": tf.constant([1, 2, 3]),
        "masks": tf.constant(masks),
    }
    out = T.crop_instances(instances, tf.constant([10, 10]), tf.constant([15, 20]))
    np.testing.assert_array_equal(out["classes"].numpy(), [1, 3])
    np.testing.assert_allclose(out["boxes"].numpy(), [[0, 0, 15, 20], [10, 0, 15, 15]])
    np.testing.assert_allclose(out["mask_boxes"].numpy(), [[0, 0, 20, 20], [10, -5, 40, 15]])
    np.testing.assert_array_equal(out["masks"].numpy(), masks[[0, 2]])


def test_scale_jitter_gives_fixed_shapes_and_aligned_masks(solid):
    pipe = InputPipeline(
        batch_size=3,
        output_size=[64, 64],
        scale_range=[0.8, 2.0],
        max_instances=4,
        mask_size=16,
        flip_prob=0.5,
    )
    for batch in batches(pipe, solid, 4, training=True):
        assert batch["images"].shape == (3, 64, 64, 3)
        for b in range(3):
            h, w = batch["image_size"][b].astype(int)
            valid = batch["gt_classes"][b] > 0
            boxes = batch["gt_boxes"][b][valid]
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
            assert boxes.min() >= 0 and (boxes[:, 2] <= h).all() and (boxes[:, 3] <= w).all()
        assert_masks_sit_on_their_objects(batch, tolerance=0.75)  # upscaled edges blend


def test_more_instances_than_slots_keeps_a_subset(solid):
    pipe = InputPipeline(batch_size=3, min_size=60, max_size=80, max_instances=2, mask_size=8)
    (train,) = batches(pipe, solid, 1, training=True)
    (evaluation,) = batches(pipe, solid, 1, training=False)
    assert (train["gt_classes"] > 0).sum(1).tolist() == [2, 2, 2]
    np.testing.assert_array_equal(evaluation["gt_classes"], [[1, 2]] * 3)


def test_fixed_pad_size_and_a_clear_error_when_too_small(solid):
    pipe = InputPipeline(batch_size=1, min_size=60, max_size=80, pad_size=[64, 96], mask_size=8)
    (batch,) = batches(pipe, solid, 1, training=False)
    assert batch["images"].shape == (1, 64, 96, 3)
    small = InputPipeline(batch_size=1, min_size=60, max_size=80, pad_size=[32, 32], mask_size=8)
    with pytest.raises(tf.errors.InvalidArgumentError, match="image larger than pad_size"):
        batches(small, solid, 1, training=False)


def test_order_is_deterministic_in_the_seed_and_changes_each_epoch(solid):
    def ids(seed):
        pipe = InputPipeline(batch_size=1, min_size=30, max_size=40, mask_size=4, seed=seed, flip_prob=0.0)
        raw = pipe(solid, training=True)
        # the rectangle's (class 1) left edge tells the images apart
        return [int(b["gt_boxes"][0][b["gt_classes"][0] == 1][0, 1] * 1000) for b in raw.take(12)]

    first, again = ids(0), ids(0)
    assert first == again
    epochs = [first[i : i + 3] for i in range(0, 12, 3)]
    assert all(sorted(e) == sorted(epochs[0]) for e in epochs)  # every epoch sees each image once
    assert len({tuple(e) for e in epochs}) > 1
    assert ids(1) != first


def test_input_contexts_read_disjoint_shards(solid):
    pipe = InputPipeline(batch_size=2, min_size=30, max_size=40, mask_size=4)
    seen = []
    for k in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=k, num_replicas_in_sync=2
        )
        ds = pipe(solid, training=False, input_context=context)
        ids = [int(i) for b in ds for i in b["image_id"].numpy()]
        assert all(b["images"].shape[0] == 1 for b in ds)  # per-replica batch 2 / 2
        seen.append(ids)
    assert set(seen[0]).isdisjoint(seen[1]) and sorted(seen[0] + seen[1]) == [0, 1, 2]
