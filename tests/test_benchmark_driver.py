"""The benchmark driver's logic that needs no model: the largest-batch search of ``--gpu``."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest


def _driver():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "model_speed.py"
    spec = importlib.util.spec_from_file_location("model_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_child(module, fits: int, tried: list[int], fails_otherwise: bool = False):
    def child(args, *extra):
        batch = int(extra[0].rsplit("_b", 1)[1])
        tried.append(batch)
        if batch > fits:
            raise module.CaseFailed("OOM" if not fails_otherwise else "bad config", not fails_otherwise)
        return {"median_s": 0.5 * batch, "images": [batch, 64, 64, 3]}

    return child


def test_largest_batch_doubles_until_out_of_memory(monkeypatch):
    module = _driver()
    tried: list[int] = []
    monkeypatch.setattr(module, "_child", _fake_child(module, fits=12, tried=tried))
    result = module.largest_batch(argparse.Namespace(max_batch=64), 64)
    assert tried == [2, 4, 8, 16]
    assert result["case"] == "train_max_64" and result["batch"] == 8
    assert result["images_per_s"] == pytest.approx(8 / 4.0)


def test_largest_batch_stops_at_the_cap_and_reraises_other_failures(monkeypatch):
    module = _driver()
    tried: list[int] = []
    monkeypatch.setattr(module, "_child", _fake_child(module, fits=1000, tried=tried))
    assert module.largest_batch(argparse.Namespace(max_batch=10), 64)["batch"] == 8
    assert tried == [2, 4, 8]
    monkeypatch.setattr(module, "_child", _fake_child(module, fits=4, tried=[], fails_otherwise=True))
    with pytest.raises(module.CaseFailed, match="bad config"):
        module.largest_batch(argparse.Namespace(max_batch=64), 64)
    monkeypatch.setattr(module, "_child", _fake_child(module, fits=1, tried=[]))
    with pytest.raises(SystemExit, match="does not fit with batch 2"):
        module.largest_batch(argparse.Namespace(max_batch=64), 64)


def test_a_peer_that_cannot_be_installed_is_skipped_or_stops_the_run(monkeypatch, tmp_path, capsys):
    import subprocess

    module = _driver()
    monkeypatch.setenv("MRCNN_TF_CACHE", str(tmp_path))
    commands = []

    def offline(command, *args, **kwargs):
        commands.append(command)
        if "venv" in command:  # make the venv's python, as `python -m venv` would
            python = Path(command[-1]) / "bin" / "python"
            python.parent.mkdir(parents=True)
            python.write_text("")
        return subprocess.CompletedProcess(command, 0 if "venv" in command else 1)

    monkeypatch.setattr(module.subprocess, "run", offline)
    assert module._peer_python("tv", None) is None  # torchvision is optional
    assert "torchvision: skipped" in capsys.readouterr().out
    assert commands[-1][-2:] == ["torch", "torchvision"]
    assert not (tmp_path / "peer-venvs" / "torchvision" / "bin" / "python").exists()  # retried next run
    with pytest.raises(SystemExit, match=r"tf-models-official.*--model-garden-python"):
        module._peer_python("mg", None)
    assert module._peer_python("mg", "/opt/mg/bin/python") == Path("/opt/mg/bin/python")
