"""Every script in ``benchmarks/`` runs end to end at a tiny size (a benchmark no test runs rots).

The numbers are not checked (no timed tests); what is checked is that each script finishes,
prints its table, and writes what it says it writes. ``benchmarks/peers/*`` run inside the
peers' own virtual environments (TF Model Garden, torchvision) that ``model_speed.py --peers``
creates; they are not run here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
RUN = ROOT / "tests" / "fixtures" / "round_one_run"
#: A tiny R18-FPN: every script accepts these as overrides.
TINY = [
    "model.backbone.width=8",
    "model.neck.num_channels=16",
    "model.box_head.fc_dim=32",
    "model.mask_head.conv_dim=8",
]

pytestmark = pytest.mark.slow


def run(script: str, *args: str, timeout: int = 600) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert out.returncode == 0, f"{script} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert "Traceback" not in out.stderr
    return out.stdout


def test_every_benchmark_script_is_covered_here():
    scripts = sorted(p.name for p in BENCH.glob("*.py"))
    covered = {
        "model_speed.py",
        "profile_inference.py",
        "model_zoo.py",
        "data_pipeline.py",
        "bf16_accuracy.py",
        "converted_vs_torchvision.py",
        "litert_export.py",
        "distributed_eval.py",
    }
    assert set(scripts) == covered, f"add a tiny run of {set(scripts) - covered} to this file"


def test_model_speed_runs_inference_training_and_export_cases(tmp_path):
    sets = [a for s in TINY for a in ("--set", s)]
    record = tmp_path / "speed.json"
    out = run(
        "model_speed.py",
        "--config",
        "mask_rcnn_r18_fpn_synthetic",
        "--cases",
        "keras_64",
        "train_64_b1",
        "export_64",
        "--repeat",
        "1",
        "--json",
        str(record),
        *sets,
    )
    assert "keras_64" in out and "train_64_b1" in out and "export_64" in out
    results = json.loads(record.read_text())["results"]
    assert [r["case"] for r in results] == ["keras_64", "train_64_b1", "export_64"]
    for r in results:
        assert 0 < r["min_s"] <= r["median_s"] <= r["max_s"] and r["peak_rss_mb"] > 100
    assert results[0]["num_detections"] == results[2]["num_detections"] == 100  # threshold 0: every slot
    assert results[1]["images"] == [1, 64, 64, 3]  # train_<size>_b<batch>
    # --gpu's variants, here on CPU: XLA (static shapes, gather RoIAlign) and mixed precision, on
    # inference only (an XLA training step is compiled by the trainer's own XLA test)
    record = tmp_path / "xla.json"
    args = ["--config", "mask_rcnn_r18_fpn_synthetic", "--repeat", "1", "--xla", "--precision", "bfloat16"]
    run("model_speed.py", *args, "--cases", "keras_64", "--json", str(record), *sets)
    results = json.loads(record.read_text())["results"]
    assert [(r["precision"], r["xla"], r["num_detections"]) for r in results] == [("bfloat16", True, 100)]


def test_profile_inference_times_every_stage():
    sets = [a for s in TINY for a in ("--set", s)]
    out = run(
        "profile_inference.py",
        "--config",
        "mask_rcnn_r18_fpn_synthetic",
        "--size",
        "64",
        "--repeat",
        "1",
        *sets,
    )
    for stage in ("backbone", "FPN", "RPN head", "decode + per-class NMS", "mask head", "whole model call"):
        assert stage in out, out


def test_model_zoo_prints_a_row_per_config(tmp_path):
    record = tmp_path / "zoo.json"
    out = run(
        "model_zoo.py",
        "--configs",
        "mask_rcnn_r18_fpn_synthetic",
        "--size",
        "64",
        "--repeat",
        "1",
        "--json",
        str(record),
    )
    assert "| `mask_rcnn_r18_fpn_synthetic` | ResNet-18 |" in out
    assert json.loads(record.read_text())[0]["params_m"] > 1.0


def test_data_pipeline_measures_every_case(tmp_path):
    out = run(
        "data_pipeline.py",
        "--image-size=64",
        "--instances=2",
        "--num-images=4",
        "--batch=2",
        "--batches=1",
        "--warmup=0",
        "--train-config=mask_rcnn_r18_fpn_synthetic",
        f"--root={tmp_path}",
    )
    for case in ("coco", "tfrecord", "train"):
        assert f"{case}:" in out and "images/s" in out, out


def test_distributed_eval_times_every_mode_and_checks_they_agree(tmp_path):
    """One device, two mirrored logical CPUs and two localhost workers on 4 images; the script
    itself fails when a mode's detections or AP differ from one device's."""
    record = tmp_path / "eval.json"
    sets = [a for s in TINY for a in ("--set", s)]
    out = run("distributed_eval.py", "--images=4", f"--json={record}", *sets)
    records = json.loads(record.read_text())
    assert [r["mode"] for r in records] == ["single", "mirrored", "multi_worker"]
    assert [r["replicas"] for r in records] == [1, 2, 2]
    assert all(r["num_images"] == 4 and r["num_detections"] == records[0]["num_detections"] for r in records)
    assert records[0]["num_detections"] > 0  # score threshold 0: every slot is a result
    assert "multi_worker" in out and "box AP" in out


def test_bf16_accuracy_evaluates_a_run_directory_twice():
    out = run(
        "bf16_accuracy.py",
        "--config",
        str(RUN / "config.yaml"),
        "--weights",
        str(RUN),
        "--set",
        "data.val.num_images=2",
    )
    assert "| bbox float32 |" in out and "| segm bfloat16 − float32 |" in out


@pytest.mark.torch
def test_converted_vs_torchvision_times_both_on_the_same_weights(tmp_path):
    """Runs in ``python3 dev.py test-torch`` (it needs the torch environment)."""
    torch_python = os.environ.get("MRCNN_TF_TORCH_PYTHON", str(ROOT / ".venv-torch" / "bin" / "python"))
    out = run(
        "converted_vs_torchvision.py",
        "--min-size", "160", "--max-size", "224", "--repeat", "1",
        "--torch-python", torch_python, "--json", str(tmp_path / "records.json"),
    )  # fmt: skip
    records = json.loads((tmp_path / "records.json").read_text())
    assert [r["case"] for r in records] == ["torchvision", "mrcnn_tf"]
    assert records[0]["num_detections"] == records[1]["num_detections"]  # the same model
    assert "ratio (ours / torchvision)" in out


def test_litert_export_scores_the_saved_model_and_each_litert_model(tmp_path):
    record = tmp_path / "litert.json"
    args = ["--weights", str(RUN), "--quantize", "none", "int8", "--max-images", "2", "--repeat", "1"]
    out = run("litert_export.py", *args, "--json", str(record), "--set", "data.val.num_images=2")
    assert "| SavedModel (float32) |" in out and "| LiteRT int8 (128²) |" in out
    results = json.loads(record.read_text())["results"]
    assert set(results) == {"SavedModel (float32)", "LiteRT none (128²)", "LiteRT int8 (128²)"}
    # int8 weights: the file is smaller than the float32 one
    assert results["LiteRT int8 (128²)"]["size_mb"] < results["LiteRT none (128²)"]["size_mb"]
