"""A Keypoint R-CNN through the SavedModel and LiteRT exports and ``predict``: keypoints in the
pixels of the input image, equal to the Keras model's on the evaluation resize."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from training_fixtures import evaluation_pass

from mrcnn_tf import build_model
from mrcnn_tf.config import load_config
from mrcnn_tf.data.builder import build_input_pipeline
from mrcnn_tf.data.category_map import CategoryMap
from mrcnn_tf.export.saved_model import Preprocessing, export_saved_model

pytestmark = pytest.mark.slow

SCHEMA = {
    "names": ["a", "left_b", "right_b"],
    "skeleton": [[0, 1], [0, 2]],
    "flip_map": [0, 2, 1],
    "sigmas": [0.1] * 3,
}
TINY = [
    "model.backbone.width=8",
    "model.neck.num_channels=16",
    "model.box_head.fc_dim=32",
    "model.mask_head=null",
    "model.keypoint_head.conv_dim=8",
    "model.keypoint_head.num_convs=1",
    "model.num_keypoints=3",
    "model.proposal_generator.post_nms_topk_test=32",
    "model.detection_generator.max_detections=10",
    "model.detection_generator.score_threshold=0.0",
    "data.pipeline.min_size=64",
    "data.pipeline.max_size=96",
]


@pytest.fixture(scope="module")
def keypoint_export(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(5)
    cfg = load_config("keypoint_rcnn_r18_fpn_synthetic", TINY)
    model = build_model(cfg)
    model.build()
    pipeline = build_input_pipeline(cfg)
    labels = CategoryMap((7,), ("figure",), SCHEMA)
    path = tmp_path_factory.mktemp("kp_export") / "model" / "1"
    export_saved_model(model, path, Preprocessing.from_pipeline(pipeline), labels.to_json())
    return model, pipeline, path, labels


def image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    out[h // 4 : h // 2, w // 4 : w // 2] = [250, 30, 30]
    return out


def reference(model, pipeline, picture):
    """The Keras model on the pipeline's evaluation resize; keypoints mapped back by hand."""
    out, batch = evaluation_pass(model, pipeline, picture)
    sy, sx = batch["image_scale"].numpy()
    keypoints = out["keypoints"][0].numpy() / np.array([sx, sy, 1.0], np.float32)
    return int(out["num_detections"][0]), keypoints


def test_saved_model_keypoints_are_the_keras_models_in_input_pixels(keypoint_export):
    model, pipeline, path, _ = keypoint_export
    loaded = tf.saved_model.load(str(path))
    picture = image(50, 80)
    n, want = reference(model, pipeline, picture)
    assert n > 0
    out = loaded.signatures["serving_default"](images=tf.constant(picture[None]))
    assert "detection_masks" not in out and out["detection_keypoints"].shape == (1, 10, 3, 3)
    assert int(out["num_detections"][0]) == n
    np.testing.assert_allclose(out["detection_keypoints"][0, :n].numpy(), want[:n], atol=2e-3)
    saved = json.loads((path / "assets" / "label_map.json").read_text())
    assert saved["keypoints"]["skeleton"] == [[0, 1], [0, 2]]


def test_predict_writes_coco_keypoint_results_and_draws_the_skeleton(keypoint_export, tmp_path):
    from mrcnn_tf.export.predictor import Predictor, predict_images

    _, _, path, _ = keypoint_export
    predictor = Predictor.from_saved_model(path)
    assert predictor.skeleton == [[0, 1], [0, 2]]
    picture = image(50, 80, seed=1)
    Image.fromarray(picture).save(tmp_path / "a.png")
    raw = predictor(picture)
    summary = predict_images(
        predictor, [(tmp_path / "a.png", "a.png")], tmp_path / "out", score_threshold=0.0, progress=False
    )
    results = json.loads((tmp_path / "out" / "predictions.json").read_text())
    n = int(raw["num_detections"][0])
    assert summary["detections"] == n == len(results) and n > 0
    for i, result in enumerate(results):  # COCO's pixel-index frame: continuous - 0.5
        kp = raw["keypoints"][0, i].astype(np.float64)
        want = np.concatenate([kp[:, :2] - 0.5, kp[:, 2:]], 1).reshape(-1)
        np.testing.assert_allclose(result["keypoints"], want, atol=1e-4)
        assert result["category_id"] == 7 and "segmentation" not in result
    drawn = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    assert drawn.shape == picture.shape and (drawn != picture).any()


def test_litert_export_gives_the_keras_models_keypoints(keypoint_export, tmp_path):
    pytest.importorskip("ai_edge_litert")
    from mrcnn_tf.export import litert
    from mrcnn_tf.export.targets import LITERT, apply_target

    model, _, _, labels = keypoint_export
    cfg = apply_target(load_config("keypoint_rcnn_r18_fpn_synthetic", TINY), LITERT)
    lite_model = build_model(cfg)
    lite_model.build()
    lite_model.set_weights(model.get_weights())
    data = litert.convert(lite_model, 96)
    file = litert.write_litert(
        data,
        tmp_path / "lite",
        labels.to_json(),
        image_size=96,
        quantize="none",
        head_outputs=["detection_keypoints"],
    )
    predictor = litert.load_predictor(file)
    assert predictor.skeleton == [[0, 1], [0, 2]]
    picture = image(50, 80, seed=2)
    got = predictor(picture)
    # the Keras model on the same letterboxed input: keypoints / scale are the LiteRT answer
    padded, (h, w), scale = litert.letterbox(picture, 96)
    want = lite_model({"images": padded[None], "image_size": np.array([[h, w]], np.float32)})
    n = int(want["num_detections"][0])
    assert int(got["num_detections"][0]) == n > 0
    expected = want["keypoints"][0, :n].numpy() / np.array([scale, scale, 1.0], np.float32)
    np.testing.assert_allclose(got["keypoints"][0, :n], expected, atol=1e-2)
    record = json.loads((tmp_path / "lite" / "export.json").read_text())
    assert "detection_keypoints" in record["outputs"] and "detection_masks" not in record["outputs"]
