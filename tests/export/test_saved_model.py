"""The exported SavedModel: self-contained, its signatures, and parity with the Keras model."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from training_fixtures import evaluation_pass

from mrcnn_tf.export.saved_model import OUTPUT_KEYS


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    image[h // 4 : h // 2, w // 4 : w // 2] = [250, 30, 30]
    return image


def _reference(model, pipeline, image):
    """The Keras model on the evaluation pipeline's resize, boxes mapped back by hand."""
    out, batch = evaluation_pass(model, pipeline, image)
    sy, sx = batch["image_scale"].numpy()
    boxes = out["boxes"][0].numpy() / np.array([sy, sx, sy, sx], np.float32)
    boxes = np.clip(boxes, 0, [image.shape[0], image.shape[1]] * 2)
    return {k: v[0].numpy() for k, v in out.items()}, boxes


def test_both_signatures_match_the_keras_model(exported):
    model, pipeline, path = exported
    loaded = tf.saved_model.load(str(path))
    image = _image(50, 80)
    reference, ref_boxes = _reference(model, pipeline, image)
    n = int(reference["num_detections"])
    assert n > 0  # score threshold 0: random weights still detect
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    outputs = [
        loaded.signatures["serving_default"](images=tf.constant(image[None])),
        loaded.signatures["serving_bytes"](image_bytes=tf.constant([png.getvalue()])),
    ]
    for out in outputs:
        assert int(out["num_detections"][0]) == n
        np.testing.assert_allclose(out["detection_boxes"][0, :n], ref_boxes[:n], atol=1e-3)
        np.testing.assert_allclose(out["detection_scores"][0, :n], reference["scores"][:n], atol=1e-5)
        np.testing.assert_array_equal(out["detection_classes"][0, :n], reference["classes"][:n])
        np.testing.assert_allclose(out["detection_masks"][0, :n], reference["masks"][:n], atol=1e-4)
    pasted = outputs[0]["detection_masks_image"].numpy()
    assert pasted.shape == (1, model.max_detections, 50, 80) and pasted.dtype == np.uint8
    assert set(np.unique(pasted)) <= {0, 1}
    from mrcnn_tf.ops.masks import paste_masks  # tested against float64 NumPy in tests/ops

    expected = paste_masks(outputs[0]["detection_masks"][0], outputs[0]["detection_boxes"][0], (50, 80))
    np.testing.assert_array_equal(pasted[0], expected.numpy())


SELF_CONTAINED = textwrap.dedent(
    """
    import json, sys
    sys.modules["mrcnn_tf"] = None  # any import of mrcnn_tf now fails
    sys.modules["registry"] = None
    import numpy as np, tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    report = {}
    for name, sig in loaded.signatures.items():
        inputs = sig.structured_input_signature[1]
        report[name] = {
            "inputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in inputs.items()},
            "outputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in sig.structured_outputs.items()},
        }
    out = loaded.signatures["serving_default"](images=tf.zeros([2, 40, 70, 3], tf.uint8))
    report["run"] = {k: list(v.shape) for k, v in out.items()}
    print(json.dumps(report))
    """
)


def test_loads_and_runs_where_mrcnn_tf_cannot_be_imported(exported):
    model, _, path = exported
    result = subprocess.run(
        [sys.executable, "-c", SELF_CONTAINED, str(path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    n = model.max_detections
    assert report["serving_default"]["inputs"] == {"images": ["uint8", [None, None, None, 3]]}
    assert report["serving_bytes"]["inputs"] == {"image_bytes": ["string", [None]]}
    outputs = report["serving_bytes"]["outputs"]
    assert set(outputs) == {*OUTPUT_KEYS, "detection_masks"}  # a mask model: no detection_keypoints
    assert outputs["detection_boxes"] == ["float32", [None, n, 4]]
    assert outputs["detection_classes"] == ["int32", [None, n]]
    assert outputs["num_detections"] == ["int32", [None]]
    assert outputs["detection_masks"][0] == "float32"
    assert report["run"]["detection_masks_image"] == [2, n, 40, 70]
    labels = json.loads((path / "assets" / "label_map.json").read_text())["categories"]
    assert [(c["id"], c["name"], c["class_id"]) for c in labels] == [
        (5, "circle", 1),
        (6, "square", 2),
        (9, "triangle", 3),
    ]


def test_rest_body_with_base64_images_runs_through_the_bytes_signature(exported):
    """The JSON TF Serving's REST API receives, decoded as the server does (b64 -> bytes)."""
    _, _, path = exported
    loaded = tf.saved_model.load(str(path))
    buffer = io.BytesIO()
    Image.fromarray(_image(30, 45)).convert("L").save(buffer, format="JPEG")  # grayscale JPEG
    body = json.dumps(
        {
            "signature_name": "serving_bytes",
            "instances": [{"b64": base64.b64encode(buffer.getvalue()).decode()}],
        }
    )
    request = json.loads(body)
    images = [base64.b64decode(instance["b64"]) for instance in request["instances"]]
    out = loaded.signatures[request["signature_name"]](image_bytes=tf.constant(images))
    boxes = out["detection_boxes"].numpy()
    assert boxes.shape[0] == 1 and np.all(boxes[..., 2] <= 30) and np.all(boxes[..., 3] <= 45)


def test_bytes_that_are_not_an_image_are_an_invalid_argument_and_the_next_request_works(exported):
    _, _, path = exported
    loaded = tf.saved_model.load(str(path))
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded.signatures["serving_bytes"](image_bytes=tf.constant([b"not an image"]))
    out = loaded.signatures["serving_default"](images=tf.zeros([1, 1, 1, 3], tf.uint8))  # 1x1 pixel
    assert out["detection_boxes"].shape[0] == 1
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded.signatures["serving_default"](images=tf.zeros([1, 0, 5, 3], tf.uint8))


def test_an_8000_by_8000_image_gets_the_keras_models_answer_and_the_next_request_works(exported):
    model, pipeline, path = exported
    loaded = tf.saved_model.load(str(path))
    image = np.zeros((8000, 8000, 3), np.uint8)
    image[2000:5000, 1000:3000] = [200, 40, 40]
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")  # ~0.2 MB: compresses well
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant([png.getvalue()]))
    reference, ref_boxes = _reference(model, pipeline, image)
    n = int(reference["num_detections"])
    assert int(out["num_detections"][0]) == n > 0
    np.testing.assert_allclose(out["detection_boxes"][0, :n], ref_boxes[:n], atol=1e-2)  # 83x scale
    np.testing.assert_allclose(out["detection_scores"][0, :n], reference["scores"][:n], atol=1e-5)
    assert float(tf.reduce_max(out["detection_boxes"])) <= 8000.0
    small = loaded.signatures["serving_default"](images=tf.constant(_image(20, 30)[None]))
    assert float(tf.reduce_max(small["detection_boxes"])) <= 30.0


def test_saved_model_cli_runs_the_export(exported, tmp_path):
    path = exported[2]
    tool = Path(sys.executable).parent / "saved_model_cli"
    if not tool.exists():
        pytest.skip("saved_model_cli is not installed next to this Python")
    np.save(tmp_path / "image.npy", _image(40, 60)[None])
    argv = [str(tool), "run", "--dir", str(path), "--tag_set", "serve", "--signature_def", "serving_default"]
    result = subprocess.run(
        [*argv, "--inputs", f"images={tmp_path / 'image.npy'}"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Result for output key detection_boxes" in result.stdout
    assert "Result for output key num_detections" in result.stdout
