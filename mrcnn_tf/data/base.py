"""What every dataset gives the input pipeline: raw examples as a ``tf.data.Dataset``.

A *raw example* is one image with its ground truth, before resizing and augmentation:

- ``image``: uint8 ``[H, W, 3]`` RGB, as displayed (EXIF orientation applied).
- ``image_id``: int64 ``[]``, the dataset's image id (0 is a valid id).
- ``boxes``: float32 ``[G, 4]`` ``[y1, x1, y2, x2]`` in pixels of ``image`` (pixel ``i``
  covers ``[i, i + 1)``), clipped to the image.
- ``classes``: int32 ``[G]``, contiguous class ids ``1..K``.
- ``masks``: uint8 ``[G, S, S]`` of 0/1, each cropped to its box: cell ``(i, j)`` holds the
  mask at the pixel under the cell's centre (see :func:`mrcnn_tf.data.rle.crop_rle`).
- ``keypoints`` (datasets with keypoints only): float32 ``[G, K, 3]`` ``(x, y, v)`` in
  continuous pixels of ``image`` (see :mod:`mrcnn_tf.ops.keypoints`).

Crowd regions are not in ``boxes`` (they are not training targets); they stay in
:meth:`DetectionDataset.coco_dict` for evaluation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mrcnn_tf.data.category_map import CategoryMap
from mrcnn_tf.data.coco_keypoints import KeypointSchema
from mrcnn_tf.data.report import DataReport

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["DetectionDataset", "epoch_indices", "raw_example_spec", "with_shard_policy"]


def raw_example_spec(mask_size: int, num_keypoints: int = 0) -> dict[str, Any]:
    """``tf.TensorSpec`` of each raw-example key (``keypoints`` only when ``num_keypoints > 0``)."""
    import tensorflow as tf

    spec = {
        "image": tf.TensorSpec([None, None, 3], tf.uint8),
        "image_id": tf.TensorSpec([], tf.int64),
        "boxes": tf.TensorSpec([None, 4], tf.float32),
        "classes": tf.TensorSpec([None], tf.int32),
        "masks": tf.TensorSpec([None, mask_size, mask_size], tf.uint8),
    }
    if num_keypoints:
        spec["keypoints"] = tf.TensorSpec([None, num_keypoints, 3], tf.float32)
    return spec


def epoch_indices(
    num_examples: int,
    *,
    shuffle: bool,
    seed: int,
    repeat: bool,
    num_shards: int = 1,
    shard_index: int = 0,
    skip: int = 0,
) -> tf.data.Dataset:
    """Example indices (int64), epoch after epoch, each epoch split between the shards.

    Shuffling is stateless: epoch ``e`` visits ``stateless_shuffle(range(N), seed=[seed, e])``,
    so the order depends only on ``seed`` and the epoch (a resumed run can skip ahead to the
    same place). Shard ``k`` of ``n`` takes every ``n``-th index of each epoch's order, so the
    workers of a multi-worker run see disjoint parts of every epoch. ``skip`` drops the first
    indices of this shard's stream without generating the epochs before them (a resumed run
    starts where the interrupted one stopped).
    """
    import tensorflow as tf

    per_epoch = len(range(shard_index, num_examples, num_shards))
    first_epoch, skip_in_epoch = divmod(int(skip), per_epoch) if per_epoch else (0, 0)
    if not repeat and first_epoch > 0:
        return tf.data.Dataset.range(0)
    epochs = tf.data.Dataset.range(first_epoch, 2**62 if repeat else 1)

    def one_epoch(epoch):
        order = tf.range(num_examples, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(
                order, seed=tf.stack([tf.cast(seed, tf.int64), epoch])
            )
        return tf.data.Dataset.from_tensor_slices(order).shard(num_shards, shard_index)

    return epochs.flat_map(one_epoch).skip(skip_in_epoch)


def with_shard_policy(ds: tf.data.Dataset, input_context, policy: str) -> tf.data.Dataset:
    """Turn tf.distribute's auto-sharding off when ``input_context`` sharded already, else ``policy``.

    ``policy`` names an ``AutoShardPolicy`` (``DATA`` for datasets read by index, ``AUTO`` for
    files) used when the dataset goes through ``strategy.experimental_distribute_dataset``.
    """
    import tensorflow as tf

    options = tf.data.Options()
    policies = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = (
        policies.OFF if input_context else getattr(policies, policy)
    )
    return ds.with_options(options)


class DetectionDataset:
    """Base of registered datasets: a category map, a report, and raw examples.

    Subclasses set ``category_map`` and ``report`` and implement :meth:`__len__`,
    :meth:`tf_dataset` and :meth:`coco_dict`.
    """

    category_map: CategoryMap
    report: DataReport
    #: The keypoints of the instances (:class:`~mrcnn_tf.data.coco_keypoints.KeypointSchema`),
    #: None for a dataset without keypoints.
    keypoints: KeypointSchema | None = None

    @property
    def num_classes(self) -> int:
        """``K``: foreground classes, numbered ``1..K``."""
        return self.category_map.num_classes

    @property
    def num_keypoints(self) -> int:
        """Keypoints per instance (0 without keypoints)."""
        return 0 if self.keypoints is None else self.keypoints.num_keypoints

    def __len__(self) -> int:
        raise NotImplementedError

    def tf_dataset(
        self,
        *,
        mask_size: int,
        shuffle: bool = False,
        seed: int = 0,
        repeat: bool = False,
        input_context: tf.distribute.InputContext | None = None,
        skip: int = 0,
    ) -> tf.data.Dataset:
        """Raw examples (see the module docstring), in a deterministic order.

        Args:
            mask_size: ``S``, the resolution of the box-cropped masks.
            shuffle: visit the examples in a seeded random order, new each epoch.
            seed: the shuffle seed.
            repeat: epoch after epoch, forever.
            input_context: from ``strategy.distribute_datasets_from_function``; this input
                pipeline then reads only its own shard.
            skip: leave out the first ``skip`` examples of this shard's stream (resuming).
        """
        raise NotImplementedError

    def coco_dict(self) -> dict:
        """The kept images and annotations (crowd included) as a COCO dict, for pycocotools."""
        raise NotImplementedError
