"""Error types raised for mistakes a user can make (bad names, bad configs, bad plugins).

Every error here derives from :class:`UserError`; the CLI turns a ``UserError`` into one
clear message and exit status 2, without a traceback (``--debug`` shows it).
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by user input (a config, a name, a path) rather than by a bug."""


class RegistryError(UserError, LookupError):
    """A name is unknown, registered twice, or registered in the wrong role."""


class PluginError(UserError, ImportError):
    """A plugin module named in ``imports:`` or by an entry point could not be imported."""


class ConfigError(UserError, ValueError):
    """A config file or override is invalid.

    Attributes:
        file: the file the offending key came from (or ``"--set ..."`` for an override).
        key: the dotted key path, e.g. ``model.backbone.type``; ``None`` for file-level errors.
        reason: the message without the location prefix.
    """

    def __init__(self, reason: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        self.reason = reason
        where = []
        if file:
            where.append(str(file))
        if key:
            where.append(f"key '{key}'")
        super().__init__(f"{': '.join(where)}: {reason}" if where else reason)
