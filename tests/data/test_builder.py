"""Datasets and pipelines from a config's data section, with errors that name the key."""

from __future__ import annotations

import pytest

from mrcnn_tf.config import load_config
from mrcnn_tf.data.builder import build_dataset, build_input_pipeline, check_num_classes
from registry import ConfigError


def test_synthetic_config_builds_its_datasets_and_pipeline(tmp_path):
    cfg = load_config(
        "mask_rcnn_r18_fpn_synthetic",
        [f"data.train.root={tmp_path}", "data.train.num_images=3", "data.pipeline.batch_size=3"],
    )
    train = build_dataset(cfg, "train")
    assert len(train) == 3 and train.category_map.names == ("circle", "square", "triangle")
    assert check_num_classes(cfg, train) == 3
    pipeline = build_input_pipeline(cfg)
    assert pipeline.batch_size == 3 and pipeline.get_config()["min_size"] == 128


def test_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"data\.test dataset"):
        build_dataset({"data": {}}, "test")
    with pytest.raises(ConfigError, match=r"data\.pipeline\.min_sise.*did you mean min_size"):
        build_input_pipeline({"data": {"pipeline": {"min_sise": 3}}})
    with pytest.raises(ConfigError, match=r"data\.pipeline.*scale_range"):
        build_input_pipeline({"data": {"pipeline": {"scale_range": [2.0, 1.0]}}})


def test_num_classes_must_match_the_dataset(tmp_path):
    cfg = load_config(
        "mask_rcnn_r18_fpn_synthetic", [f"data.train.root={tmp_path}", "data.train.num_images=2"]
    )
    train = build_dataset(cfg, "train")
    with pytest.raises(ConfigError, match=r"data\.num_classes.*is 5 but the dataset has 3 categories"):
        check_num_classes({**cfg, "data": {**cfg["data"], "num_classes": 5}}, train)
