"""A typed, name-to-class registry for plugin components.

One :class:`Registry` per role (backbone, neck, mask head, ...): a class registered as a
backbone cannot be picked where a mask head is expected, and the mistake is reported when
the config is loaded, not deep inside a graph. This module imports no TensorFlow; framework
specific behaviour (such as making Keras layers serializable) comes in through the
``on_register`` hook.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from registry.errors import ConfigError, RegistryError
from registry.plugins import load_entry_points

T = TypeVar("T", bound=type)

#: Called as ``hook(cls, name, registry)`` after each registration; may return a new class.
RegisterHook = Callable[[type, str, "Registry"], "type | None"]


@dataclass(frozen=True)
class Entry:
    """One registered class.

    Attributes:
        name: the canonical name used in configs (``type: name``).
        cls: the registered class.
        aliases: other names that resolve to the same class.
        injected: constructor arguments the parent component supplies at build time
            (e.g. ``num_classes`` for a box head); configs need not give them.
    """

    name: str
    cls: type
    aliases: tuple[str, ...] = ()
    injected: tuple[str, ...] = ()
    description: str = field(default="", compare=False)


def _first_doc_line(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    for line in doc.splitlines():
        if line.strip():
            return line.strip()
    return ""


class Registry:
    """Maps names to classes for one role.

    Args:
        name: the role, singular, e.g. ``"backbone"``; used in error messages.
        base: if given, every registered class must subclass it (e.g. ``keras.layers.Layer``);
            a ``"module:Class"`` string is imported at the first registration, so that a
            registry module need not import the framework the base class lives in.
        required: methods a registered class must override (the role's contract, e.g.
            ``("output_specs",)``); checked at registration.
        slots: config keys whose ``{type: ...}`` value must come from this registry; shell
            patterns are allowed (``"*_loss"``). Used by config validation.
        plugin_group: entry-point group loaded (once) when a name is missing.
        on_register: hook run after each registration (see :data:`RegisterHook`).

    Example::

        BACKBONES = Registry("backbone", slots=("backbone",))

        @BACKBONES.register(aliases=("resnet",))
        class ResNet(keras.layers.Layer):
            ...

        backbone = BACKBONES.build({"type": "ResNet", "depth": 50})
    """

    def __init__(
        self,
        name: str,
        *,
        base: type | tuple[type, ...] | str | None = None,
        required: tuple[str, ...] = (),
        slots: tuple[str, ...] = (),
        plugin_group: str | None = None,
        on_register: RegisterHook | None = None,
    ) -> None:
        self.name = name
        self._base = base
        self.required = tuple(required)
        self.slots = tuple(slots)
        self.plugin_group = plugin_group
        self.on_register = on_register
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}

    @property
    def base(self) -> type | tuple[type, ...] | None:
        """The base class(es) registered classes must subclass (imported on first use)."""
        if isinstance(self._base, str):
            module, _, attr = self._base.partition(":")
            self._base = getattr(importlib.import_module(module), attr)
        return self._base

    def contract_problem(self, cls: type) -> str | None:
        """Why ``cls`` cannot be registered here (None when it meets the role's contract)."""
        base = self.base
        if base is None:
            return None
        bases = base if isinstance(base, tuple) else (base,)
        if not issubclass(cls, bases):
            wanted = " or ".join(f"{b.__module__}.{b.__qualname__}" for b in bases)
            return f"must subclass {wanted}"
        lacking = [
            m for m in self.required if all(getattr(cls, m, None) is getattr(b, m, None) for b in bases)
        ]
        if lacking:
            return "must implement " + ", ".join(f"{m}()" for m in lacking) + " (see the base class)"
        return None

    # ----------------------------------------------------------------------- registration
    def register(
        self,
        name: str | None = None,
        *,
        aliases: tuple[str, ...] | list[str] = (),
        injected: tuple[str, ...] | list[str] = (),
    ) -> Callable[[T], T]:
        """Class decorator that registers the class under ``name`` (default: its ``__name__``).

        Raises:
            RegistryError: if the name or an alias is already taken in this registry.
            TypeError: if the class does not subclass the registry's ``base``.
        """

        def decorator(cls: T) -> T:
            if not isinstance(cls, type):
                raise TypeError(f"{self.name} registry: register() decorates classes, got {cls!r}")
            problem = self.contract_problem(cls)
            if problem is not None:
                raise TypeError(
                    f"{self.name} registry: {cls.__qualname__} does not meet the {self.name} "
                    f"contract: it {problem} to be registered as a {self.name}"
                )
            key = name or cls.__name__
            for candidate in (key, *aliases):
                self._check_free(candidate, cls)
            result = cls
            if self.on_register is not None:
                result = self.on_register(cls, key, self) or cls
            entry = Entry(
                name=key,
                cls=result,
                aliases=tuple(aliases),
                injected=tuple(injected),
                description=_first_doc_line(result),
            )
            self._entries[key] = entry
            for alias in aliases:
                self._aliases[alias] = key
            return result

        return decorator

    def _check_free(self, name: str, cls: type) -> None:
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.name} registry: names must be non-empty strings, got {name!r}")
        owner = self._entries.get(name) or self._entries.get(self._aliases.get(name, ""))
        if owner is not None:
            raise RegistryError(
                f"{self.name} registry: the name '{name}' is already registered "
                f"(by {owner.cls.__module__}.{owner.cls.__qualname__}); cannot register "
                f"{cls.__module__}.{cls.__qualname__} under the same name. Pick another name "
                "or pass name='...' to register()."
            )

    def unregister(self, name: str) -> None:
        """Remove a name and its aliases (for tests and interactive sessions)."""
        entry = self.entry(name)
        self._entries.pop(entry.name)
        for alias in entry.aliases:
            self._aliases.pop(alias, None)

    # --------------------------------------------------------------------------- look-up
    def _lookup(self, name: str) -> Entry | None:
        key = self._aliases.get(name, name)
        return self._entries.get(key)

    def entry(self, name: str) -> Entry:
        """The :class:`Entry` for ``name`` or an alias; unknown names raise a helpful error."""
        if not isinstance(name, str):
            raise RegistryError(f"{self.name} registry: a type name must be a string, got {name!r}")
        found = self._lookup(name)
        if found is None and self.plugin_group:
            load_entry_points(self.plugin_group)
            found = self._lookup(name)
        if found is None:
            raise RegistryError(self.unknown_message(name))
        return found

    def get(self, name: str) -> type:
        """The class registered under ``name`` (or an alias)."""
        return self.entry(name).cls

    def close_matches(self, name: str, n: int = 3) -> list[str]:
        """Registered names (and aliases) that look like ``name``, best first."""
        canonical = {key: key for key in self._entries}
        canonical.update(self._aliases)  # alias -> canonical name
        lowered = {}
        for candidate, target in canonical.items():
            lowered.setdefault(candidate.lower(), target)
        hits = difflib.get_close_matches(str(name).lower(), list(lowered), n=n * 2, cutoff=0.6)
        return list(dict.fromkeys(lowered[h] for h in hits))[:n]

    def unknown_message(self, name: str) -> str:
        """The error text for an unknown name: registry, close matches, plugin hint."""
        parts = [f"unknown {self.name} '{name}' (registry '{self.name}')."]
        matches = self.close_matches(name)
        if matches:
            parts.append("Did you mean " + " or ".join(matches) + "?")
        names = self.names()
        parts.append("Registered: " + (", ".join(names) if names else "(none)") + ".")
        parts.append(
            "If it comes from a plugin, import its module first: list it under `imports:` in "
            "the config, or install a package that declares it in the "
            f"'{self.plugin_group or 'mrcnn_tf.plugins'}' entry-point group."
        )
        if self.plugin_group:
            failures = load_entry_points(self.plugin_group)
            for message in failures.values():
                parts.append(f"Note: {message}.")
        return " ".join(parts)

    def names(self) -> list[str]:
        """Canonical registered names, sorted (plugins from entry points included)."""
        if self.plugin_group:
            load_entry_points(self.plugin_group)
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        """All entries, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if self._lookup(name) is not None:
            return True
        if self.plugin_group:
            load_entry_points(self.plugin_group)
        return self._lookup(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {len(self)} entries)"

    # ---------------------------------------------------------------------------- build
    def build(self, spec: Any, **defaults: Any) -> Any:
        """Instantiate a component from a spec.

        Args:
            spec: ``{"type": Name, **kwargs}``, a bare name string, or an already built
                instance of a registered class (returned as is).
            **defaults: arguments the caller supplies (e.g. ``num_classes``); keys given in
                ``spec`` take precedence.

        Raises:
            RegistryError: unknown type.
            ConfigError: a spec without ``type``, or arguments the constructor rejects.
        """
        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, Mapping):
            if any(isinstance(spec, e.cls) for e in self._entries.values()):
                return spec
            raise ConfigError(
                f"a {self.name} must be given as {{type: Name, ...}}, got {type(spec).__name__}"
            )
        if "type" not in spec:
            raise ConfigError(
                f"a {self.name} spec needs a 'type' key naming one of: {', '.join(self.names())}"
            )
        kwargs = dict(spec)
        entry = self.entry(kwargs.pop("type"))
        merged = {**defaults, **kwargs}
        problems = check_arguments(entry, merged, injected_ok=False)
        if problems:
            raise ConfigError(f"{self.name} '{entry.name}': " + "; ".join(m for _, m in problems))
        try:
            return entry.cls(**merged)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{self.name} '{entry.name}': {exc}") from exc


# ----------------------------------------------------------------------- argument checks
def constructor_parameters(cls: type) -> tuple[dict[str, inspect.Parameter], bool]:
    """The keyword arguments ``cls(...)`` accepts, following ``**kwargs`` up the MRO.

    A class whose ``__init__`` ends in ``**kwargs`` usually forwards them to its base class
    (Keras layers forward ``name``, ``dtype``, ``trainable``), so the accepted names are the
    union of the named parameters along the MRO until a class without ``**kwargs``.

    Returns:
        (parameters by name, open) where ``open`` is True when the chain ends in a bare
        ``**kwargs`` that accepts anything (only classes that opt in with
        ``accepts_any_kwargs = True`` are treated as open).
    """
    params: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            break
        try:
            signature = inspect.signature(init)
        except (TypeError, ValueError):
            break
        has_var_kw = False
        for index, param in enumerate(signature.parameters.values()):
            if index == 0 and param.name == "self":
                continue
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                has_var_kw = True
            elif param.kind is not inspect.Parameter.VAR_POSITIONAL:
                params.setdefault(param.name, param)
        if not has_var_kw:
            break
    return params, bool(getattr(cls, "accepts_any_kwargs", False))


def check_arguments(entry: Entry, kwargs: Mapping[str, Any], *, injected_ok: bool) -> list[tuple[str, str]]:
    """Problems with calling ``entry.cls(**kwargs)``: unknown and missing arguments.

    Args:
        entry: the registered class.
        kwargs: the arguments a config gives.
        injected_ok: when True, arguments listed in ``entry.injected`` may be missing
            (the parent supplies them at build time).

    Returns:
        ``(argument name, message)`` pairs, empty when the call would be accepted.
    """
    params, open_kwargs = constructor_parameters(entry.cls)
    own = inspect.signature(entry.cls.__init__).parameters
    problems = []
    if not open_kwargs:
        for key in kwargs:
            if key not in params:
                close = difflib.get_close_matches(str(key), list(params), n=3, cutoff=0.6)
                hint = f" (did you mean {' or '.join(close)}?)" if close else ""
                accepted = ", ".join(sorted(p for p in params if not p.startswith("_")))
                problems.append((key, f"unknown argument '{key}'{hint}; accepted: {accepted}"))
    for pname, param in own.items():
        if pname == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        if param.default is inspect.Parameter.empty and pname not in kwargs:
            if injected_ok and pname in entry.injected:
                continue
            problems.append((pname, f"missing required argument '{pname}'"))
    return problems
