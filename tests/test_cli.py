"""The ``mrcnn-tf`` command line: listings, config show, error handling and exit codes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from plugin_fixtures import TINY_BACKBONE, make_distribution

from mrcnn_tf.cli import main
from mrcnn_tf.config import load_config
from registry import ConfigError

ROLES = [
    "backbone",
    "neck",
    "anchor_generator",
    "rpn_head",
    "proposal_generator",
    "anchor_labeler",
    "roi_aligner",
    "roi_sampler",
    "box_head",
    "mask_head",
    "keypoint_head",
    "detection_generator",
    "loss",
    "detector",
    "dataset",
    "optimizer",
    "schedule",
]
CLI = shutil.which("mrcnn-tf") or str(Path(sys.executable).parent / "mrcnn-tf")


def run_cli(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=300)


def test_list_prints_every_role_and_the_builtins(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    headers = [line.split(" (")[0] for line in out.splitlines() if line and not line.startswith(" ")]
    assert headers == ROLES
    assert "ResNet" in out and "ResNet-18/34/50/101/152 feature extractor" in out and "aliases: resnet" in out


def test_list_one_role_accepts_plural(capsys):
    assert main(["list", "necks"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("neck (2)\n") and "FPN" in out and "IdentityNeck" in out and "ResNet" not in out


def test_list_unknown_role_is_a_user_error(capsys):
    assert main(["list", "bakcbone"]) == 2
    err = capsys.readouterr().err
    assert "unknown role 'bakcbone'" in err and "backbone" in err


def test_list_configs(capsys):
    assert main(["list", "configs"]) == 0
    out = capsys.readouterr().out
    assert "mask_rcnn_r18_fpn_synthetic.yaml" in out and "demo config" in out
    assert "_base_" not in out.split("\n", 1)[1]


def test_config_show_prints_the_merged_config(write, capsys):
    write("_base_/m.yaml", "model:\n  backbone: {type: ResNet, depth: 50, freeze_at: 2}\n")
    cfg = write("exp.yaml", "_base_: _base_/m.yaml\nmodel:\n  backbone: {depth: 18}\n")
    assert main(["config", "show", str(cfg), "--set", "model.backbone.freeze_at=0", "runtime.seed=7"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown == {
        "model": {"backbone": {"type": "ResNet", "depth": 18, "freeze_at": 0}},
        "runtime": {"seed": 7},
    }


def test_every_bundled_config_resolves():
    from mrcnn_tf.config import list_configs

    configs = list_configs()
    assert configs, "no configs found"
    for path in configs:
        cfg = load_config(path)
        assert cfg["model"]["type"] == "MaskRCNN", path
        assert cfg["model"]["backbone"]["type"] in ("ResNet", "KerasApplicationBackbone"), path


def test_misspelled_component_exits_2_naming_file_key_and_suggestion(write, capsys):
    cfg = write("bad.yaml", "model:\n  backbone: {type: ResNett, depth: 50}\n")
    assert main(["config", "show", str(cfg)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(cfg) in captured.err
    assert "model.backbone.type" in captured.err
    assert "Did you mean ResNet?" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("content", "overrides", "expected"),
    [
        ("model: [1\n", [], "invalid YAML"),
        ("model:\n  neck: {type: FPN, num_chanels: 3}\n", [], "did you mean num_channels?"),
        ("model:\n  neck: {type: ResNet}\n", [], "'ResNet' is a backbone, but 'neck' expects a neck"),
        ("model: {}\n", ["model..x=1"], "malformed key"),
        ("model: {}\n", ["model.x"], "must look like key.path=VALUE"),
        ("modle: {}\n", [], "did you mean model?"),
        ("x: !!python/object/apply:os.getcwd []\n", [], "only plain YAML is accepted"),
    ],
)
def test_user_errors_exit_2_with_one_message(write, capsys, content, overrides, expected):
    cfg = write("c.yaml", content)
    args = ["config", "show", str(cfg)] + (["--set", *overrides] if overrides else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and err.startswith("mrcnn-tf: error: ")


def test_missing_config_file_exits_2(capsys):
    assert main(["config", "show", "no/such/config.yaml"]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_debug_shows_the_exception(write):
    cfg = write("bad.yaml", "model:\n  backbone: {type: ResNett}\n")
    with pytest.raises(ConfigError, match="ResNett"):
        main(["config", "show", str(cfg), "--debug"])
    with pytest.raises(ConfigError):
        main(["--debug", "config", "show", str(cfg)])


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["list"],
        ["config"],
        ["config", "show"],
        ["demo"],
        ["train"],
        ["evaluate"],
        ["predict"],
        ["export"],
        ["data"],
        ["data", "check"],
        ["data", "show"],
        ["data", "convert"],
        ["data", "synthetic"],
    ],
)
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    assert "usage: mrcnn-tf" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_predict_needs_exactly_one_model_source(tmp_path, capsys):
    assert main(["predict", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "either --saved-model DIR or --weights W [--config CONFIG]" in capsys.readouterr().err
    both = ["predict", str(tmp_path), "--out", "o", "--saved-model", "m", "--config", "c", "--weights", "w"]
    assert main(both) == 2


def test_predict_with_a_bad_config_is_a_user_error(write, tmp_path, capsys):
    cfg = write("bad.yaml", "model:\n  backbone: {type: ResNett}\n")
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    argv = ["predict", str(image), "--out", str(tmp_path / "o"), "--config", str(cfg), "--weights", "w"]
    assert main(argv) == 2
    assert "Did you mean ResNet?" in capsys.readouterr().err


def test_console_script_exit_status_and_no_traceback(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model:\n  backbone: {type: ResNett}\n")
    result = run_cli("config", "show", str(cfg))
    assert result.returncode == 2
    assert "Did you mean ResNet?" in result.stderr and "Traceback" not in result.stderr
    assert "cuInit" not in result.stderr and "oneDNN" not in result.stderr  # TensorFlow's start-up noise


def test_entry_point_plugin_is_listed_and_usable_from_yaml(tmp_path):
    make_distribution(tmp_path / "site", TINY_BACKBONE)
    listed = run_cli("list", "backbone", pythonpath=tmp_path / "site")
    assert listed.returncode == 0, listed.stderr
    assert "TinyPluginNet" in listed.stdout and "third-party plugin" in listed.stdout
    cfg = tmp_path / "plugin.yaml"
    cfg.write_text("model:\n  backbone: {type: TinyPluginNet, channels: 4}\n")
    shown = run_cli("config", "show", str(cfg), pythonpath=tmp_path / "site")
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout) == {"model": {"backbone": {"type": "TinyPluginNet", "channels": 4}}}
    bad = run_cli(
        "config", "show", str(cfg), "--set", "model.backbone.chanels=2", pythonpath=tmp_path / "site"
    )
    assert bad.returncode == 2 and "did you mean channels?" in bad.stderr


def test_yaml_imports_load_a_plugin_module(tmp_path):
    (tmp_path / "my_yaml_plugin.py").write_text(TINY_BACKBONE.replace("TinyPluginNet", "YamlPluginNet"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("imports: [my_yaml_plugin]\nmodel:\n  backbone: {type: YamlPluginNet}\n")
    shown = run_cli("config", "show", str(cfg), pythonpath=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout)["imports"] == ["my_yaml_plugin"]
    cfg.write_text("imports: [not_there_plugin]\nmodel: {}\n")
    missing = run_cli("config", "show", str(cfg))
    assert missing.returncode == 2 and "cannot import plugin module 'not_there_plugin'" in missing.stderr
