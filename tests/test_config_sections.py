"""Every plain config section is checked when the config is loaded, by `config show` and every command."""

from __future__ import annotations

import pytest

from mrcnn_tf.cli import main


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("runtime:\n  sede: 3\n", "runtime.sede", "did you mean seed?"),
        ("runtime:\n  seed: three\n", "runtime.seed", "must be an integer, got 'three' (str)"),
        ("runtime:\n  strategy: mirorred\n", "runtime.strategy", "unknown strategy 'mirorred'"),
        ("runtime:\n  deterministic: 1\n", "runtime.deterministic", "must be true or false"),
        ("train:\n  max_step: 10\n", "train.max_step", "did you mean max_steps"),
        ("train:\n  max_steps: '100'\n", "train.max_steps", "must be an integer, got '100' (str)"),
        ("train:\n  log_every: 0\n", "train.log_every", "must be >= 1"),
        ("evaluation:\n  mask_threshold: 1.5\n", "evaluation.mask_threshold", "must be in [0.0, 1.0]"),
        ("data:\n  pipeline: {min_size: -5}\n", "data.pipeline.min_size", "must be >= 1, got -5"),
        ("data:\n  pipeline: {batch_size: 0}\n", "data.pipeline.batch_size", "must be >= 1, got 0"),
        ("data:\n  pipeline: {batch_sise: 2}\n", "data.pipeline.batch_sise", "did you mean batch_size?"),
        ("data:\n  pipeline: {output_size: [0, 64]}\n", "data.pipeline.output_size", "must be >= 1"),
        ("data:\n  pipeline: {flip_prob: 2}\n", "data.pipeline.flip_prob", "must be in [0.0, 1.0]"),
        ("data:\n  num_clases: 3\n", "data.num_clases", "did you mean num_classes?"),
        ("data:\n  num_classes: 0\n", "data.num_classes", "must be >= 1"),
        ("export:\n  version: 1\n", "export", "unknown top-level key 'export'"),
    ],
)
def test_bad_section_values_exit_2_naming_file_key_and_fix(write, capsys, text, key, message):
    cfg = write("bad.yaml", text)
    assert main(["config", "show", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and f"'{key}'" in err and message in err, err
    assert "Traceback" not in err


def test_the_file_that_set_a_bad_key_is_named_not_the_one_loaded(write, capsys):
    base = write("base.yaml", "train:\n  steps_per_loop: ten\n")
    child = write("child.yaml", "_base_: base.yaml\ntrain:\n  max_steps: 10\n")
    assert main(["config", "show", str(child)]) == 2
    err = capsys.readouterr().err
    assert str(base) in err and str(child) not in err and "'train.steps_per_loop'" in err


def test_a_bad_override_is_named_as_the_override(write, capsys):
    cfg = write("ok.yaml", "train:\n  max_steps: 10\n")
    assert main(["config", "show", str(cfg), "--set", "data.pipeline.min_size=-5"]) == 2
    assert "--set data.pipeline.min_size=-5" in capsys.readouterr().err


def test_every_bundled_config_passes_the_section_checks(capsys):
    from mrcnn_tf.config import list_configs

    for path in list_configs():
        assert main(["config", "show", str(path)]) == 0, capsys.readouterr().err
