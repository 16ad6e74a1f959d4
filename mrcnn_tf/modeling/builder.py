"""Build a detector from a loaded config: the one place where config becomes constructor calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registry import ConfigError


def build_model(config: Mapping[str, Any]):
    """The detector that ``config["model"]`` describes (a ``MaskRCNN`` unless ``type`` says otherwise).

    ``num_classes`` comes from ``model.num_classes`` or else ``data.num_classes``.

    Raises:
        ConfigError: no model section, no ``num_classes``, or a component rejects its arguments
            (the message names the key).
    """
    from mrcnn_tf.registries import DETECTORS, load_builtins

    load_builtins()
    model = config.get("model")
    if not isinstance(model, Mapping):
        raise ConfigError("the config has no 'model' section (a {type: MaskRCNN, ...} mapping)")
    spec = dict(model)
    spec.setdefault("type", "MaskRCNN")
    num_classes = spec.pop("num_classes", None)
    if num_classes is None:
        num_classes = (config.get("data") or {}).get("num_classes")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ConfigError(
            f"model.num_classes (or data.num_classes) must be a positive integer, got {num_classes!r}"
        )
    try:
        return DETECTORS.build(spec, num_classes=num_classes)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"model: {exc}") from exc
