"""The README's promises: the layout, a two-command quick start, and CI running its test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def test_layout_our_users_asked_for():
    for name in ("mrcnn_tf", "registry", "configs", "examples", "tests"):
        assert (ROOT / name).is_dir(), name
    for name in ("setup.cfg", "pyproject.toml", "README.md", "CHANGELOG.md"):
        assert (ROOT / name).is_file(), name


def test_quick_start_is_two_commands_and_ci_runs_the_test_one():
    commands = _quick_start_commands()
    assert commands == ["python3 dev.py demo", "python3 dev.py test"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in ci.splitlines()


def test_registry_section_names_every_role_and_every_built_in_component():
    from mrcnn_tf.registries import ALL, load_builtins

    load_builtins()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Registry and plugins", 1)[1].split("\n## ", 1)[0]
    missing = [
        f"{role}: {name}"
        for role, registry in ALL.items()
        for name in [role, *registry.names()]
        if (name == role or registry.entry(name).cls.__module__.startswith("mrcnn_tf."))  # not test plugins
        and f"`{name}`" not in section
    ]
    assert not missing, f"README's registry table lacks {missing}"
