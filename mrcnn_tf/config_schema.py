"""The plain (not ``{type: ...}``) sections of a config, checked at load time: one checker for all.

``train``, ``evaluation``, ``runtime``, ``data`` and ``data.pipeline`` are checked key by key
against the class that reads them: unknown keys (with close matches), value types from the
class's type hints (a string where an int belongs), and ranges from its ``RANGES`` (``min_size:
-5``, ``batch_size: 0``). Errors are :class:`registry.ConfigError` with the dotted key; the
config loader adds the file the key came from. Registered components (``{type: ...}``) are
checked by the registries instead. Imports no TensorFlow.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from registry.config import unknown_key_message
from registry.errors import ConfigError

#: ``{argument: (low, high)}`` bounds, inclusive; None for an open end.
Ranges = Mapping[str, tuple[float | None, float | None]]


def check_keys(section: Mapping[str, Any], allowed: list[str] | tuple[str, ...], prefix: str) -> None:
    """Raise a ``ConfigError`` naming ``prefix.key`` for the first key not in ``allowed``."""
    if not isinstance(section, Mapping):
        raise ConfigError(f"must be a mapping (key: value lines), got {section!r}", key=prefix)
    for key in section:
        if key not in allowed:
            raise ConfigError(unknown_key_message(key, allowed), key=f"{prefix}.{key}")


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is not None:
        args = typing.get_args(hint)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        hint, "null" if hint is type(None) else getattr(hint, "__name__", str(hint))
    )


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(hint))
    if origin in (list, tuple, collections.abc.Sequence):
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _numbers(value: Any) -> list[float]:
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def check_values(section: Mapping[str, Any], hints: Mapping[str, Any], ranges: Ranges, prefix: str) -> None:
    """Types from ``hints`` and bounds from ``ranges`` (each number of a list is bounded too)."""
    for key, value in section.items():
        hint = hints.get(key, Any)
        if not _matches(value, hint):
            raise ConfigError(
                f"must be {_type_name(hint)}, got {value!r} ({type(value).__name__})", key=f"{prefix}.{key}"
            )
        low, high = ranges.get(key, (None, None))
        for number in _numbers(value):
            if (low is not None and number < low) or (high is not None and number > high):
                bound = (
                    f">= {low}" if high is None else f"<= {high}" if low is None else f"in [{low}, {high}]"
                )
                raise ConfigError(f"must be {bound}, got {value!r}", key=f"{prefix}.{key}")


def signature_hints(cls: type) -> dict[str, Any]:
    """``{argument: type hint}`` of a class's constructor (or a dataclass's fields)."""
    target = cls if dataclasses.is_dataclass(cls) else cls.__init__
    hints = typing.get_type_hints(target)
    hints.pop("return", None)
    return hints


def check_section(section: Any, cls: type, prefix: str) -> None:
    """Check a section against the constructor of ``cls`` (keys, types, ``cls.RANGES``)."""
    if section is None:
        return
    hints = signature_hints(cls)
    if dataclasses.is_dataclass(cls):
        allowed = [f.name for f in dataclasses.fields(cls)]
    else:
        allowed = [p for p in inspect.signature(cls).parameters if p not in ("self", "kwargs")]
    check_keys(section, allowed, prefix)
    check_values(section, hints, getattr(cls, "RANGES", {}), prefix)


#: Keys of ``data:`` besides the splits.
DATA_KEYS = ("num_classes", "train", "val", "test", "pipeline")


def check_sections(cfg: Mapping[str, Any]) -> None:
    """Check ``train``, ``evaluation``, ``runtime``, ``data`` and ``data.pipeline`` of a config."""
    from mrcnn_tf.data.pipeline import InputPipeline
    from mrcnn_tf.training.settings import EvalSettings, RuntimeSettings, TrainSettings

    sections: dict[str, type] = {
        "train": TrainSettings,
        "evaluation": EvalSettings,
        "runtime": RuntimeSettings,
    }
    for name, cls in sections.items():
        constructed(cls, cfg.get(name), name)  # keys, types, ranges, then the class's own checks
    data = cfg.get("data")
    if data is None:
        return
    check_keys(data, DATA_KEYS, "data")
    check_values(
        {k: v for k, v in data.items() if k == "num_classes"},
        {"num_classes": int},
        {"num_classes": (1, None)},
        "data",
    )
    constructed(InputPipeline, data.get("pipeline"), "data.pipeline")


def constructed(cls: Callable[..., Any], section: Mapping[str, Any] | None, prefix: str) -> Any:
    """``cls(**section)`` after :func:`check_section`; ValueErrors become ``ConfigError`` at ``prefix``."""
    section = dict(section or {})
    check_section(section, cls, prefix)  # type: ignore[arg-type]
    try:
        return cls(**section)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc), key=prefix) from exc
