"""The input pipeline: raw examples -> resized, augmented, padded batches for ``MaskRCNN``.

Batches are dicts with exactly what :class:`~mrcnn_tf.modeling.detectors.mask_rcnn.MaskRCNN`
reads, so ``model.fit(pipeline(dataset, training=True))`` works as it is:

- ``images``: uint8 ``[B, Hp, Wp, 3]`` RGB; the model normalises inside (so serving takes raw
  pixels too); ``Hp, Wp`` multiples of ``size_divisibility``, or ``pad_size``.
- ``image_size``: float32 ``[B, 2]`` (height, width) of each image before padding.
- ``gt_boxes``: float32 ``[B, N, 4]`` ``[y1, x1, y2, x2]`` in pixels of ``images``;
  ``gt_classes``: int32 ``[B, N]`` ``1..K`` and ``0`` for padding (the validity mask);
  ``gt_masks``: uint8 ``[B, N, S, S]`` cropped to ``gt_mask_boxes`` float32 ``[B, N, 4]``,
  which equal ``gt_boxes`` unless a scale-jitter crop cut the box (then they reach outside the
  image, and the mask stays exact); ``N = max_instances``; for datasets with keypoints,
  ``gt_keypoints`` float32 ``[B, N, K, 3]`` ``(x, y, v)`` in pixels of ``images`` (flipped images
  swap left and right keypoints by the dataset's flip map).
- ``sample_seed``: int32 ``[B, 2]`` (training): each example's seed for the model's anchor and
  RoI sampling, so that training does not depend on how batches are split between replicas.

Evaluation batches (``training=False``) add ``image_id`` int64 ``[B]``, ``original_size``
float32 ``[B, 2]`` and ``image_scale`` float32 ``[B, 2]`` (output pixels per original pixel,
y and x), to map detections back to the original image.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import ClassVar

import tensorflow as tf

from mrcnn_tf.data import transforms as T
from mrcnn_tf.data.base import DetectionDataset

__all__ = ["InputPipeline"]


class InputPipeline:
    """Resize, augment, pad and batch the raw examples of a dataset.

    Two resize policies, as in Detectron2 and Model Garden:

    - *shortest edge* (default): the shorter side becomes ``min_size`` (one of
      ``train_min_sizes`` at random while training, if given), the longer at most
      ``max_size``; images are padded to multiples of ``size_divisibility``.
    - *fixed size with scale jitter* (large-scale jitter, Ghiasi et al. 2021), when
      ``output_size`` is set: the image is scaled to fit ``output_size`` times a random
      factor from ``scale_range`` (training), randomly cropped to ``output_size`` and padded
      to it; every batch then has the same shape (XLA, TPUs).

    Args:
        batch_size: the global batch size (split across replicas under ``tf.distribute``).
        min_size, max_size: shortest-edge sizes.
        train_min_sizes: several shortest-edge sizes to pick from at random when training.
        output_size: ``[height, width]`` for fixed-size (scale-jitter) mode.
        scale_range: ``[low, high]`` random scale factors in fixed-size mode, training only.
        flip_prob: probability of a horizontal flip, training only.
        size_divisibility: pad to multiples of this (the largest feature stride).
        pad_size: pad every image to this ``[height, width]`` instead (XLA/TPU).
        max_instances: ``N``, ground-truth slots per image (more: a random subset is kept).
        mask_size: ``S``, resolution of the box-cropped masks.
        shuffle: shuffle the examples while training (a new order each epoch).
        seed: seed of the shuffle and of every augmentation.
        antialias: low-pass filter when shrinking images (torchvision does not: false).
        size_rounding: how a scaled size becomes whole pixels: ``round`` (Detectron2) or
            ``floor`` (torchvision).
        uint8_images: round resized images to uint8 (what a stored image is; Detectron2 does
            so too) or keep them float32 (torchvision resizes floats: its converted models match
            it to 1e-3 only then). ``images`` in the batches are uint8 or float32 accordingly.
    """

    #: Bounds of the arguments, checked when a config is loaded (:mod:`mrcnn_tf.config_schema`).
    RANGES: ClassVar[dict] = {
        "batch_size": (1, None),
        "min_size": (1, None),
        "max_size": (1, None),
        "train_min_sizes": (1, None),
        "output_size": (1, None),
        "scale_range": (0.0, None),
        "flip_prob": (0.0, 1.0),
        "size_divisibility": (1, None),
        "pad_size": (1, None),
        "max_instances": (1, None),
        "mask_size": (1, None),
        "seed": (0, 2**31 - 1),
    }

    def __init__(
        self,
        batch_size: int = 2,
        min_size: int = 800,
        max_size: int = 1333,
        train_min_sizes: Sequence[int] | None = None,
        output_size: Sequence[int] | None = None,
        scale_range: Sequence[float] = (1.0, 1.0),
        flip_prob: float = 0.5,
        size_divisibility: int = 32,
        pad_size: Sequence[int] | None = None,
        max_instances: int = 100,
        mask_size: int = 112,
        shuffle: bool = True,
        seed: int = 0,
        antialias: bool = True,
        size_rounding: str = "round",
        uint8_images: bool = True,
    ):
        self.uint8_images = bool(uint8_images)
        if size_rounding not in T.SIZE_ROUNDING:
            raise ValueError(f"size_rounding must be one of {T.SIZE_ROUNDING}, got '{size_rounding}'")
        self.size_rounding = size_rounding
        if batch_size < 1 or max_instances < 1 or mask_size < 1:
            raise ValueError("batch_size, max_instances and mask_size must be positive")
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be [low, high] with 0 < low <= high, got {scale_range}")
        if output_size is not None and len(output_size) != 2:
            raise ValueError(f"output_size must be [height, width], got {output_size}")
        if pad_size is None and output_size is not None:
            pad_size = output_size
        self.batch_size = int(batch_size)
        self.min_size = int(min_size)
        self.max_size = int(max_size)
        self.train_min_sizes = [int(s) for s in train_min_sizes] if train_min_sizes else None
        self.output_size = [int(s) for s in output_size] if output_size is not None else None
        self.scale_range = [float(s) for s in scale_range]
        self.flip_prob = float(flip_prob)
        self.size_divisibility = int(size_divisibility)
        self.pad_size = [int(s) for s in pad_size] if pad_size is not None else None
        self.max_instances = int(max_instances)
        self.mask_size = int(mask_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.antialias = bool(antialias)

    def get_config(self) -> dict:
        """The constructor arguments."""
        return {k: getattr(self, k) for k in inspect.signature(type(self)).parameters}

    # ----------------------------------------------------------------------- one example
    def _target_size(self, height, width, training: bool, seed):
        if self.output_size is not None:
            out = tf.constant(self.output_size, tf.float32)
            h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
            scale = tf.minimum(out[0] / h, out[1] / w)
            if training and self.scale_range != [1.0, 1.0]:
                low, high = self.scale_range
                scale *= tf.random.stateless_uniform([], seed=seed, minval=low, maxval=high)
            return T.scaled_size(height, width, scale, self.size_rounding)
        min_size = self.min_size
        if training and self.train_min_sizes:
            choices = tf.constant(self.train_min_sizes, tf.int32)
            pick = tf.random.stateless_uniform(
                [], seed=seed, maxval=len(self.train_min_sizes), dtype=tf.int32
            )
            min_size = tf.gather(choices, pick)
        return T.short_side_size(height, width, min_size, self.max_size, self.size_rounding)

    def transform(
        self, example: dict, seed: tf.Tensor, training: bool, keypoint_flip: Sequence[int] | None = None
    ) -> dict:
        """One raw example -> one padded, augmented example (see the module docstring).

        ``keypoint_flip``: the dataset's keypoint flip map, for examples with ``keypoints``.
        """
        seeds = tf.random.experimental.stateless_split(seed, 4)
        image = example["image"]
        shape = tf.shape(image)
        size = self._target_size(shape[0], shape[1], training, seeds[0])
        ratio = tf.cast(size, tf.float32) / tf.cast(shape[:2], tf.float32)  # output px per input px
        image = T.resize_image(image, size, self.antialias)
        boxes = example["boxes"] * tf.tile(ratio, [2])[None]
        instances = {
            "boxes": boxes,
            "mask_boxes": boxes,
            "classes": example["classes"],
            "masks": example["masks"],
        }
        if "keypoints" in example:
            instances["keypoints"] = T.scale_keypoints(example["keypoints"], ratio)
        if self.output_size is not None:  # random crop to the output size (a no-op if it fits)
            window = tf.minimum(size, self.output_size)
            room = tf.cast(size - window, tf.float32)
            offset = tf.cast(
                tf.floor(tf.random.stateless_uniform([2], seed=seeds[1]) * (room + 1.0)), tf.int32
            )
            offset = tf.minimum(offset, size - window) if training else tf.zeros([2], tf.int32)
            image = tf.slice(image, tf.concat([offset, [0]], 0), tf.concat([window, [3]], 0))
            instances = T.crop_instances(instances, offset, window)
            size = window
        if training and self.flip_prob > 0:
            flip = tf.random.stateless_uniform([], seed=seeds[2]) < self.flip_prob
            image, instances = tf.cond(
                flip,
                lambda: T.flip_left_right(image, instances, size[1], keypoint_flip),
                lambda: (image, instances),
            )
        image = tf.clip_by_value(image, 0.0, 255.0)
        image = tf.cast(tf.round(image), tf.uint8) if self.uint8_images else tf.cast(image, tf.float32)
        instances = T.pad_instances(instances, self.max_instances, seeds[3] if training else None)
        out = {
            "images": T.pad_image(image, self.size_divisibility, self.pad_size),
            "image_size": tf.cast(size, tf.float32),
            "gt_boxes": instances["boxes"],
            "gt_classes": instances["classes"],
            "gt_masks": instances["masks"],
            "gt_mask_boxes": instances["mask_boxes"],
        }
        if "keypoints" in instances:
            out["gt_keypoints"] = instances["keypoints"]
        if training:  # the model's anchor/RoI sampling seed: a function of this example only
            out["sample_seed"] = tf.cast(tf.random.experimental.stateless_fold_in(seed, 7), tf.int32)
        else:
            out["image_id"] = example["image_id"]
            out["original_size"] = tf.cast(shape[:2], tf.float32)
            out["image_scale"] = ratio
        return out

    # ------------------------------------------------------------------------ a dataset
    def __call__(
        self,
        dataset: DetectionDataset,
        *,
        training: bool,
        input_context: tf.distribute.InputContext | None = None,
        repeat: bool | None = None,
        skip_batches: int = 0,
    ) -> tf.data.Dataset:
        """Batches of ``dataset`` (see the module docstring).

        Args:
            dataset: a registered dataset.
            training: augment, shuffle (if ``shuffle``), repeat and drop the last partial batch.
            input_context: from ``strategy.distribute_datasets_from_function``: read this
                pipeline's shard and batch ``batch_size / num_replicas_in_sync`` per replica.
            repeat: override the default (repeat while training).
            skip_batches: start after this many batches (of this pipeline), with the same
                examples and augmentations the uninterrupted stream would have had next: a
                resumed run continues its data order exactly.
        """
        repeat = training if repeat is None else repeat
        batch = self.batch_size
        if input_context is not None:
            batch = input_context.get_per_replica_batch_size(self.batch_size)
        raw = dataset.tf_dataset(
            mask_size=self.mask_size,
            shuffle=training and self.shuffle,
            seed=self.seed,
            repeat=repeat,
            input_context=input_context,
            skip=skip_batches * batch,
        )
        shards, shard = (
            (input_context.num_input_pipelines, input_context.input_pipeline_id) if input_context else (1, 0)
        )
        base = tf.constant([self.seed, 0], tf.int64)
        schema = getattr(dataset, "keypoints", None)
        flip = None if schema is None else list(schema.flip_map)

        def transform(index, example):
            # Seeds follow the example's position in the global stream (shard k of n holds
            # positions k, k + n, ...; exact when n divides the dataset size), so a cluster
            # augments and samples an example as one machine would.
            position = index * shards + shard
            seed = tf.cast(tf.random.experimental.stateless_fold_in(base, position), tf.int32)
            return self.transform(example, seed, training, flip)

        ds = raw.enumerate(start=skip_batches * batch).map(
            transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        ds = ds.padded_batch(batch, drop_remainder=training)
        return ds.prefetch(tf.data.AUTOTUNE)
