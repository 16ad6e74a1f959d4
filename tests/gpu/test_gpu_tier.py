"""The GPU tier (marker ``gpu``; ``python3 dev.py test-gpu`` runs it with the GPU benchmark).

Skipped where TensorFlow sees no GPU. TensorFloat-32 is turned off for these tests (TensorFlow
turns it on by default on Ampere and later, which rounds float32 matmuls/convolutions to 10
mantissa bits): the references are float64.
"""

from __future__ import annotations

import numpy as np
import numpy_ref
import pytest
import tensorflow as tf
from training_fixtures import XLA_TRAINING, tiny_config

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not tf.config.list_physical_devices("GPU"), reason="no GPU visible to TensorFlow"),
]


@pytest.fixture(autouse=True)
def _no_tf32():
    before = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    yield
    tf.config.experimental.enable_tensor_float_32_execution(before)


@pytest.mark.parametrize("backend", ["crop_and_resize", "gather"])
def test_roi_align_on_the_gpu_is_within_1e5_of_float64(backend):
    """TensorFlow's GPU CropAndResize kernel (and the gather backend) on the GPU, the CPU test's
    large random case: both within 1e-5 of the float64 RoIAlign."""
    from mrcnn_tf.ops.roi_align import roi_align

    rng = np.random.default_rng(3)
    features = rng.normal(size=(1, 25, 38, 16)).astype("float32")
    y1x1 = rng.uniform(-20, 180, size=(1, 50, 2))
    boxes = np.concatenate([y1x1, y1x1 + rng.uniform(0, 120, size=(1, 50, 2))], axis=-1).astype("float32")
    with tf.device("/GPU:0"):
        out = roi_align(tf.constant(features), tf.constant(boxes), 7, 1 / 8, backend=backend)
    assert "GPU" in out.device
    ref = numpy_ref.roi_align(features[0], boxes[0], 7, 1 / 8, 2, True)
    np.testing.assert_allclose(out[0].numpy(), ref, rtol=0, atol=1e-5)


def test_tensorflows_own_crop_and_resize_image_gradient_on_the_gpu_is_exact():
    """The GPU kernel of ``CropAndResizeGradImage`` (atomic adds; the CPU kernel races,
    tensorflow#42033) against the float64 formula, five calls."""
    rng = np.random.default_rng(0)
    n = 300
    image_shape = (2, 16, 16, 8)
    start = rng.uniform(-0.1, 0.9, (n, 2))
    boxes = np.concatenate([start, start + rng.uniform(0.05, 0.4, (n, 2))], 1).astype(np.float32)
    box_indices = rng.integers(0, 2, n).astype(np.int32)
    d_crops = rng.standard_normal((n, 6, 6, 8)).astype(np.float32)
    expected = numpy_ref.crop_and_resize_image_grad(d_crops, image_shape, boxes, box_indices)
    for _ in range(5):
        with tf.device("/GPU:0"):
            grad = tf.raw_ops.CropAndResizeGradImage(
                grads=d_crops, boxes=boxes, box_ind=box_indices, image_size=image_shape, T=tf.float32
            )
        np.testing.assert_allclose(grad.numpy(), expected, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(["train.mixed_precision=mixed_float16"], id="mixed_float16"),
        pytest.param(XLA_TRAINING, id="xla"),
    ],
)
def test_training_steps_on_the_gpu_change_every_weight_with_finite_losses(tmp_path, extra):
    from training.test_trainer import _unchanged_model_arrays

    from mrcnn_tf.training.trainer import train

    result = train(tiny_config("data.val=null", *extra), tmp_path / "run", verbose=0)
    assert all(np.isfinite(v[-1]) for v in result["loss_history"].values())
    assert _unchanged_model_arrays(tmp_path / "run" / "checkpoints") == []
    assert any("GPU" in v.device for v in result["model"].trainable_variables)


def test_a_gpu_target_saved_model_serves_on_the_gpu_like_the_cpu_model(tmp_path):
    """``export --target gpu`` (crop_and_resize aligners) loaded and run on the GPU: the CPU
    Keras model's detections (classes equal, boxes within 0.5 px, scores within 1e-3)."""
    import keras

    from mrcnn_tf import build_model
    from mrcnn_tf.data.builder import build_input_pipeline
    from mrcnn_tf.data.category_map import CategoryMap
    from mrcnn_tf.export.predictor import Predictor
    from mrcnn_tf.export.saved_model import Preprocessing, export_saved_model
    from mrcnn_tf.export.targets import apply_target

    keras.utils.set_random_seed(4)
    cfg = tiny_config("model.detection_generator.score_threshold=0.0")
    preprocess = Preprocessing.from_pipeline(build_input_pipeline(cfg))
    labels = CategoryMap((1, 2, 3), ("c1", "c2", "c3"))
    with tf.device("/CPU:0"):
        cpu_model = build_model(apply_target(cfg, "cpu"))
        cpu_model.build()
        image = np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)
        want = Predictor.from_model(cpu_model, preprocess, labels)(image)
        cpu_model.save_weights(str(tmp_path / "w.weights.h5"))
    gpu_model = build_model(apply_target(cfg, "gpu"))
    gpu_model.build()
    gpu_model.load_weights(str(tmp_path / "w.weights.h5"))
    export_saved_model(gpu_model, tmp_path / "sm" / "1", preprocess, labels.to_json(), target="gpu")
    with tf.device("/GPU:0"):
        got = Predictor.from_saved_model(tmp_path / "sm" / "1")(image)
    n = int(want["num_detections"][0])
    assert n > 0 and int(got["num_detections"][0]) == n
    np.testing.assert_array_equal(got["classes"][0, :n], want["classes"][0, :n])
    np.testing.assert_allclose(got["boxes"][0, :n], want["boxes"][0, :n], atol=0.5)
    np.testing.assert_allclose(got["scores"][0, :n], want["scores"][0, :n], atol=1e-3)
