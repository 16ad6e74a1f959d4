"""train.init_weights: start from another model's weights (fine-tuning, other classes)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import mrcnn_tf
from mrcnn_tf.config import load_config
from mrcnn_tf.training.init_weights import initialize_from
from mrcnn_tf.training.settings import TrainSettings
from registry.errors import ConfigError, UserError

SMALL = ["model.proposal_generator.post_nms_topk_test=16", "model.detection_generator.max_detections=4"]


def _model(num_classes: int, seed: int):
    keras.utils.set_random_seed(seed)
    model = mrcnn_tf.build_model(
        load_config("mask_rcnn_r18_fpn_synthetic", [*SMALL, f"data.num_classes={num_classes}"])
    )
    model.build()
    return model


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    model = _model(3, seed=1)
    path = tmp_path_factory.mktemp("src") / "model.weights.h5"
    model.save_weights(str(path))
    return model, path


def _values(model):
    """Weights by position (same architecture, same order; paths differ by the model's name)."""
    return [v.numpy() for v in model.weights]


def test_other_class_count_keeps_every_weight_that_fits_and_refreshes_the_predictors(source):
    src, path = source
    target = _model(5, seed=2)
    before = _values(target)
    report = initialize_from(target, path)
    after, src_values = _values(target), _values(src)
    mismatched = {i for i, value in enumerate(after) if src_values[i].shape != value.shape}
    paths = [v.path for v in target.weights]
    names = {paths[i] for i in mismatched}
    assert mismatched and all(("predictor" in p or "cls_score" in p or "bbox_pred" in p) for p in names)
    assert set(report.fresh) == names
    assert report.loaded == len(after) - len(mismatched)
    for i, value in enumerate(after):
        expected = before[i] if i in mismatched else src_values[i]
        np.testing.assert_array_equal(value, expected, err_msg=paths[i])
    assert "cls_score" in report.summary() and str(path) in report.summary()


def test_components_limit_what_is_taken(source):
    src, path = source
    target = _model(3, seed=3)
    before = _values(target)
    report = initialize_from(target, path, components=["backbone"])
    after, src_values = _values(target), _values(src)
    backbone = {id(v) for v in target.backbone.weights}
    for i, v in enumerate(target.weights):
        expected = src_values[i] if id(v) in backbone else before[i]
        np.testing.assert_array_equal(after[i], expected, err_msg=v.path)
    assert report.loaded == len(backbone)


def test_unknown_component_and_unrelated_weights_are_clear_errors(source, tmp_path):
    _, path = source
    target = _model(3, seed=4)
    with pytest.raises(UserError, match="bakbone"):
        initialize_from(target, path, components=["bakbone"])
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    other.save_weights(str(tmp_path / "other.weights.h5"))
    before = _values(target)
    with pytest.raises(UserError, match="no weight in it fits"):
        initialize_from(target, tmp_path / "other.weights.h5")
    for value, expected in zip(_values(target), before, strict=True):  # nothing was left as NaN
        np.testing.assert_array_equal(value, expected)
    with pytest.raises(UserError, match="not found"):
        initialize_from(target, tmp_path / "missing.weights.h5")


def test_init_components_must_be_a_list():
    with pytest.raises(ConfigError, match="init_components"):
        TrainSettings.from_config({"train": {"init_components": "backbone"}})
