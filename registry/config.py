"""YAML configs: ``_base_`` inheritance, deep merge, ``_delete_``, ``imports:``, ``--set``.

A config file is a YAML mapping. Its special keys:

* ``_base_``: a path or a list of paths, relative to the file (failing that, relative to the
  loader's ``base_roots``, e.g. a package's bundled configs). Bases are merged in order,
  then the file itself on top ("child wins"). Dicts merge key by key; lists and scalars
  replace. A cycle of bases is an error.
* ``_delete_: true`` inside a dict: replace the inherited dict instead of merging into it.
* ``imports``: a list of module names imported before the config is checked (plugins).
  Lists of imports from bases are concatenated, not replaced.

Overrides from the command line (``--set model.backbone.depth=101``) are applied last; the
value is parsed as YAML (``1`` is an int, ``[1, 2]`` a list, ``true`` a bool, ``abc`` a str).

Every ``{type: Name, ...}`` dict is then checked against the registries: the type must be
registered in the role its key calls for (``backbone:`` wants a backbone), and the other keys
must be arguments of that class's constructor. Errors name the file the key came from, the
dotted key path and close matches. YAML is read with a safe loader only: tags such as
``!!python/object`` are refused.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from registry.core import Registry, check_arguments
from registry.errors import ConfigError, RegistryError
from registry.plugins import import_modules
from registry.yaml_io import dump_config as dump_config  # re-exported: registry.config.dump_config
from registry.yaml_io import parse_yaml as parse_yaml
from registry.yaml_io import read_yaml

Path_ = tuple[Any, ...]  # a key path: str keys and int list indices
Origins = dict[Path_, str]

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"
IMPORTS_KEY = "imports"


# ---------------------------------------------------------------------------- key paths
def format_path(path: Iterable[Any]) -> str:
    """``("model", "losses", 0, "type")`` -> ``"model.losses[0].type"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def origin_of(origins: Origins, path: Path_, default: str | None = None) -> str | None:
    """The file that set ``path`` (or its nearest set ancestor)."""
    for end in range(len(path), 0, -1):
        found = origins.get(tuple(path[:end]))
        if found is not None:
            return found
    return default


def _record(node: Any, path: Path_, source: str, origins: Origins) -> None:
    """Mark ``path`` and every key below it as coming from ``source``."""
    if path:
        origins[path] = source
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in (BASE_KEY, DELETE_KEY):
                _record(value, (*path, key), source, origins)


def _forget(origins: Origins, prefix: Path_) -> None:
    n = len(prefix)
    for path in [p for p in origins if p[:n] == prefix and len(p) > n]:
        del origins[path]


# ----------------------------------------------------------------------------- merging
def _delete_flag(node: dict, path: Path_, source: str) -> bool:
    flag = node.get(DELETE_KEY, False)
    if not isinstance(flag, bool):
        raise ConfigError(
            f"{DELETE_KEY} must be true or false, got {flag!r}",
            file=source,
            key=format_path((*path, DELETE_KEY)),
        )
    return flag


def _check_delete_flags(node: Any, path: Path_, source: str) -> None:
    if isinstance(node, dict):
        _delete_flag(node, path, source)
        for key, value in node.items():
            _check_delete_flags(value, (*path, key), source)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check_delete_flags(value, (*path, index), source)


def _strip_delete(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_delete(v) for k, v in node.items() if k != DELETE_KEY}
    if isinstance(node, list):
        return [_strip_delete(v) for v in node]
    return node


def merge(
    base: dict, child: dict, *, source: str = "", origins: Origins | None = None, path: Path_ = ()
) -> dict:
    """Deep-merge ``child`` onto ``base`` (neither is modified) and return the result.

    Dicts merge recursively; any other value (lists included) replaces. A child dict with
    ``_delete_: true`` replaces the base dict instead of merging into it. If ``origins`` is
    given, it is updated so that each key of ``child`` maps to ``source``.
    """
    if _delete_flag(child, path, source):
        result: dict = {}
        if origins is not None:
            _forget(origins, path)
    else:
        result = copy.deepcopy(base)
    for key, value in child.items():
        if key == DELETE_KEY:
            continue
        sub = (*path, key)
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value, source=source, origins=origins, path=sub)
            if origins is not None:
                origins.setdefault(sub, source)
        else:
            if origins is not None:
                _forget(origins, sub)
                _record(value, sub, source, origins)
            result[key] = _strip_delete(copy.deepcopy(value))
    return result


def _as_base_list(value: Any, source: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(
        f"{BASE_KEY} must be a path or a list of paths, got {value!r}", file=source, key=BASE_KEY
    )


def _as_imports(value: Any, source: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(
            f"{IMPORTS_KEY} must be a list of module names, got {value!r}", file=source, key=IMPORTS_KEY
        )
    return value


def find_in_roots(name: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> Path | None:
    """``root/name`` or ``root/name.yaml`` under the first of ``roots`` that has it, else None."""
    for root in roots:
        for candidate in (Path(root) / name, Path(root) / f"{name}.yaml"):
            if candidate.is_file():
                return candidate
    return None


def _find_base(path: Path, base_name: str, base_roots: Sequence[Path], source: str) -> Path:
    """``base_name`` relative to the file ``path``, else under one of ``base_roots``."""
    base_path = (path.parent / base_name) if not os.path.isabs(base_name) else Path(base_name)
    if base_path.is_file():
        return base_path
    found = None if os.path.isabs(base_name) else find_in_roots(base_name, base_roots)
    if found is not None:
        return found
    also = f" or under {', '.join(str(r) for r in base_roots)}" if base_roots else ""
    raise ConfigError(
        f"base config '{base_name}' not found (looked for {base_path.resolve()}{also}); "
        f"{BASE_KEY} paths are relative to the file that names them",
        file=source,
        key=BASE_KEY,
    )


def _load_tree(
    path: Path, stack: tuple[Path, ...], base_roots: Sequence[Path] = ()
) -> tuple[dict, Origins, list[str]]:
    """Load ``path`` with its bases merged. Returns (config, origins, imports)."""
    resolved = path.resolve()
    if resolved in stack:
        chain = " -> ".join(str(p) for p in (*stack, resolved))
        raise ConfigError(f"{BASE_KEY} cycle: {chain}", file=str(path), key=BASE_KEY)
    raw = read_yaml(path)
    source = str(path)
    _check_delete_flags(raw, (), source)
    merged: dict = {}
    origins: Origins = {}
    imports: list[str] = []
    for base_name in _as_base_list(raw.get(BASE_KEY, []), source):
        base_path = _find_base(path, base_name, base_roots, source)
        base_cfg, base_origins, base_imports = _load_tree(base_path, (*stack, resolved), base_roots)
        merged = merge(merged, base_cfg, source=str(base_path), origins=origins)
        origins.update(base_origins)  # the base knows which of its own bases set each key
        imports += [m for m in base_imports if m not in imports]
    own = {k: v for k, v in raw.items() if k != BASE_KEY}
    imports += [m for m in _as_imports(own.pop(IMPORTS_KEY, None), source) if m not in imports]
    merged = merge(merged, own, source=source, origins=origins)
    return merged, origins, imports


# --------------------------------------------------------------------------- overrides
_KEY_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$|^[0-9]+$")


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """Parse ``"a.b.c=VALUE"`` into (``["a", "b", "c"]``, value parsed as YAML).

    Numeric key parts (``anchors.sizes.0=16``) index into lists.

    Raises:
        ConfigError: no ``=``, an empty or malformed key, or a value that is not valid YAML.
    """
    source = f"--set {text}"
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(
            "an override must look like key.path=VALUE (e.g. model.backbone.depth=50)", file=source
        )
    key, _, value_text = text.partition("=")
    key = key.strip()
    parts = key.split(".") if key else []
    if not parts or not all(_KEY_PART.match(p) for p in parts):
        raise ConfigError(
            f"malformed key '{key}': use dot-separated names such as model.backbone.depth", file=source
        )
    value = parse_yaml(value_text, source=source) if value_text.strip() else None
    return [int(p) if p.isdigit() else p for p in parts], value


def _check_container(node: Any, part: str | int, prefix: list[str | int], source: str) -> None:
    """Raise unless ``node`` (found at ``prefix``) can be indexed by ``part``."""
    if isinstance(node, list):
        if not isinstance(part, int) or not -len(node) <= part < len(node):
            raise ConfigError(
                f"index {part} is out of range for the list at '{format_path(prefix)}'", file=source
            )
    elif not isinstance(node, dict):
        raise ConfigError(f"'{format_path(prefix)}' is {node!r}, not a mapping", file=source)


def apply_override(cfg: dict, text: str, origins: Origins | None = None) -> None:
    """Set one ``key.path=VALUE`` override in ``cfg`` in place (missing dicts are created)."""
    parts, value = parse_override(text)
    source = f"--set {text}"
    node: Any = cfg
    for depth, part in enumerate(parts[:-1]):
        _check_container(node, part, parts[:depth], source)
        if isinstance(node, dict) and (part not in node or node[part] is None):
            if isinstance(parts[depth + 1], int):
                raise ConfigError(f"'{format_path(parts[: depth + 1])}' is not a list", file=source)
            node[part] = {}
            if origins is not None:
                origins[tuple(parts[: depth + 1])] = source
        node = node[part]
    _check_container(node, parts[-1], parts[:-1], source)
    node[parts[-1]] = value
    if origins is not None:
        _forget(origins, tuple(parts))
        _record(value, tuple(parts), source, origins)


# -------------------------------------------------------------------------- validation
def _slot_of(path: Path_) -> str | None:
    for part in reversed(path):
        if isinstance(part, str):
            return part
    return None


def _registries_for_slot(slot: str | None, registries: Sequence[Registry]) -> list[Registry]:
    if slot is None:
        return []
    return [r for r in registries if any(fnmatch.fnmatchcase(slot, pat) for pat in r.slots)]


def _error(reason: str, origins: Origins, path: Path_, default_file: str | None) -> ConfigError:
    return ConfigError(reason, file=origin_of(origins, path, default_file), key=format_path(path))


def _check_spec(
    node: dict, path: Path_, registries: Sequence[Registry], origins: Origins, root: str | None
) -> None:
    type_path = (*path, "type")
    name = node["type"]
    if not isinstance(name, str):
        raise _error(f"'type' must be a registered name (a string), got {name!r}", origins, type_path, root)
    slot = _slot_of(path)
    expected = _registries_for_slot(slot, registries)
    owners = [r for r in registries if name in r]
    if expected:
        wanted = expected[0]
        if not any(name in r for r in expected):
            if owners:
                roles = " and ".join(f"a {r.name}" for r in owners)
                raise _error(
                    f"'{name}' is {roles}, but '{slot}' expects a {wanted.name}; "
                    f"{wanted.name}s: {', '.join(wanted.names())}",
                    origins,
                    type_path,
                    root,
                )
            raise _error(wanted.unknown_message(name), origins, type_path, root)
        registry = next(r for r in expected if name in r)
    elif len(owners) == 1:
        registry = owners[0]
    elif len(owners) > 1:
        roles = ", ".join(r.name for r in owners)
        raise _error(
            f"'{name}' is registered in several roles ({roles}); put it under a key that names "
            "its role (e.g. backbone:, neck:)",
            origins,
            type_path,
            root,
        )
    else:
        every = sorted({n for r in registries for n in r.names()})
        close = difflib.get_close_matches(name, every, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise _error(
            f"unknown type '{name}': not registered in any role.{hint} If it comes from a plugin, "
            "list its module under `imports:` or install its package.",
            origins,
            type_path,
            root,
        )
    entry = registry.entry(name)
    kwargs = {k: v for k, v in node.items() if k != "type"}
    for arg, message in check_arguments(entry, kwargs, injected_ok=True):
        at = (*path, arg) if arg in kwargs else path
        raise _error(f"{registry.name} '{entry.name}': {message}", origins, at, root)


def unknown_key_message(key: Any, allowed: Iterable[str], label: str = "key") -> str:
    """``unknown <label>; did you mean <close matches>? known keys: ...`` (the one wording of
    every unknown-key error of a config section)."""
    allowed = sorted(allowed)
    close = difflib.get_close_matches(str(key), allowed, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return f"unknown {label}; {hint}known keys: {', '.join(allowed)}"


def validate(
    cfg: Mapping,
    registries: Sequence[Registry],
    *,
    origins: Origins | None = None,
    top_level_keys: Iterable[str] | None = None,
    root: str | None = None,
) -> None:
    """Check every ``{type: ...}`` spec in ``cfg`` (and the top-level keys, if given).

    With no ``registries``, specs are not checked (the loader then only merges).

    Raises:
        ConfigError: naming the file, the dotted key path and close matches.
    """
    origins = origins or {}
    if top_level_keys is not None:
        allowed = sorted(set(top_level_keys) | {IMPORTS_KEY})
        for key in cfg:
            if key not in allowed:
                raise _error(
                    unknown_key_message(key, allowed, f"top-level key '{key}'"), origins, (key,), root
                )

    def walk(node: Any, path: Path_) -> None:
        if isinstance(node, dict):
            if "type" in node and registries:
                _check_spec(node, path, registries, origins, root)
            for key, value in node.items():
                walk(value, (*path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*path, index))

    walk(cfg, ())


# ------------------------------------------------------------------------------ loading
def load_config(
    path: str | os.PathLike,
    overrides: Sequence[str] = (),
    *,
    registries: Sequence[Registry] = (),
    top_level_keys: Iterable[str] | None = None,
    importer: Callable[..., None] = import_modules,
    base_roots: Sequence[str | os.PathLike] = (),
    migrate: Callable[[dict], None] | None = None,
    check: Callable[[dict], None] | None = None,
) -> dict:
    """Load a config file: bases, ``imports:``, overrides, then validation.

    Args:
        path: the YAML file.
        overrides: ``"key.path=VALUE"`` strings applied after merging, in order.
        registries: the registries ``{type: ...}`` specs are checked against.
        top_level_keys: if given, the only top-level keys allowed.
        importer: called as ``importer(modules, source=file)`` for ``imports:``.
        base_roots: folders where a ``_base_`` not found next to its file is looked for.
        migrate: called with the merged config (overrides applied) before validation, to
            rewrite keys of an older layout in place.
        check: called with the validated config; raises ``ConfigError`` with a ``key`` (the
            file that set that key is added here).

    Returns:
        The resolved config as plain dicts, lists and scalars (no ``_base_``/``_delete_``);
        ``imports`` is kept if non-empty, so that the dump reloads on its own.

    Raises:
        ConfigError: bad YAML, missing files, cycles, bad overrides, unknown names or keys.
        PluginError: an ``imports:`` module that cannot be imported.
    """
    path = Path(path)
    cfg, origins, imports = _load_tree(path, (), [Path(r) for r in base_roots])
    for text in overrides:
        apply_override(cfg, text, origins)
    if IMPORTS_KEY in cfg:  # set by an override
        imports += [m for m in _as_imports(cfg.pop(IMPORTS_KEY), "--set") if m not in imports]
    if imports:
        importer(imports, source=str(path))
        cfg = {IMPORTS_KEY: imports, **cfg}
    for hook in (migrate, "validate", check):
        try:
            if hook == "validate":
                validate(cfg, registries, origins=origins, top_level_keys=top_level_keys, root=str(path))
            elif hook is not None:
                hook(cfg)
        except ConfigError as exc:
            if exc.file is not None:
                raise
            where = _key_path(exc.key) if exc.key else ()
            raise ConfigError(exc.reason, file=origin_of(origins, where, str(path)), key=exc.key) from None
        except RegistryError as exc:  # e.g. a malformed name raised by a registry
            raise ConfigError(str(exc), file=str(path)) from exc
    return cfg


def _key_path(key: str) -> Path_:
    """``"model.losses[0].type"`` -> ``("model", "losses", 0, "type")``."""
    parts: list[Any] = []
    for part in key.split("."):
        name, *indices = part.replace("]", "").split("[")
        parts.append(name)
        parts += [int(i) for i in indices if i.isdigit()]
    return tuple(parts)
