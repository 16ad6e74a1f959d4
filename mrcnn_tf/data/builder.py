"""Build datasets and the input pipeline from a config's ``data`` section.

::

    data:
      num_classes: 3                      # optional; checked against the dataset
      train: {type: CocoDataset, annotations: A.json, images: DIR}
      val:   {type: CocoDataset, annotations: B.json, images: DIR}
      pipeline: {batch_size: 2, min_size: 800, max_size: 1333}   # InputPipeline arguments
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mrcnn_tf.config_schema import constructed
from mrcnn_tf.data.base import DetectionDataset
from mrcnn_tf.data.pipeline import InputPipeline
from registry import ConfigError

__all__ = ["build_dataset", "build_input_pipeline", "check_num_classes"]


def build_dataset(config: Mapping[str, Any], split: str = "train") -> DetectionDataset:
    """The dataset named by ``config["data"][split]`` (``{type: Name, ...}``).

    Raises:
        ConfigError: no such split in the config, or bad arguments (the key is named).
        DatasetError: the dataset's files are unusable (the file is named).
    """
    from mrcnn_tf.registries import DATASETS, load_builtins

    load_builtins()
    data = config.get("data") or {}
    spec = data.get(split)
    if spec is None:
        raise ConfigError(
            f"the config has no data.{split} dataset; add e.g. "
            f"`data: {{{split}: {{type: CocoDataset, annotations: ..., images: ...}}}}`"
        )
    try:
        return DATASETS.build(spec)
    except ConfigError as exc:
        raise ConfigError(exc.reason if hasattr(exc, "reason") else str(exc), key=f"data.{split}") from exc


def build_input_pipeline(config: Mapping[str, Any]) -> InputPipeline:
    """The :class:`InputPipeline` of ``config["data"]["pipeline"]`` (defaults when absent)."""
    return constructed(InputPipeline, (config.get("data") or {}).get("pipeline"), "data.pipeline")


def check_num_classes(config: Mapping[str, Any], dataset: DetectionDataset) -> int:
    """The dataset's ``K``, after checking it against ``model.num_classes`` / ``data.num_classes``
    (and, for a model with a keypoint head, ``model.num_keypoints`` against the dataset's).

    Raises:
        ConfigError: the config names a different number of classes (or keypoints) than the
            dataset has, or a keypoint head for a dataset without keypoints.
    """
    for key in ("model", "data"):
        given = (config.get(key) or {}).get("num_classes")
        if given is not None and given != dataset.num_classes:
            names = ", ".join(dataset.category_map.names[:10])
            raise ConfigError(
                f"is {given} but the dataset has {dataset.num_classes} categories ({names}"
                f"{', ...' if dataset.num_classes > 10 else ''}); "
                f"set it to {dataset.num_classes} or leave it out",
                key=f"{key}.num_classes",
            )
    model = config.get("model") or {}
    if model.get("keypoint_head") is not None:
        given = model.get("num_keypoints")
        if not dataset.num_keypoints:
            raise ConfigError(
                "is set, but the dataset has no keypoints (no category has a 'keypoints' list, as COCO's "
                "person_keypoints files do); use a keypoint dataset or set model.keypoint_head: null",
                key="model.keypoint_head",
            )
        if given != dataset.num_keypoints:
            names = ", ".join(dataset.keypoints.names[:6])
            raise ConfigError(
                f"is {given!r} but the dataset's instances have {dataset.num_keypoints} keypoints ({names}"
                f"{', ...' if dataset.num_keypoints > 6 else ''}); set it to {dataset.num_keypoints}",
                key="model.num_keypoints",
            )
    return dataset.num_classes
