"""The examples run as documented (at a tiny size)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mrcnn_tf.config import load_config
from mrcnn_tf.registries import BACKBONES, NECKS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_plugin_example_config_selects_the_plugin_backbone_and_runs(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES / "plugin_package"))
    cfg = load_config(EXAMPLES / "plugin_package" / "plugin_config.yaml")
    assert cfg["model"]["backbone"] == {
        "type": "SimpleConvNet",
        "width": 16,
    }  # _delete_ dropped ResNet's keys
    assert cfg["imports"] == ["my_mrcnn_plugin.backbones"]
    backbone = BACKBONES.build(cfg["model"]["backbone"])
    features = NECKS.build(cfg["model"]["neck"])(backbone(np.zeros((1, 64, 64, 3), "float32")))
    channels = cfg["model"]["neck"]["num_channels"]  # the demo config's FPN width
    assert {k: tuple(v.shape) for k, v in features.items()}["P2"] == (1, 16, 16, channels)
    assert "my_mrcnn_plugin.backbones" in sys.modules


def test_plugin_backbone_drives_the_whole_mask_rcnn(monkeypatch):
    import mrcnn_tf

    monkeypatch.syspath_prepend(str(EXAMPLES / "plugin_package"))
    cfg = load_config(
        EXAMPLES / "plugin_package" / "plugin_config.yaml",
        ["model.proposal_generator.post_nms_topk_test=20", "model.detection_generator.max_detections=5"],
    )
    model = mrcnn_tf.build_model(cfg)
    out = model({"images": np.zeros((1, 64, 64, 3), "float32")})
    assert type(model.backbone).__name__ == "SimpleConvNet"
    assert out["masks"].shape == (1, 5, 28, 28)


@pytest.mark.slow
def test_benchmark_script_runs(tmp_path):
    import subprocess

    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "benchmark.py"), "--size", "64", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "train step:" in result.stdout and "RoIAlign" in result.stdout


def _walkthrough_commands() -> list[list[str]]:
    import re
    import shlex

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- walkthrough", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


#: Only the size changes: fewer images and two training steps.
TINY = {
    "synthetic": ["--num-train", "8", "--num-val", "4"],
    "train": ["--set", "train.max_steps=2", "train.steps_per_loop=2", "train.eval_every=0"],
}


@pytest.mark.slow
def test_readme_walkthrough_from_own_coco_data_to_predictions(tmp_path, monkeypatch, capsys):
    """Every command of the README's own-dataset walkthrough, as written, at a tiny size."""
    import json

    from mrcnn_tf.cli import main

    monkeypatch.chdir(tmp_path)
    commands = _walkthrough_commands()
    assert [c[:2] for c in commands][:2] == [["mrcnn-tf", "data"], ["mrcnn-tf", "data"]]
    assert {c[1] for c in commands} >= {"train", "evaluate", "export", "predict"}
    for command in commands:
        assert command[0] == "mrcnn-tf", command
        argv = [
            str(EXAMPLES / "own_dataset.yaml") if a == "examples/own_dataset.yaml" else a for a in command[1:]
        ]
        argv += TINY.get(argv[1] if argv[0] == "data" else argv[0], [])
        assert main(argv) == 0, (command, capsys.readouterr())
    predictions = json.loads((tmp_path / "runs/my_model/predictions/predictions.json").read_text())
    val_ids = {
        im["id"]
        for im in json.loads((tmp_path / "my_data/annotations/instances_val.json").read_text())["images"]
    }
    assert {p["image_id"] for p in predictions} <= val_ids
    assert len(list((tmp_path / "runs/my_model/predictions").glob("*.png"))) == 4
    metrics = json.loads((tmp_path / "runs/my_model/final_eval/metrics.json").read_text())
    assert set(metrics) >= {"bbox", "segm"}


@pytest.mark.slow  # default CI stays under ~12 min on 2 cores
def test_finetune_example_starts_a_two_class_model_from_a_three_class_run(tmp_path, capsys):
    """examples/finetune.py: backbone and towers kept, the class-dependent predictors fresh."""
    import importlib.util
    import json

    import mrcnn_tf
    from mrcnn_tf.config import load_config

    source = mrcnn_tf.build_model(load_config("mask_rcnn_r18_fpn_synthetic"))  # 3 classes
    source.build()
    source.save_weights(str(tmp_path / "src.weights.h5"))
    spec = importlib.util.spec_from_file_location("finetune_example", EXAMPLES / "finetune.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    argv = ["--from", str(tmp_path / "src.weights.h5"), "--workdir", str(tmp_path / "ft"), "--steps", "2"]
    assert example.main([*argv, "--num-train", "8", "--num-val", "4"]) == 0
    assert "start fresh" in capsys.readouterr().out
    run = tmp_path / "ft" / "run"
    labels = json.loads((run / "label_map.json").read_text())["categories"]
    assert [c["name"] for c in labels] == ["circle", "polygon"]
    report = json.loads((run / "init_weights.json").read_text())
    fresh_layers = {p.rsplit("/", 2)[-2] for p in report["fresh"]}
    assert fresh_layers == {"cls_score", "bbox_pred", "predictor"}  # 3 -> 2 classes: these alone
    assert report["loaded"] > 50 and json.loads((run / "train_state.json").read_text())["finished"]


PLUGIN_RUN = """
import sys
from mrcnn_tf.cli import main

config, work = sys.argv[1], sys.argv[2]
tiny = ["--set", "train.max_steps=2", "train.steps_per_loop=2", "train.eval_every=0",
        "data.train.num_images=4", "data.val.num_images=4",
        f"data.train.root={work}/syn", f"data.val.root={work}/syn"]
assert main(["list", "backbone"]) == 0
assert main(["train", config, "--workdir", f"{work}/run", *tiny]) == 0
assert main(["export", config, "--weights", f"{work}/run", "--out", f"{work}/export", *tiny]) == 0
"""


@pytest.mark.slow  # default CI stays under ~12 min on 2 cores
def test_plugin_package_installed_with_pip_is_found_by_entry_point_trained_and_exported(tmp_path):
    """The example plugin, pip-installed (no `imports:`), selected by name, trained, exported."""
    import os
    import shutil
    import subprocess

    package = shutil.copytree(EXAMPLES / "plugin_package", tmp_path / "src")  # the build writes here
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    result = subprocess.run([*pip, "--target", str(site), str(package)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    config = tmp_path / "plugin_installed.yaml"
    backbone = "model:\n  backbone: {_delete_: true, type: SimpleConvNet}\n"
    config.write_text(f"_base_: mask_rcnn_r18_fpn_synthetic.yaml\n{backbone}")
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", PLUGIN_RUN, str(config), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    assert "SimpleConvNet" in result.stdout and "my_mrcnn_plugin" not in config.read_text()
    import tensorflow as tf

    loaded = tf.saved_model.load(str(tmp_path / "export" / "1"))  # serves without the plugin installed
    out = loaded.signatures["serving_default"](tf.zeros([1, 96, 80, 3], tf.uint8))
    assert out["detection_boxes"].shape[0] == 1


@pytest.mark.slow  # default CI stays under ~12 min on 2 cores
def test_ablation_script_trains_each_variant_once_and_prints_the_table(tmp_path, capsys):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("ablations_example", EXAMPLES / "ablations.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    argv = ["--steps", "2", "--variants", "mask_softmax", "--workdir", str(tmp_path)]
    argv += ["--set", "data.train.num_images=4", "data.val.num_images=4", "--json", str(tmp_path / "r.json")]
    assert example.main(argv) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| mask_softmax")]
    assert len(rows) == 1 and "| -5.5 |" in rows[0]  # the paper's Δ for 2b beside ours
    record = json.loads((tmp_path / "r.json").read_text())
    assert set(record["results"]) == {"mask_softmax"}
    assert "MultinomialMaskLoss" in (tmp_path / "mask_softmax-seed0" / "config.yaml").read_text()
    assert example.main(argv) == 0  # a second run reuses the finished run
    assert out.count("training 2 steps") == 1 and "reusing the finished run" in capsys.readouterr().out
