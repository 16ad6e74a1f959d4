"""``mrcnn-tf train``, ``evaluate`` and ``demo`` as a user runs them, kill -9 included."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from training_fixtures import CONFIG, TINY

from mrcnn_tf.cli import main

CLI = shutil.which("mrcnn-tf") or str(Path(sys.executable).parent / "mrcnn-tf")


def _train_argv(workdir, *extra):
    return ["train", CONFIG, "--workdir", str(workdir), "--set", *TINY, "data.val=null", *extra]


@pytest.mark.slow
def test_kill_9_then_the_same_command_resumes_from_the_last_checkpoint(tmp_path):
    workdir = tmp_path / "run"
    argv = _train_argv(workdir, "train.max_steps=60", "train.steps_per_loop=2")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([CLI, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    checkpoints = workdir / "checkpoints"
    while time.time() < deadline and not list(checkpoints.glob("ckpt-*.weights.h5")):
        assert proc.poll() is None, "training ended before its first checkpoint"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = sorted(int(p.name.split("-")[1].split(".")[0]) for p in checkpoints.glob("ckpt-*.weights.h5"))
    assert saved and saved[-1] < 60 and not (workdir / "model.weights.h5").exists()
    result = subprocess.run([CLI, *argv], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"(step {saved[-1]} of 60)" in result.stdout
    assert "finished at step 60" in result.stdout
    # and once finished, the same command refuses to touch the run
    again = subprocess.run([CLI, *argv], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr


@pytest.mark.slow
def test_train_then_evaluate_writes_coco_metrics(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert main(_train_argv(workdir)[:-1]) == 0  # keep data.val for evaluation
    out = capsys.readouterr().out
    assert "finished at step 4" in out and "segm: AP" in out
    evaluation = tmp_path / "eval"
    argv = ["evaluate", CONFIG, "--weights", str(workdir), "--out", str(evaluation), "--set", *TINY]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in out
    metrics = json.loads((evaluation / "metrics.json").read_text())
    # the same weights give the same numbers as the evaluation at the end of training
    at_end = json.loads((workdir / "eval" / "step_4" / "metrics.json").read_text())
    assert metrics["segm"] == pytest.approx(at_end["segm"]) and metrics["bbox"] == pytest.approx(
        at_end["bbox"]
    )
    assert isinstance(json.loads((evaluation / "detections.json").read_text()), list)
    assert main(argv) == 2  # metrics are not overwritten without --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_evaluate_with_missing_weights_is_a_clear_error(tmp_path, capsys):
    argv = [
        "evaluate",
        CONFIG,
        "--weights",
        str(tmp_path / "nothing"),
        "--out",
        str(tmp_path / "e"),
        "--set",
        *TINY,
    ]
    assert main(argv) == 2
    assert "weights file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_end_to_end_at_a_tiny_size(tmp_path, capsys):
    workdir = tmp_path / "demo"
    argv = ["demo", "--workdir", str(workdir), "--steps", "2", "--quiet", "--set", *TINY]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "mrcnn-tf demo finished" in out and "segm: AP" in out
    pictures = sorted((workdir / "predictions").glob("*.png"))
    assert len(pictures) == 2
    assert (workdir / "export" / "1" / "saved_model.pb").is_file() and "SavedModel:" in out
    assert (workdir / "synthetic" / "annotations" / "instances_train.json").is_file()
    metrics = json.loads((workdir / "demo_metrics.json").read_text())
    assert 0.0 <= metrics["segm"]["AP50"] <= 1.0
    # a second demo reuses the finished run instead of retraining (or refusing)
    assert main(argv) == 0
    assert "reusing it" in capsys.readouterr().out


@pytest.mark.slow
def test_export_writes_a_numbered_version_and_never_overwrites(tmp_path, capsys):
    import tensorflow as tf

    workdir = tmp_path / "run"
    assert main([*_train_argv(workdir, "train.max_steps=2")]) == 0
    base = tmp_path / "models" / "mrcnn"
    argv = ["export", CONFIG, "--weights", str(workdir), "--out", str(base), "--set", *TINY]
    assert main(argv) == 0 and main(argv) == 0  # versions 1 and 2
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]
    labels = json.loads((base / "1" / "assets" / "label_map.json").read_text())
    assert [c["name"] for c in labels["categories"]] == ["circle", "square", "triangle"]
    assert "docker run" in capsys.readouterr().out
    assert main([*argv, "--version", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    loaded = tf.saved_model.load(str(base / "1"))
    assert set(loaded.signatures) == {"serving_default", "serving_bytes"}
