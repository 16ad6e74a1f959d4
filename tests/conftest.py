"""Shared test set-up: quiet TensorFlow, and helpers to write config trees."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(autouse=True, scope="session")
def _cache_in_tmp(tmp_path_factory):
    """Generated datasets go to a temporary cache, never to the user's ~/.cache."""
    os.environ["MRCNN_TF_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def write(tmp_path: Path):
    """``write("a/b.yaml", text)`` writes a dedented file under tmp_path and returns its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write
