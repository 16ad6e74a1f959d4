"""Generic plugin machinery: typed registries, YAML configs, plugin loading.

This package imports no TensorFlow, so it can be used (and tested) on its own.
"""

from registry.config import (
    apply_override,
    dump_config,
    load_config,
    merge,
    parse_override,
    read_yaml,
    validate,
)
from registry.core import Entry, Registry, check_arguments, constructor_parameters
from registry.errors import ConfigError, PluginError, RegistryError, UserError
from registry.plugins import import_modules, load_entry_points

__all__ = [
    "ConfigError",
    "Entry",
    "PluginError",
    "Registry",
    "RegistryError",
    "UserError",
    "apply_override",
    "check_arguments",
    "constructor_parameters",
    "dump_config",
    "import_modules",
    "load_config",
    "load_entry_points",
    "merge",
    "parse_override",
    "read_yaml",
    "validate",
]
