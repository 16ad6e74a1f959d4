"""What the ``mrcnn-tf`` commands share: overrides, configs and weights of run directories.

A run directory (``train --workdir``, ``mrcnn-tf convert --out``) holds ``config.yaml``,
``model.weights.h5`` and ``label_map.json``; every command that takes weights takes the
directory, finds its config when ``--config`` is not given, and its class names and dataset
category ids in ``label_map.json``: predicting and exporting never build (or generate) the
training dataset.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from registry.errors import UserError

__all__ = [
    "category_map_for",
    "config_for",
    "config_overrides",
    "model_with_weights",
    "run_directory_of",
    "synthetic_data_in",
]

CONFIG_FILE = "config.yaml"
LABEL_MAP = "label_map.json"


def config_overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set KEY=VALUE ...`` groups of a command line, flattened (empty without any)."""
    return [v for group in (getattr(args, "set", None) or []) for v in group]


def synthetic_data_in(cfg: dict, workdir: str | os.PathLike) -> None:
    """Generate the synthetic dataset inside the workdir unless the config says where."""
    for split in ("train", "val"):
        spec = (cfg.get("data") or {}).get(split)
        if isinstance(spec, dict) and spec.get("type") == "SyntheticDataset" and not spec.get("root"):
            spec["root"] = os.path.join(str(workdir), "synthetic")


def run_directory_of(weights: str | os.PathLike) -> Path | None:
    """The run directory that ``weights`` (a run directory, its weights file or one of its
    ``checkpoints/``) belongs to: the nearest folder with a ``config.yaml`` or ``label_map.json``."""
    path = Path(weights)
    start = path if path.is_dir() else path.parent
    for folder in (start, start.parent):
        if (folder / CONFIG_FILE).is_file() or (folder / LABEL_MAP).is_file():
            return folder
    return None


def config_for(config: str | None, weights: str | None, overrides: list[str]) -> dict:
    """``config`` loaded with ``overrides``; without one, the config of the weights' run directory.

    Raises:
        UserError: neither a config nor a run directory with ``config.yaml``.
    """
    from mrcnn_tf.config import load_config

    if config is None:
        run = run_directory_of(weights) if weights else None
        if run is None or not (run / CONFIG_FILE).is_file():
            raise UserError(
                f"no config given and no {CONFIG_FILE} in the run directory of {weights!r}; pass the "
                "config the weights were trained with (a YAML file or a bundled config name)"
            )
        config = str(run / CONFIG_FILE)
    return load_config(config, overrides)


def category_map_for(cfg: dict, weights: str | os.PathLike):
    """Class names and dataset category ids of trained weights: the run's ``label_map.json``.

    Weights outside a run directory get ``class_1 .. class_K`` with ids ``1..K``, K from the
    config (a warning says so); the dataset is never read.

    Raises:
        UserError: no label map and no ``model.num_classes``/``data.num_classes`` in the config.
    """
    from mrcnn_tf.data.category_map import CategoryMap

    run = run_directory_of(weights)
    if run is not None and (run / LABEL_MAP).is_file():
        return CategoryMap.load(run / LABEL_MAP)
    k = (cfg.get("model") or {}).get("num_classes") or (cfg.get("data") or {}).get("num_classes")
    if not isinstance(k, int) or k < 1:
        raise UserError(
            f"{weights}: no {LABEL_MAP} beside these weights and no num_classes in the config; pass the "
            "run directory the weights came from"
        )
    print(f"warning: no {LABEL_MAP} beside {weights}: classes are named class_1..class_{k} with ids 1..{k}")
    return CategoryMap(tuple(range(1, k + 1)), tuple(f"class_{i}" for i in range(1, k + 1)))


def model_category_map(weights: str | os.PathLike, dataset):
    """The classes of trained weights: their run's ``label_map.json`` when there is one (a model
    converted from torchvision has 90 classes, class k = COCO category id k), else the dataset's.

    A dataset category the model has no class for is reported (it can only score 0)."""
    from mrcnn_tf.data.category_map import CategoryMap

    run = run_directory_of(weights)
    if run is None or not (run / LABEL_MAP).is_file():
        return dataset.category_map
    classes = CategoryMap.load(run / LABEL_MAP)
    unknown = sorted(set(dataset.category_map.dataset_ids) - set(classes.dataset_ids))
    if unknown:
        print(
            f"warning: the model's classes ({run / LABEL_MAP}) have no category ids {unknown[:10]} of the "
            "dataset; those categories score AP 0"
        )
    return classes


def model_with_weights(
    cfg: dict, weights: str | os.PathLike, num_classes: int | None = None, strategy=None
) -> tuple[Any, str]:
    """The config's model, built (under ``strategy``'s scope when given), with ``weights``
    loaded; returns ``(model, file loaded)``."""
    import contextlib

    from mrcnn_tf import build_model
    from mrcnn_tf.export.targets import for_this_machine
    from mrcnn_tf.training.workdir import load_weights

    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_model(for_this_machine(cfg), num_classes=num_classes)
        model.build()
        return model, load_weights(model, weights)
