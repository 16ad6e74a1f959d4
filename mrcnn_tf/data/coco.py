"""COCO-format instance segmentation datasets (annotation JSON + image folder).

Everything is checked when the dataset is made, before any TensorFlow graph runs; each
finding names the annotation file, the image id and the annotation id (see
:mod:`mrcnn_tf.data.report`). Categories become contiguous class ids ``1..K`` (sorted by
dataset id; :class:`~mrcnn_tf.data.category_map.CategoryMap`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pycocotools.mask as mask_utils

from mrcnn_tf.data.base import DetectionDataset, epoch_indices, raw_example_spec, with_shard_policy
from mrcnn_tf.data.category_map import CategoryMap
from mrcnn_tf.data.coco_checks import check_box, check_file_name, check_segmentation, is_int
from mrcnn_tf.data.coco_keypoints import check_keypoints, keypoint_schema, keypoints_to_coco
from mrcnn_tf.data.images import load_rgb, probe_image
from mrcnn_tf.data.report import DataReport, DatasetError
from mrcnn_tf.data.rle import crop_rle, segmentation_to_counts, segmentation_to_rle
from mrcnn_tf.registries import DATASETS

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["CocoDataset", "ImageRecord", "Instance"]

logger = logging.getLogger(__name__)


@dataclass
class Instance:
    """One checked annotation.

    Attributes:
        annotation_id: the annotation's ``id`` (``"annotations[i]"`` when it has none).
        class_id: contiguous class id ``1..K``.
        box: ``[y1, x1, y2, x2]`` in pixels, clipped to the image.
        segmentation: polygons (bad ones removed) or RLE, in the file's frame.
        raw: the annotation as it was in the file (for :meth:`CocoDataset.coco_dict`).
        keypoints: float32 ``[K, 3]`` checked keypoints (:mod:`mrcnn_tf.data.coco_keypoints`),
            None when the dataset has no keypoints.
    """

    annotation_id: object
    class_id: int
    box: list[float]
    segmentation: object
    raw: dict
    keypoints: np.ndarray | None = None


@dataclass
class ImageRecord:
    """One checked image and its instances.

    Attributes:
        image_id: the image's ``id`` (any int, 0 included).
        path: the file, inside the image folder.
        height, width: the size the annotations are drawn on.
        apply_orientation: turn the pixels by their EXIF orientation when decoding.
        instances: the training targets (``iscrowd`` 0).
        crowd: ``iscrowd`` 1 regions (evaluation only).
        raw: the image entry as it was in the file.
    """

    image_id: int
    path: Path
    height: int
    width: int
    apply_orientation: bool = True
    instances: list[Instance] = field(default_factory=list)
    crowd: list[Instance] = field(default_factory=list)
    raw: dict = field(default_factory=dict)


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: annotation file not found") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the annotation file: {exc}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: a COCO file is a JSON object with 'images', 'annotations', 'categories'")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: key '{key}' is missing or not a list (COCO instances format)")
    if not isinstance(data.get("annotations", []), list):
        raise DatasetError(f"{path}: key 'annotations' is not a list")
    return data


#: Names that labelme-style exports give a category 0 that stands for the background.
BACKGROUND_NAMES = ("_background_", "background", "__background__", "bg")


def _foreground_categories(path: Path, categories: list, report: DataReport) -> list:
    """``categories`` without a category 0 named like the background (labelme exports one):
    class 0 is the background already, so it must not become a foreground class."""
    kept = []
    for cat in categories:
        if (
            isinstance(cat, dict)
            and cat.get("id") == 0
            and str(cat.get("name", "")).strip().lower() in BACKGROUND_NAMES
        ):
            report.add(
                "background_category",
                "dropped",
                f"category 0 {cat.get('name')!r} is the background, not an object class: it is left out "
                "(its annotations, if any, are dropped as unknown_category); delete it from 'categories'",
            )
            continue
        kept.append(cat)
    return kept


def _category_map(path: Path, categories: list) -> CategoryMap:
    for k, cat in enumerate(categories):
        if not isinstance(cat, dict) or not is_int(cat.get("id")):
            raise DatasetError(f"{path}: categories[{k}] needs an integer 'id', got {cat!r}")
    ids = [c["id"] for c in categories]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DatasetError(f"{path}: category ids {duplicates} appear more than once in 'categories'")
    if not categories:
        raise DatasetError(f"{path}: 'categories' is empty; a detector needs at least one class")
    return CategoryMap.from_categories(categories)


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
        data = _load_json(self.annotations)
        self.report = DataReport(str(self.annotations))
        categories = _foreground_categories(self.annotations, data["categories"], self.report)
        self.category_map = _category_map(self.annotations, categories)
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
            record = self._read_image(k, entry, known_ids)
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

    def _read_image(self, k: int, entry: Any, known_ids: set) -> ImageRecord | None:
        report = self.report
        if not isinstance(entry, dict) or not is_int(entry.get("id")):
            got = entry.get("id") if isinstance(entry, dict) else entry
            report.add("bad_image_entry", "dropped", f"images[{k}] needs an integer 'id', got {got!r}")
            return None
        image_id = entry["id"]
        if image_id in known_ids:
            report.add(
                "duplicate_image_id", "dropped", f"images[{k}] repeats image id {image_id}", image_id=image_id
            )
            return None
        known_ids.add(image_id)
        path, finding = check_file_name(self.images, entry.get("file_name"))
        if finding is not None:
            report.add(*finding, image_id=image_id)
            return None
        try:
            header = probe_image(path)
        except (FileNotFoundError, IsADirectoryError):
            report.add(
                "missing_file",
                "dropped",
                f"image file {path} does not exist (file_name {entry['file_name']!r})",
                image_id=image_id,
            )
            return None
        except PermissionError:
            report.add(
                "unreadable_file",
                "dropped",
                f"image file {path} cannot be read (permission denied)",
                image_id=image_id,
            )
            return None
        except (ValueError, OSError) as exc:
            report.add("not_an_image", "dropped", f"{path}: {exc}", image_id=image_id)
            return None
        width, height = entry.get("width"), entry.get("height")
        if width is None and height is None:
            width, height = header.width, header.height
            report.add(
                "size_from_file",
                "fixed",
                f"{path.name}: no width/height in the file; took {width}x{height} from the image",
                image_id=image_id,
            )
        if not (is_int(width) and is_int(height) and width > 0 and height > 0):
            report.add(
                "bad_image_entry",
                "dropped",
                f"{path.name}: width/height must be positive integers, got {width!r}x{height!r}",
                image_id=image_id,
            )
            return None
        apply_orientation = True
        if (width, height) != (header.width, header.height):
            if header.orientation != 1 and (width, height) == header.stored_size:
                apply_orientation = False
                report.add(
                    "exif_ignored",
                    "fixed",
                    f"{path.name}: the annotation size {width}x{height} matches the stored pixels, "
                    f"not their EXIF orientation {header.orientation}; the annotations are taken to be "
                    "on the stored pixels",
                    image_id=image_id,
                )
            else:
                report.add(
                    "size_mismatch",
                    "dropped",
                    f"{path.name}: the annotation file says {width}x{height} but the image is "
                    f"{header.width}x{header.height}; fix 'width'/'height' or the file",
                    image_id=image_id,
                )
                return None
        if self.verify_images:
            try:
                load_rgb(path, apply_orientation)
            except (ValueError, OSError) as exc:
                report.add("corrupt_image", "dropped", f"{path}: {exc}", image_id=image_id)
                return None
        return ImageRecord(image_id, path, height, width, apply_orientation, raw=entry)

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
