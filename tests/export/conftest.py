"""Shared fixtures of the export tests: one tiny exported model for the whole session."""

from __future__ import annotations

import pytest
from training_fixtures import tiny_config

from mrcnn_tf import build_model
from mrcnn_tf.data.builder import build_input_pipeline
from mrcnn_tf.data.category_map import CategoryMap
from mrcnn_tf.export.saved_model import Preprocessing, export_saved_model

#: The label map shipped with the export (dataset ids 5, 6, 9).
LABELS = CategoryMap((5, 6, 9), ("circle", "square", "triangle")).to_json()


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """(Keras model with random weights, its input pipeline, the SavedModel version dir)."""
    import keras

    keras.utils.set_random_seed(3)
    cfg = tiny_config(
        "model.detection_generator.score_threshold=0.0",
        "data.pipeline.min_size=64",
        "data.pipeline.max_size=96",
    )
    model = build_model(cfg)
    model.build()
    pipeline = build_input_pipeline(cfg)
    path = tmp_path_factory.mktemp("export") / "model" / "1"
    export_saved_model(model, path, Preprocessing.from_pipeline(pipeline), LABELS, paste_masks=True)
    return model, pipeline, path
