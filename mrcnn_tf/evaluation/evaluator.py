"""Run a detector over a dataset and score it with the COCO metrics."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrcnn_tf import visualization
from mrcnn_tf.evaluation.coco_metrics import coco_metrics, detections_to_coco


class CocoEvaluator:
    """COCO ``bbox``, ``segm`` and ``keypoints`` metrics of a model on a dataset (pycocotools).

    Args:
        dataset: a registered dataset (its ``coco_dict()`` is the ground truth, crowd
            regions included; its category map turns class ids back into dataset ids).
        pipeline: the :class:`~mrcnn_tf.data.pipeline.InputPipeline` (evaluation mode: resize and
            pad only).
        mask_threshold: pasted masks are binarised at ``>=`` this (0.5).
        max_images: evaluate only the first ``max_images`` images (all when None).
        iou_types: ``bbox``, ``segm`` and/or ``keypoints``; by default what the model predicts
            (``segm`` with a mask head, ``keypoints`` with a keypoint head on a dataset with
            keypoints, scored with the dataset's OKS sigmas).
        num_pictures: how many prediction pictures :meth:`evaluate` returns (for TensorBoard).
        mask_paste: ``detectron2`` or ``torchvision`` (:func:`mrcnn_tf.ops.masks.paste_mask_crop`).
        category_map: the model's classes → category ids and names, when they are not the
            dataset's (a converted COCO model keeps torchvision's 90 classes, class k = COCO id
            k; a run evaluated on another export of its data): results carry these ids, so
            they are scored by category id, whatever the order of the dataset's categories.
        strategy: the ``tf.distribute`` strategy the model was built under (default: the
            current one). Every replica of every worker predicts its share of the batches
            (:mod:`mrcnn_tf.evaluation.distributed`); the chief gathers the detections and
            runs pycocotools once: the same detections, in the same order, as one device. Under
            ``MultiWorkerMirroredStrategy`` every worker must call :meth:`evaluate`; only the
            chief scores and writes, and pictures come from the chief's own batches.
    """

    def __init__(
        self,
        dataset,
        pipeline,
        *,
        mask_threshold: float = 0.5,
        max_images: int | None = None,
        iou_types: Sequence[str] | None = None,
        num_pictures: int = 0,
        category_map=None,
        mask_paste: str = "detectron2",
        strategy=None,
    ):
        self.strategy = strategy
        self.mask_paste = mask_paste
        self.dataset = dataset
        self.category_map = category_map if category_map is not None else dataset.category_map
        self.pipeline = pipeline
        self.mask_threshold = float(mask_threshold)
        self.max_images = max_images
        self.iou_types = None if iou_types is None else tuple(iou_types)
        self.num_pictures = int(num_pictures)
        self._predict_fns: dict[int, object] = {}

    def _predict_fn(self, model):
        import tensorflow as tf

        key = id(model)
        if key not in self._predict_fns:
            spec = {
                "images": tf.TensorSpec(
                    [None, None, None, 3],
                    tf.uint8 if getattr(self.pipeline, "uint8_images", True) else tf.float32,
                ),
                "image_size": tf.TensorSpec([None, 2], tf.float32),
            }
            self._predict_fns = {key: tf.function(lambda x: model(x, training=False), input_signature=[spec])}
        return self._predict_fns[key]

    def predict(self, model) -> tuple[list[dict], list[int], list[np.ndarray]]:
        """Detections over the dataset: (COCO results, evaluated image ids, pictures), in
        dataset order, gathered from every worker (see ``strategy``)."""
        import tensorflow as tf

        from mrcnn_tf.evaluation.distributed import all_gather_json, run_sharded

        strategy = self.strategy or tf.distribute.get_strategy()
        ds = self.pipeline(self.dataset, training=False, repeat=False)
        size = self.pipeline.batch_size
        if self.max_images is not None:
            ds = ds.take(math.ceil(self.max_images / size))
        to_dataset = [0, *self.category_map.dataset_ids]
        mine, pictures = [], []
        for index, batch, outputs in run_sharded(strategy, enumerate(ds), self._predict_fn(model)):
            count = len(batch["image_id"])
            if self.max_images is not None:
                count = max(0, min(count, self.max_images - index * size))
                outputs = {k: v[:count] for k, v in outputs.items()}
                batch = {k: v[:count] for k, v in batch.items()}
            results = detections_to_coco(outputs, batch, to_dataset, self.mask_threshold, self.mask_paste)
            mine.append([index, results, [int(i) for i in batch["image_id"]]])
            for b in range(count):
                if len(pictures) < self.num_pictures:
                    h, w = (int(v) for v in batch["image_size"][b])
                    names = self.category_map.name
                    skeleton = (self.category_map.keypoints or {}).get("skeleton", ())
                    pictures.append(
                        visualization.prediction_picture(
                            batch["images"][b][:h, :w], outputs, b, names, min_size=512, skeleton=skeleton
                        )
                    )
        gathered = sorted(
            (entry for part in all_gather_json(strategy, mine) for entry in part), key=lambda e: e[0]
        )
        results = [r for _, part, _ in gathered for r in part]
        image_ids = [i for _, _, ids in gathered for i in ids]
        return results, image_ids, pictures

    def iou_types_for(self, model) -> tuple[str, ...]:
        """The metrics to compute for ``model``: ``iou_types``, else what the model predicts."""
        if self.iou_types is not None:
            return self.iou_types
        types = ["bbox"]
        if getattr(model, "mask_head", True) is not None:
            types.append("segm")
        if getattr(model, "keypoint_head", None) is not None and getattr(self.dataset, "keypoints", None):
            types.append("keypoints")
        return tuple(types)

    def is_chief(self) -> bool:
        """Whether this worker scores and writes (always, outside multi-worker mode)."""
        from mrcnn_tf.training.strategy import is_chief

        return self.strategy is None or is_chief(self.strategy)

    def ground_truth(self, image_ids: Sequence[int] | None = None) -> dict:
        """The dataset's COCO dict, restricted to ``image_ids`` when given."""
        gt = self.dataset.coco_dict()
        if image_ids is None:
            return gt
        keep = set(image_ids)
        return {
            **gt,
            "images": [im for im in gt["images"] if im["id"] in keep],
            "annotations": [a for a in gt.get("annotations", []) if a["image_id"] in keep],
        }

    def evaluate(self, model, out_dir: str | os.PathLike | None = None, step: int | None = None) -> dict:
        """Predict, score, and (with ``out_dir``) write ``metrics.json`` and ``detections.json``.

        Returns:
            ``{"bbox": {...}, "segm": {...}, ("keypoints": {...},) "summary": text, "num_images": n,
            "num_detections": d, "pictures": [...]}``; on a worker that is not the chief only
            ``{"chief": False, "num_images": n, "num_detections": d}`` (nothing written).
        """
        results, image_ids, pictures = self.predict(model)
        if not self.is_chief():
            return {"chief": False, "num_images": len(image_ids), "num_detections": len(results)}
        schema = getattr(self.dataset, "keypoints", None)
        metrics, summary = coco_metrics(
            self.ground_truth(image_ids),
            results,
            self.iou_types_for(model),
            keypoint_sigmas=None if schema is None else schema.sigmas,
        )
        if out_dir is not None:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            record = {**metrics, "num_images": len(image_ids), "num_detections": len(results)}
            if step is not None:
                record["step"] = int(step)
            (out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            (out / "detections.json").write_text(json.dumps(results) + "\n", encoding="utf-8")
        return {
            **metrics,
            "summary": summary,
            "num_images": len(image_ids),
            "num_detections": len(results),
            "pictures": pictures,
        }
