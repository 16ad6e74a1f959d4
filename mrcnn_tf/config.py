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
TOP_LEVEL_KEYS = ("model", "data", "train", "optimizer", "schedule", "evaluation", "export", "runtime")

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
    from mrcnn_tf.registries import ALL, load_builtins

    load_builtins()
    return _config.load_config(
        resolve_config_path(path),
        overrides,
        registries=list(ALL.values()),
        top_level_keys=TOP_LEVEL_KEYS,
        base_roots=[CONFIG_ROOT],  # `_base_: mask_rcnn_r50_fpn_1x_coco.yaml` works from any folder
    )


def list_configs() -> list[Path]:
    """The bundled zoo configs (``configs/**/*.yaml`` outside ``_base_``), sorted."""
    if not CONFIG_ROOT.is_dir():
        return []
    return sorted(p for p in CONFIG_ROOT.rglob("*.yaml") if "_base_" not in p.relative_to(CONFIG_ROOT).parts)
