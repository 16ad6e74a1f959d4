"""Loading mrcnn_tf configs: the generic loader plus our registries and top-level sections.

A config names components by registered name and gives their constructor arguments::

    _base_: [_base_/models/mask_rcnn_r50_fpn.yaml, _base_/runtime/default.yaml]
    model:
      backbone: {type: ResNet, depth: 101}

See :mod:`registry.config` for ``_base_``, ``_delete_``, ``imports:`` and ``--set``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from registry import config as _config
from registry.errors import ConfigError

#: Top-level sections a config may have; anything else is a typo and fails at load time.
TOP_LEVEL_KEYS = ("model", "data", "train", "optimizer", "schedule", "evaluation", "runtime")
#: ``model`` keys of round one that moved to ``model.detection_generator`` (see :func:`migrate_config`).
MOVED_TO_DETECTION_GENERATOR = ("score_threshold", "nms_iou_threshold", "max_detections", "nms_backend")

#: The repository's ``configs/`` folder (present in a source checkout or editable install).
CONFIG_ROOT = Path(__file__).resolve().parent.parent / "configs"


def resolve_config_path(name: str | os.PathLike) -> Path:
    """A config path as given, or, failing that, relative to the bundled ``configs/`` folder.

    ``mask_rcnn_r18_fpn_synthetic`` and ``mask_rcnn_r18_fpn_synthetic.yaml`` both resolve to
    ``configs/mask_rcnn_r18_fpn_synthetic.yaml`` when no such file exists locally.
    """
    path = Path(name)
    if path.exists():
        return path
    found = _config.find_in_roots(path, [CONFIG_ROOT])
    if found is not None:
        return found
    raise ConfigError(
        f"config file not found (also looked in {CONFIG_ROOT}); run `mrcnn-tf list configs` "
        "to see the bundled ones",
        file=str(path),
    )


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict:
    """Load and validate a config against the built-in and plugin components.

    Args:
        path: a YAML file, or the name of a bundled config (see :func:`resolve_config_path`).
        overrides: ``"key.path=VALUE"`` strings (``--set`` on the command line).

    Returns:
        The fully resolved config as plain Python data.

    Raises:
        registry.ConfigError: with the file, the dotted key path and close matches.
        registry.PluginError: an ``imports:`` module that cannot be imported.
    """
    from mrcnn_tf.config_schema import check_sections
    from mrcnn_tf.registries import ALL, load_builtins

    load_builtins()
    return _config.load_config(
        resolve_config_path(path),
        overrides,
        registries=list(ALL.values()),
        top_level_keys=TOP_LEVEL_KEYS,
        base_roots=[CONFIG_ROOT],  # `_base_: mask_rcnn_r50_fpn_1x_coco.yaml` works from any folder
        migrate=migrate_config,
        check=check_sections,
    )


def migrate_config(cfg: dict) -> list[str]:
    """Rewrite a round-one ``model`` section in place to today's layout; returns what moved.

    Run directories written before the detector became a composition of parts (0.1.0.dev0,
    2026-11) keep loading: ``model.score_threshold``, ``nms_iou_threshold``, ``max_detections``
    and ``nms_backend`` move into ``model.detection_generator``; ``roi_sampler.box_weights``
    becomes ``detection_generator.box_coder.weights`` and ``proposal_generator.box_weights``
    ``proposal_generator.box_coder.weights`` (``anchor_labeler.box_weights`` must equal it: the
    builder gives both parts one coder). Weights files are unaffected (no weight moved).

    Raises:
        ConfigError: the old and the new key both set, to different values.
    """
    model = cfg.get("model")
    if not isinstance(model, dict):
        return []
    moved = []

    def part(key: str, default_type: str) -> dict:
        value = model.get(key)
        if value is None or isinstance(value, str):
            value = model[key] = {"type": value or default_type}
        return value

    for key in MOVED_TO_DETECTION_GENERATOR:
        if key in model:
            value = model.pop(key)
            generator = part("detection_generator", "DetectionGenerator")
            if key in generator and generator[key] != value:
                raise ConfigError(
                    f"is {value!r} but model.detection_generator.{key} is {generator[key]!r}; keep only "
                    "the latter (round-one key)",
                    key=f"model.{key}",
                )
            generator[key] = value
            moved.append(f"model.{key} -> model.detection_generator.{key}")
    weights = {}
    for key in ("roi_sampler", "proposal_generator", "anchor_labeler"):
        if isinstance(model.get(key), dict) and "box_weights" in model[key]:
            weights[key] = list(model[key].pop("box_weights"))
    if "roi_sampler" in weights:
        coder = part("detection_generator", "DetectionGenerator").setdefault("box_coder", {})
        coder["weights"] = weights["roi_sampler"]
        moved.append("model.roi_sampler.box_weights -> model.detection_generator.box_coder.weights")
    rpn = weights.get("proposal_generator", weights.get("anchor_labeler"))
    if "proposal_generator" in weights and "anchor_labeler" in weights and weights["anchor_labeler"] != rpn:
        raise ConfigError(
            f"{weights['anchor_labeler']} differs from model.proposal_generator.box_weights {rpn}: the RPN "
            "decodes with the weights it was trained with",
            key="model.anchor_labeler.box_weights",
        )
    if rpn is not None:
        part("proposal_generator", "ProposalGenerator").setdefault("box_coder", {})["weights"] = rpn
        moved.append("model.*.box_weights -> model.proposal_generator.box_coder.weights")
    return moved


def list_configs() -> list[Path]:
    """The bundled zoo configs (``configs/**/*.yaml`` outside ``_base_``), sorted."""
    if not CONFIG_ROOT.is_dir():
        return []
    return sorted(p for p in CONFIG_ROOT.rglob("*.yaml") if "_base_" not in p.relative_to(CONFIG_ROOT).parts)
