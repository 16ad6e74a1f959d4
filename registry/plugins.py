"""Loading third-party plugins: modules named in a config's ``imports:`` and entry points.

A plugin is any importable module whose import registers classes in the registries
(typically with ``@BACKBONES.register()``). Two ways to bring one in, without forking:

* an entry point in the ``mrcnn_tf.plugins`` group of an installed distribution::

      [project.entry-points."mrcnn_tf.plugins"]
      my_backbones = "my_pkg.backbones"

  Entry points are loaded once per process, the first time a registry is asked for a
  name it does not know (or for its list of names).
* an ``imports: [my_pkg.backbones]`` list in a YAML config, imported before the config is
  checked.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
import warnings

from registry.errors import PluginError

_lock = threading.Lock()
_loaded_groups: dict[str, dict[str, str]] = {}


def import_modules(modules: list[str] | tuple[str, ...], *, source: str = "imports") -> None:
    """Import each module by dotted name; a failure raises :class:`PluginError` naming it.

    Args:
        modules: dotted module names, e.g. ``["my_pkg.backbones"]``.
        source: where the list came from, for the error message (e.g. a config file).
    """
    for index, module in enumerate(modules):
        if not isinstance(module, str) or not module.strip():
            raise PluginError(f"{source}: imports[{index}] must be a module name, got {module!r}")
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise PluginError(
                f"{source}: imports[{index}]: cannot import plugin module '{module}': "
                f"{type(exc).__name__}: {exc}. Check that the package is installed in this "
                "environment (pip install ...) and that the module name is spelled right."
            ) from exc


def load_entry_points(group: str) -> dict[str, str]:
    """Import every entry point of ``group`` once per process.

    A plugin that fails to import does not break the others: it is reported with a warning
    that names the entry point and its distribution, and remembered so that an "unknown
    name" error can mention it.

    Returns:
        ``{entry point name: error message}`` for the plugins that failed (empty if none).
    """
    with _lock:
        if group in _loaded_groups:
            return _loaded_groups[group]
        failures: dict[str, str] = {}
        _loaded_groups[group] = failures
        for ep in importlib.metadata.entry_points(group=group):
            dist = getattr(ep, "dist", None)
            origin = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
            try:
                ep.load()
            except Exception as exc:  # noqa: BLE001 - plugin code may raise anything
                message = (
                    f"plugin entry point '{ep.name} = {ep.value}' (group '{group}', from "
                    f"{origin}) failed to import: {type(exc).__name__}: {exc}"
                )
                failures[ep.name] = message
                warnings.warn(message, RuntimeWarning, stacklevel=2)
        return failures


def reset_entry_points(group: str | None = None) -> None:
    """Forget which entry-point groups were loaded (for tests that install a plugin)."""
    with _lock:
        if group is None:
            _loaded_groups.clear()
        else:
            _loaded_groups.pop(group, None)
