"""COCO-format instance segmentation datasets (annotation JSON + image folder).

Everything is checked when the dataset is made, before any TensorFlow graph runs; each
finding names the annotation file, the image id and the annotation id (see
:mod:`mrcnn_tf.data.report`). Categories become contiguous class ids ``1..K`` (sorted by
dataset id; :class:`~mrcnn_tf.data.category_map.CategoryMap`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pycocotools.mask as mask_utils

from mrcnn_tf.data.base import DetectionDataset, epoch_indices, raw_example_spec, with_shard_policy
from mrcnn_tf.data.coco_checks import check_box, check_segmentation, is_int
from mrcnn_tf.data.coco_keypoints import check_keypoints, keypoint_schema, keypoints_to_coco
from mrcnn_tf.data.coco_records import (
    ImageRecord,
    Instance,
    category_map_of,
    foreground_categories,
    load_coco_json,
    read_image_entry,
)
from mrcnn_tf.data.images import load_rgb
from mrcnn_tf.data.report import DataReport, DatasetError
from mrcnn_tf.data.rle import crop_rle, segmentation_to_counts, segmentation_to_rle
from mrcnn_tf.registries import DATASETS

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["CocoDataset", "ImageRecord", "Instance"]

logger = logging.getLogger(__name__)


def _is_ok(example, ok):
    return ok


def _drop_flag(example, ok):
    return example


@DATASETS.register()
class CocoDataset(DetectionDataset):
    """A COCO instances file and its image folder, checked and ready for the input pipeline.

    Polygons (one or several per instance), uncompressed and compressed RLE are read;
    ``iscrowd`` regions are kept for evaluation but are not training targets. A
    ``person_keypoints`` file (categories with ``keypoints`` and ``skeleton``) also gives each
    instance its keypoints (:mod:`mrcnn_tf.data.coco_keypoints`).

    Args:
        annotations: the instances JSON file.
        images: the folder that ``file_name`` entries are relative to.
        strict: any finding (even a clipped box) raises :class:`DatasetError`; by default
            bad items are dropped and a summary is logged.
        skip_empty: leave out images without (non-crowd) instances; by default they are
            kept as pure background.
        verify_images: decode every image fully at load (finds truncated files; slow); by
            default only headers are read, and a file that fails to decode later is skipped
            with a warning that names it.
        keypoint_flip_pairs: ``[[left, right], ...]`` keypoint names a horizontal flip swaps;
            by default derived from the names (``left_*`` <-> ``right_*``...).
        keypoint_sigmas: per-keypoint OKS sigmas for keypoint AP; by default the categories'
            ``keypoint_sigmas``, COCO's for its 17 person keypoints, else 0.05 each.
    """

    def __init__(
        self,
        annotations: str | os.PathLike,
        images: str | os.PathLike,
        strict: bool = False,
        skip_empty: bool = False,
        verify_images: bool = False,
        keypoint_flip_pairs: list | dict | None = None,
        keypoint_sigmas: list[float] | None = None,
    ):
        self.annotations = Path(annotations)
        self.images = Path(images)
        self.strict = strict
        self.skip_empty = skip_empty
        self.verify_images = verify_images
        if not self.images.is_dir():
            raise DatasetError(f"image folder {self.images} does not exist (named for {self.annotations})")
        data = load_coco_json(self.annotations)
        self.report = DataReport(str(self.annotations))
        categories = foreground_categories(self.annotations, data["categories"], self.report)
        self.category_map = category_map_of(self.annotations, categories)
        self.keypoints = keypoint_schema(self.annotations, categories, keypoint_flip_pairs, keypoint_sigmas)
        if self.keypoints is not None:
            self.category_map = dataclasses.replace(self.category_map, keypoints=self.keypoints.to_json())
        self._info = {k: data[k] for k in ("info", "licenses") if k in data}
        self._categories = categories
        self.records = self._read(data)
        if strict:
            self.report.raise_if_problems()
        elif self.report.problems:
            logger.warning("%s", self.report.summary())

    # ------------------------------------------------------------------ reading and checks
    def _read(self, data: dict) -> list[ImageRecord]:
        report = self.report
        records: dict[int, ImageRecord] = {}
        known_ids: set = set()
        for k, entry in enumerate(data["images"]):
            record = read_image_entry(self.images, self.report, k, entry, known_ids, self.verify_images)
            if record is not None:
                records[record.image_id] = record
        lost: dict[int, int] = {}
        to_contiguous = {d: i + 1 for i, d in enumerate(self.category_map.dataset_ids)}
        seen_ids: set = set()
        for k, ann in enumerate(data.get("annotations", [])):
            if isinstance(ann, dict) and "id" in ann:
                ann_id = ann["id"]
                if not is_int(ann_id):
                    report.add(
                        "bad_annotation_id",
                        "fixed",
                        f"annotations[{k}] has id {ann_id!r}, not an integer; evaluation numbers it anew",
                        annotation_id=f"annotations[{k}]",
                    )
                elif ann_id == 0:
                    report.add(
                        "bad_annotation_id",
                        "fixed",
                        f"annotations[{k}] has id 0, which pycocotools reads as 'no match' (that object "
                        "could never be matched: AP drops); evaluation numbers it anew; start ids at 1",
                        annotation_id=ann_id,
                    )
                elif ann_id in seen_ids:
                    report.add(
                        "duplicate_annotation_id",
                        "fixed",
                        f"annotations[{k}] repeats annotation id {ann_id}; pycocotools keys ground truth "
                        "by id (a repeated id hides one of the objects and mis-scores AP), so evaluation "
                        "numbers it anew; give every annotation its own id",
                        annotation_id=ann_id,
                    )
                if is_int(ann_id):
                    seen_ids.add(ann_id)
            instance, image_id, crowd = self._read_annotation(k, ann, records, known_ids, to_contiguous)
            if not is_int(image_id) or image_id not in records:
                continue
            if instance is None:
                lost[image_id] = lost.get(image_id, 0) + 1
            elif crowd:
                records[image_id].crowd.append(instance)
            else:
                records[image_id].instances.append(instance)
        kept = []
        for record in records.values():
            if lost.get(record.image_id) and not record.instances and not record.crowd:
                report.add(
                    "image_lost_all_annotations",
                    "dropped",
                    f"{record.path.name}: all {lost[record.image_id]} of its annotations were dropped; "
                    "the image is left out rather than trained on as background",
                    image_id=record.image_id,
                )
                continue
            if not record.instances:
                report.counts["empty_images"] += 1
                if self.skip_empty:
                    report.counts["skipped_empty_images"] += 1
                    continue
            kept.append(record)
            report.counts["instances"] += len(record.instances)
            report.counts["crowd"] += len(record.crowd)
            report.instances_per_class.update(i.class_id for i in record.instances)
        report.counts["images"] = len(kept)
        if kept and report.counts["instances"] == 0:
            crowd = report.counts["crowd"]
            report.add(
                "no_trainable_instances",
                "refused",
                f"no image has an instance to train on ({crowd} iscrowd region(s) only serve evaluation)"
                + (
                    "; tools that export brush masks often set iscrowd: 1 on every object: set it to 0"
                    if crowd
                    else ""
                ),
            )
        return kept

    def _read_annotation(self, k: int, ann: Any, records: dict, known_ids: set, to_contiguous: dict):
        report = self.report
        if not isinstance(ann, dict):
            report.add("bad_annotation", "dropped", f"annotations[{k}] is not an object: {ann!r}")
            return None, None, False
        ann_id = ann.get("id", f"annotations[{k}]")
        image_id = ann.get("image_id")
        if not is_int(image_id) or image_id not in known_ids:
            report.add(
                "unknown_image", "dropped", f"image_id {image_id!r} is not in 'images'", annotation_id=ann_id
            )
            return None, None, False
        if image_id not in records:  # the image itself was dropped (and reported)
            return None, image_id, False
        record = records[image_id]
        crowd = bool(ann.get("iscrowd", 0))
        category_id = ann.get("category_id")
        if not is_int(category_id) or category_id not in to_contiguous:
            report.add(
                "unknown_category",
                "dropped",
                f"category_id {category_id!r} is not in 'categories' "
                f"(ids {list(self.category_map.dataset_ids)})",
                image_id=image_id,
                annotation_id=ann_id,
            )
            return None, image_id, crowd
        findings = []
        if "bbox" not in ann and isinstance(ann.get("segmentation"), dict):
            # The box comes from the mask: check the mask first (garbage RLE is a finding, not a
            # traceback from pycocotools).
            rle, rle_findings = check_segmentation(ann["segmentation"], record.width, record.height)
            if rle is None:
                for kind, action, message in rle_findings:
                    report.add(kind, action, message, image_id=image_id, annotation_id=ann_id)
                return None, image_id, crowd
            findings.append(("box_from_mask", "fixed", "has no 'bbox'; took it from the RLE mask"))
            bbox = mask_utils.toBbox(segmentation_to_rle(rle, record.height, record.width)).tolist()
        else:
            bbox = ann.get("bbox")
        box, box_findings = check_box(bbox, record.width, record.height)
        findings += box_findings
        segmentation = None
        if box is not None:
            segmentation, seg_findings = check_segmentation(
                ann.get("segmentation"), record.width, record.height
            )
            findings += seg_findings
        for kind, action, message in findings:
            if crowd and action in ("clipped", "fixed"):
                continue  # crowd regions only serve evaluation, which uses them as they are
            report.add(kind, action, message, image_id=image_id, annotation_id=ann_id)
        if box is None or segmentation is None:
            return None, image_id, crowd
        keypoints = None
        if self.keypoints is not None:
            keypoints, kp_findings = check_keypoints(
                ann.get("keypoints"), self.keypoints.num_keypoints, record.width, record.height, box
            )
            for kind, action, message in [] if crowd else kp_findings:
                report.add(kind, action, message, image_id=image_id, annotation_id=ann_id)
        instance = Instance(ann_id, to_contiguous[category_id], box, segmentation, ann, keypoints)
        return instance, image_id, crowd

    # ---------------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.records)

    def load_example(self, index: int, mask_size: int) -> dict[str, np.ndarray]:
        """One raw example as NumPy arrays (see :mod:`mrcnn_tf.data.base`).

        Raises:
            ValueError: the image cannot be decoded, or its size changed since the check.
        """
        record = self.records[index]
        image = load_rgb(record.path, record.apply_orientation)
        if image.shape[:2] != (record.height, record.width):
            raise ValueError(
                f"{record.path}: decoded to {image.shape[1]}x{image.shape[0]}, the annotation file says "
                f"{record.width}x{record.height} (was the file replaced after the check?)"
            )
        h, w = record.height, record.width
        masks = np.zeros((len(record.instances), mask_size, mask_size), np.uint8)
        for i, inst in enumerate(record.instances):
            masks[i] = crop_rle(segmentation_to_counts(inst.segmentation, h, w), h, w, inst.box, mask_size)
        example = {
            "image": image,
            "image_id": np.int64(record.image_id),
            "boxes": np.asarray([i.box for i in record.instances], np.float32).reshape(-1, 4),
            "classes": np.asarray([i.class_id for i in record.instances], np.int32),
            "masks": masks,
        }
        if self.keypoints is not None:
            k = self.keypoints.num_keypoints
            example["keypoints"] = np.asarray([i.keypoints for i in record.instances], np.float32).reshape(
                -1, k, 3
            )
        return example

    def _load_or_skip(self, index: np.ndarray, mask_size: int):
        try:
            ex = self.load_example(int(index), mask_size)
            ok = True
        except (ValueError, OSError) as exc:
            if self.strict:
                raise DatasetError(
                    f"{self.annotations}: image {self.records[int(index)].image_id}: {exc}"
                ) from exc
            record = self.records[int(index)]
            logger.warning(
                "skipping image %s (%s): %s; `mrcnn-tf data check --verify-images` finds all such files",
                record.image_id,
                record.path,
                exc,
            )
            ex = {
                "image": np.zeros((1, 1, 3), np.uint8),
                "image_id": np.int64(record.image_id),
                "boxes": np.zeros((0, 4), np.float32),
                "classes": np.zeros((0,), np.int32),
                "masks": np.zeros((0, mask_size, mask_size), np.uint8),
                "keypoints": np.zeros((0, self.num_keypoints, 3), np.float32),
            }
            ok = False
        return (*(ex[k] for k in self._example_keys()), np.bool_(ok))

    def _example_keys(self) -> tuple[str, ...]:
        keys = ("image", "image_id", "boxes", "classes", "masks")
        return keys + (("keypoints",) if self.keypoints is not None else ())

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
        """Raw examples, decoded in parallel (see :meth:`DetectionDataset.tf_dataset`).

        Images that fail to decode are skipped with a warning naming the file (an error in
        strict mode).
        """
        import tensorflow as tf

        if not self.records:
            raise DatasetError(f"{self.annotations}: no usable images are left after the checks")
        shards = (
            (input_context.num_input_pipelines, input_context.input_pipeline_id) if input_context else (1, 0)
        )
        indices = epoch_indices(
            len(self.records),
            shuffle=shuffle,
            seed=seed,
            repeat=repeat,
            num_shards=shards[0],
            shard_index=shards[1],
            skip=skip,
        )
        spec = raw_example_spec(mask_size, self.num_keypoints)
        keys = self._example_keys()

        def load(index):
            values = tf.numpy_function(
                lambda i: self._load_or_skip(i, mask_size),
                [index],
                [spec[k].dtype for k in keys] + [tf.bool],
                stateful=False,
            )
            example = {}
            for key, value in zip(keys, values[:-1], strict=True):
                value.set_shape(spec[key].shape)
                example[key] = value
            return example, values[-1]

        ds = indices.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.filter(_is_ok).map(_drop_flag)
        return with_shard_policy(ds, input_context, "DATA")

    def coco_dict(self) -> dict:
        """The kept images and annotations (crowd included) as a COCO dict, for pycocotools.

        The evaluator gets exactly what the checks approved: each annotation's cleaned box
        (clipped) and segmentation (bad polygons left out), ``iscrowd`` 0 where it was
        missing, ``area`` from the mask where it was missing or not a number in
        ``(0, width * height]`` (as COCO defines it), and an ``id`` of its own (ids that
        repeat, are 0 or are not integers are numbered anew; pycocotools keys ground truth by
        id and reads id 0 as "no match").
        """
        images, annotations = [], []
        used = {
            i.annotation_id for r in self.records for i in r.instances + r.crowd if is_int(i.annotation_id)
        }
        next_id = max(used, default=0) + 1
        taken: set = set()
        for record in self.records:
            images.append({**record.raw, "width": record.width, "height": record.height})
            for inst, crowd in [(i, 0) for i in record.instances] + [(i, 1) for i in record.crowd]:
                ann_id = inst.annotation_id
                if not is_int(ann_id) or ann_id == 0 or ann_id in taken:
                    ann_id, next_id = next_id, next_id + 1
                taken.add(ann_id)
                y1, x1, y2, x2 = inst.box
                area = inst.raw.get("area")
                if not (
                    isinstance(area, (int, float))
                    and not isinstance(area, bool)
                    and 0 < area <= record.width * record.height  # NaN and inf fail too
                ):
                    runs = segmentation_to_counts(inst.segmentation, record.height, record.width)
                    area = float(runs[1::2].sum())  # the mask's pixels (polygons, RLE or compressed RLE)
                annotations.append(
                    {
                        **inst.raw,
                        "id": ann_id,
                        "image_id": record.image_id,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "segmentation": inst.segmentation,
                        "area": float(area),
                        "iscrowd": crowd,
                        **({} if inst.keypoints is None else keypoints_to_coco(inst.keypoints)),
                    }
                )
        return {**self._info, "images": images, "annotations": annotations, "categories": self._categories}
