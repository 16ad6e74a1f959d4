"""Sharded TFRecords of a checked dataset, and a dataset that reads them back in parallel.

Each record is a ``tf.train.Example`` with the keys of the TF Object Detection API and Model
Garden: ``image/encoded``, ``image/format``, ``image/height``, ``image/width``,
``image/source_id``, ``image/filename``, ``image/object/bbox/{ymin,xmin,ymax,xmax}``
(normalised to ``[0, 1]``), ``image/object/class/label`` (contiguous ``1..K``),
``image/object/class/text``, ``image/object/is_crowd``, ``image/object/area``, and the
full-image masks either as compressed COCO RLE strings in ``image/object/mask_rle`` (the
default: small, and cropped in the graph straight from the runs) or as one PNG per instance in
``image/object/mask`` (what Model Garden's readers expect; decoding full-image PNGs makes the
pipeline several times slower). Crowd regions are stored too (``is_crowd`` 1) and left out of
training targets when read.

Images are stored as their original bytes when TensorFlow decodes those to exactly the
pixels the COCO reader gives (the common case); otherwise (EXIF rotation, 16-bit, TIFF ...)
as a lossless PNG of those pixels. Beside the shards, ``PREFIX-label_map.json`` holds the
category map and the record count, and ``PREFIX-instances.json`` the checked COCO ground
truth for evaluation.
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

from mrcnn_tf.data.base import DetectionDataset, raw_example_spec, with_shard_policy
from mrcnn_tf.data.category_map import CategoryMap
from mrcnn_tf.data.coco import CocoDataset, ImageRecord
from mrcnn_tf.data.images import load_rgb
from mrcnn_tf.data.report import DataReport, DatasetError
from mrcnn_tf.data.rle import segmentation_to_rle
from mrcnn_tf.registries import DATASETS

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["TFRecordDataset", "parse_example", "shard_paths", "write_tfrecords"]

_SHARD = re.compile(r"-\d{5}-of-\d{5}\.tfrecord$")


def shard_paths(prefix: str | os.PathLike, num_shards: int) -> list[Path]:
    """``PREFIX-00000-of-0000N.tfrecord`` ... for ``num_shards`` shards."""
    return [Path(f"{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord") for i in range(num_shards)]


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_bytes(record: ImageRecord) -> tuple[bytes, bytes]:
    """The bytes to store and their format: the file itself if TF decodes it to our pixels."""
    import tensorflow as tf

    pixels = load_rgb(record.path, record.apply_orientation)
    raw = record.path.read_bytes()
    fmt = {b"\xff\xd8": b"jpeg", b"\x89P": b"png"}.get(raw[:2])
    if fmt is not None:
        try:
            decoded = tf.io.decode_image(raw, channels=3, expand_animations=False).numpy()
            if decoded.shape == pixels.shape and np.array_equal(decoded, pixels):
                return raw, fmt
        except tf.errors.InvalidArgumentError:
            pass
    return _png(pixels), b"png"


def _example(
    record: ImageRecord, image: bytes, fmt: bytes, names: tuple[str, ...], mask_format: str
) -> bytes:
    import tensorflow as tf

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    def blobs(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))

    h, w = record.height, record.width
    instances = record.instances + record.crowd
    boxes = np.asarray([i.box for i in instances], np.float64).reshape(-1, 4)
    if mask_format == "png":
        full = [mask_utils.decode(segmentation_to_rle(i.segmentation, h, w)) for i in instances]
        masks = {"image/object/mask": blobs([_png(m) for m in full])}
    else:
        rles = [segmentation_to_rle(i.segmentation, h, w)["counts"] for i in instances]
        masks = {"image/object/mask_rle": blobs(rles)}
    areas = [float(i.raw.get("area", 0.0)) for i in instances]
    feature = {
        "image/encoded": blobs([image]),
        "image/format": blobs([fmt]),
        "image/height": ints([h]),
        "image/width": ints([w]),
        "image/source_id": blobs([str(record.image_id).encode()]),
        "image/filename": blobs([str(record.raw.get("file_name", record.path.name)).encode()]),
        "image/object/bbox/ymin": floats(boxes[:, 0] / h),
        "image/object/bbox/xmin": floats(boxes[:, 1] / w),
        "image/object/bbox/ymax": floats(boxes[:, 2] / h),
        "image/object/bbox/xmax": floats(boxes[:, 3] / w),
        "image/object/class/label": ints([i.class_id for i in instances]),
        "image/object/class/text": blobs([names[i.class_id - 1].encode() for i in instances]),
        "image/object/is_crowd": ints([0] * len(record.instances) + [1] * len(record.crowd)),
        "image/object/area": floats(areas),
        **masks,
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_tfrecords(
    dataset: CocoDataset,
    prefix: str | os.PathLike,
    num_shards: int = 8,
    overwrite: bool = False,
    mask_format: str = "rle",
) -> list[Path]:
    """Write ``dataset`` as ``num_shards`` TFRecord files (images round-robin over the shards).

    Args:
        mask_format: ``rle`` (compressed COCO RLE strings) or ``png`` (one PNG per instance).

    Raises:
        DatasetError: an output file exists (nothing is overwritten unless ``overwrite``).
    """
    import tensorflow as tf

    if mask_format not in ("rle", "png"):
        raise DatasetError(f"mask format must be 'rle' or 'png', got {mask_format!r}")
    if num_shards < 1:
        raise DatasetError(f"--shards must be at least 1, got {num_shards}")
    if getattr(dataset, "keypoints", None) is not None:  # refused, not silently dropped
        raise DatasetError(
            f"{dataset.annotations}: its instances have keypoints ({dataset.num_keypoints} each), which "
            "TFRecord shards do not carry yet; train keypoint models from the COCO file "
            "(type: CocoDataset). Nothing was written"
        )
    paths = shard_paths(prefix, num_shards)
    sidecars = [Path(f"{prefix}-label_map.json"), Path(f"{prefix}-instances.json")]
    existing = [str(p) for p in [*paths, *sidecars] if p.exists()]
    if existing and not overwrite:
        raise DatasetError(
            f"{existing[0]} already exists; choose another --out prefix (nothing was overwritten)"
        )
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    writers = [tf.io.TFRecordWriter(str(p)) for p in paths]
    try:
        for k, record in enumerate(dataset.records):
            image, fmt = _image_bytes(record)
            example = _example(record, image, fmt, dataset.category_map.names, mask_format)
            writers[k % num_shards].write(example)
    finally:
        for writer in writers:
            writer.close()
    label_map = {
        **dataset.category_map.to_json(),
        "num_examples": len(dataset.records),
        "source": str(dataset.annotations),
    }
    sidecars[0].write_text(json.dumps(label_map, indent=1), encoding="utf-8")
    sidecars[1].write_text(json.dumps(dataset.coco_dict()), encoding="utf-8")
    return paths


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Decode one record: ``image`` uint8 ``[H, W, 3]``, ``image_id`` int64, ``boxes`` float32
    ``[G, 4]`` pixels, ``classes`` int32 ``[G]``, ``is_crowd`` bool ``[G]``, ``mask_png`` string
    ``[G]`` and ``mask_rle`` string ``[G]`` (one of the two is empty; crowd regions included)."""
    import tensorflow as tf

    keys = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        "image/width": tf.io.FixedLenFeature([], tf.int64),
        "image/source_id": tf.io.FixedLenFeature([], tf.string),
        "image/object/class/label": tf.io.VarLenFeature(tf.int64),
        "image/object/is_crowd": tf.io.VarLenFeature(tf.int64),
        "image/object/mask": tf.io.VarLenFeature(tf.string),
        "image/object/mask_rle": tf.io.VarLenFeature(tf.string),
    }
    for k in ("ymin", "xmin", "ymax", "xmax"):
        keys[f"image/object/bbox/{k}"] = tf.io.VarLenFeature(tf.float32)
    f = tf.io.parse_single_example(serialized, keys)
    dense = {k: tf.sparse.to_dense(v) for k, v in f.items() if isinstance(v, tf.SparseTensor)}
    h, w = tf.cast(f["image/height"], tf.float64), tf.cast(f["image/width"], tf.float64)
    boxes = tf.stack(
        [
            tf.cast(dense[f"image/object/bbox/{k}"], tf.float64) * s
            for k, s in zip(("ymin", "xmin", "ymax", "xmax"), (h, w, h, w), strict=True)
        ],
        axis=-1,
    )
    image = tf.io.decode_image(f["image/encoded"], channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return {
        "image": image,
        "image_id": tf.strings.to_number(f["image/source_id"], tf.int64),
        "boxes": boxes,
        "classes": tf.cast(dense["image/object/class/label"], tf.int32),
        "is_crowd": dense["image/object/is_crowd"] > 0,
        "mask_png": dense["image/object/mask"],
        "mask_rle": dense["image/object/mask_rle"],
        "size": tf.stack([f["image/height"], f["image/width"]]),
    }


def crop_png_masks(mask_png: tf.Tensor, boxes: tf.Tensor, size: int) -> tf.Tensor:
    """Decode full-image PNG masks one by one and crop each to its box at ``size × size``.

    Same rule as :func:`mrcnn_tf.data.rle.crop_rle` (the pixel under each cell centre, the
    same float64 arithmetic), so both readers give identical masks. Returns uint8 ``[G, S, S]``.
    """
    import tensorflow as tf

    centres = tf.range(size, dtype=tf.float64) + 0.5

    def one(args):
        png, box = args
        mask = tf.io.decode_png(png, channels=1)[..., 0]
        limit = tf.shape(mask, out_type=tf.int64)

        def index(start, stop, n):
            pos = tf.floor(start + centres * ((stop - start) / size))
            return tf.clip_by_value(tf.cast(pos, tf.int64), 0, n - 1)

        rows, cols = index(box[0], box[2], limit[0]), index(box[1], box[3], limit[1])
        return tf.gather(tf.gather(mask, rows, axis=0), cols, axis=1)

    return tf.map_fn(one, (mask_png, boxes), fn_output_signature=tf.TensorSpec([size, size], tf.uint8))


@DATASETS.register()
class TFRecordDataset(DetectionDataset):
    """Sharded TFRecords written by ``mrcnn-tf data convert``, read with parallel interleave.

    Args:
        pattern: a glob of the shards, e.g. ``data/coco-train-*.tfrecord``.
        label_map: the ``PREFIX-label_map.json`` written beside them (found automatically
            when the shards follow the ``PREFIX-NNNNN-of-NNNNN.tfrecord`` naming).
        shuffle_buffer: examples held in the shuffle buffer while training.
    """

    def __init__(self, pattern: str, label_map: str | os.PathLike | None = None, shuffle_buffer: int = 256):
        self.pattern = str(pattern)
        self.files = sorted(glob.glob(self.pattern))
        if not self.files:
            raise DatasetError(f"no TFRecord files match {self.pattern!r}")
        prefix = _SHARD.sub("", self.files[0])
        self.label_map = Path(label_map) if label_map else Path(f"{prefix}-label_map.json")
        if not self.label_map.is_file():
            raise DatasetError(
                f"{self.label_map} not found: TFRecords need the label map written beside them by "
                "`mrcnn-tf data convert` (or give label_map: PATH)"
            )
        self.category_map = CategoryMap.load(self.label_map)
        with open(self.label_map, encoding="utf-8") as handle:
            self._num_examples = int(json.load(handle).get("num_examples", -1))
        self._instances = Path(f"{prefix}-instances.json")
        self.shuffle_buffer = int(shuffle_buffer)
        self.report = DataReport(self.pattern)

    def __len__(self) -> int:
        return self._num_examples

    def coco_dict(self) -> dict:
        """The checked ground truth written at conversion (``PREFIX-instances.json``)."""
        if not self._instances.is_file():
            raise DatasetError(
                f"{self._instances} not found; evaluation needs the COCO file written at conversion"
            )
        with open(self._instances, encoding="utf-8") as handle:
            return json.load(handle)

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
        """Raw examples (crowd regions left out), decoded in parallel; see :class:`DetectionDataset`.

        Files are split between input pipelines when there are at least as many files as
        pipelines, records otherwise. ``skip`` reads and drops records (they are not decoded).
        """
        import tensorflow as tf

        from mrcnn_tf.data.rle_tf import crop_rle_strings

        files = tf.data.Dataset.from_tensor_slices(self.files)
        by_file = input_context is not None and len(self.files) >= input_context.num_input_pipelines
        if by_file:
            files = files.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        if shuffle:
            files = files.shuffle(len(self.files), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            files = files.repeat()
        ds = files.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(len(self.files), 16),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        if input_context is not None and not by_file:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        if shuffle:
            ds = ds.shuffle(self.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if skip:
            ds = ds.skip(skip)
        spec = raw_example_spec(mask_size)

        def decode(serialized):
            ex = parse_example(serialized)
            keep = tf.logical_not(ex["is_crowd"])
            boxes = tf.boolean_mask(ex["boxes"], keep)
            masks = tf.cond(
                tf.size(ex["mask_rle"]) > 0,
                lambda: crop_rle_strings(
                    tf.boolean_mask(ex["mask_rle"], keep), boxes, *tf.unstack(ex["size"]), mask_size
                ),
                lambda: crop_png_masks(tf.boolean_mask(ex["mask_png"], keep), boxes, mask_size),
            )
            out = {
                "image": ex["image"],
                "image_id": ex["image_id"],
                "boxes": tf.cast(boxes, tf.float32),
                "classes": tf.boolean_mask(ex["classes"], keep),
                "masks": masks,
            }
            for key, value in out.items():
                value.set_shape(spec[key].shape)
            return out

        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return with_shard_policy(ds, input_context, "AUTO")
