"""Plugins through entry points (a simulated installed distribution) and ``imports:``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from plugin_fixtures import make_distribution

from registry import Registry, RegistryError, import_modules
from registry.plugins import load_entry_points, reset_entry_points

PLAIN_PLUGIN = """
from mrcnn_tf.registries import DATASETS

COUNT = globals().get("COUNT", 0) + 1

@DATASETS.register()
class PluginNet:
    '''A plugin dataset (a role without a Keras base class: loading it imports no TensorFlow).'''
"""


def run_python(code: str, path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env
    )


def test_entry_point_plugin_is_found_on_first_miss_and_loaded_once(tmp_path):
    make_distribution(tmp_path, PLAIN_PLUGIN)
    out = run_python(
        """
        import sys
        from mrcnn_tf.registries import DATASETS, NECKS
        assert "tiny_plugin_pkg" not in sys.modules  # nothing loaded eagerly
        cls = DATASETS.get("PluginNet")
        assert "PluginNet" in DATASETS.names()
        NECKS.names()  # another registry of the same group does not reload it
        import tiny_plugin_pkg
        print(cls.__module__, tiny_plugin_pkg.COUNT, "tensorflow" in sys.modules)
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["tiny_plugin_pkg", "1", "False"]


def test_broken_plugin_warns_and_is_named_in_unknown_name_errors(tmp_path):
    make_distribution(tmp_path, "raise RuntimeError('boom in plugin')\n", module="broken_pkg", name="broken")
    out = run_python(
        """
        import warnings
        from mrcnn_tf.registries import BACKBONES
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                BACKBONES.get("Whatever")
            except LookupError as exc:
                print("ERROR:", exc)
        print("WARN:", caught[0].message)
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert (
        "WARN: plugin entry point 'broken = broken_pkg' (group 'mrcnn_tf.plugins', from broken_pkg 0.1)"
        in out.stdout
    )
    assert "RuntimeError: boom in plugin" in out.stdout
    error_line = next(line for line in out.stdout.splitlines() if line.startswith("ERROR:"))
    assert "unknown backbone 'Whatever'" in error_line and "Note: plugin entry point 'broken" in error_line


def test_registry_without_plugin_group_does_not_load_entry_points():
    reg = Registry("thing")
    with pytest.raises(RegistryError, match="unknown thing 'x'"):
        reg.get("x")


def test_load_entry_points_is_idempotent_and_resettable(monkeypatch):
    calls = []

    class FakeEP:
        name, value, dist = "fake", "fake_mod", None

        def load(self):
            calls.append(1)

    monkeypatch.setattr(
        "importlib.metadata.entry_points", lambda group: [FakeEP()] if group == "g.test" else []
    )
    reset_entry_points("g.test")
    assert load_entry_points("g.test") == {}
    assert load_entry_points("g.test") == {}
    assert calls == [1]
    reset_entry_points("g.test")
    load_entry_points("g.test")
    assert calls == [1, 1]
    reset_entry_points("g.test")


def test_import_modules_imports_and_reports_failures(tmp_path, monkeypatch):
    (tmp_path / "good_plugin_mod.py").write_text("LOADED = True\n")
    (tmp_path / "bad_plugin_mod.py").write_text("import not_installed_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import_modules(["good_plugin_mod"], source="cfg.yaml")
    assert sys.modules["good_plugin_mod"].LOADED
    with pytest.raises(
        ImportError,
        match=r"cfg.yaml: imports\[1\]: cannot import plugin module 'bad_plugin_mod'.*not_installed",
    ):
        import_modules(["good_plugin_mod", "bad_plugin_mod"], source="cfg.yaml")
    with pytest.raises(ImportError, match="must be a module name"):
        import_modules([""], source="cfg.yaml")
