"""Export a detector as a LiteRT (TFLite) model that needs **TFLite builtin ops only**.

Mask R-CNN usually needs the Flex delegate (TensorFlow ops inside TFLite) because
``CropAndResize`` and ``CombinedNonMaxSuppression`` are not builtins. The ``litert`` target
(:func:`mrcnn_tf.export.targets.apply_target`) builds the model from parts that are: the
``gather`` RoIAlign (gathers and multiplies), ``padded`` per-class NMS (a while loop of
builtins), direct convolutions. The converter is told ``supported_ops=[TFLITE_BUILTINS]``, so an
op without a builtin fails the export (naming the op) instead of pulling in TensorFlow ops.

The model has a fixed input size ``S`` (``--image-size``):

- inputs: ``images`` uint8 ``[1, S, S, 3]`` RGB: the photo resized so that it fits (its longer
  side ``S``, :func:`letterbox`), at the top-left, zeros elsewhere; ``image_size`` int32
  ``[1, 2]`` the ``(height, width)`` of the resized photo inside the input (the rest is padding).
- outputs (as the SavedModel's ``serving_default``, boxes in pixels of the ``S × S`` input):
  ``detection_boxes`` float32 ``[1, N, 4]`` ``[y1, x1, y2, x2]``; ``detection_scores`` float32
  ``[1, N]``; ``detection_classes`` int32 ``[1, N]`` (1..K, 0 for empty slots);
  ``num_detections`` int32 ``[1]``; ``detection_masks`` float32 ``[1, N, M, M]`` box-relative.
  Divide boxes by the letterbox scale to get pixels of the photo.

Variables are frozen into constants before conversion: TF 2.21's converter keeps Keras 3
variables as resource variables that the LiteRT interpreter leaves uninitialised (the model
then silently outputs garbage).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from registry.errors import UserError

QUANTIZE = ("none", "float16", "int8")
MODEL_FILE = "model.tflite"
#: What to change when a TensorFlow op has no builtin (op -> the config key that avoids it).
_OP_HINTS = {
    "CropAndResize": "a RoI aligner with backend: gather",
    "CombinedNonMaxSuppression": (
        "nms_backend: padded in model.detection_generator and model.proposal_generator"
    ),
    "InvertPermutation": "a RoI aligner with backend: gather",
}


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int], float]:
    """uint8 ``[H, W, 3]`` -> (uint8 ``[size, size, 3]`` with the image resized so that its longer
    side is ``size`` at the top-left and zeros elsewhere, its ``(height, width)`` there, the scale).

    Bilinear resize with Pillow (which filters when shrinking, like the training pipeline's
    antialiased resize). Divide output boxes by the scale to get pixels of ``image``.
    """
    from PIL import Image

    height, width = image.shape[:2]
    scale = size / max(height, width)
    new = (max(1, min(size, round(height * scale))), max(1, min(size, round(width * scale))))
    if new != (height, width):
        image = np.asarray(Image.fromarray(image).resize((new[1], new[0]), Image.BILINEAR))
    out = np.zeros([size, size, 3], np.uint8)
    out[: new[0], : new[1]] = image
    return out, new, scale


def litert_function(model, image_size: int):
    """The ``tf.function`` that is converted: fixed ``[1, S, S, 3]`` input (module docstring)."""
    import tensorflow as tf

    size = int(image_size)

    @tf.function(
        input_signature=[
            tf.TensorSpec([1, size, size, 3], tf.uint8, name="images"),
            tf.TensorSpec([1, 2], tf.int32, name="image_size"),
        ]
    )
    def serve(images, image_size):
        valid = tf.clip_by_value(tf.cast(image_size, tf.float32), 1.0, float(size))
        out = model({"images": images, "image_size": valid}, training=False)
        limit = tf.tile(valid, [1, 2])[:, None]  # [1, 1, 4]
        result = {
            "detection_boxes": tf.minimum(tf.maximum(out["boxes"], 0.0), limit),
            "detection_scores": out["scores"],
            "detection_classes": tf.cast(out["classes"], tf.int32),
            "num_detections": tf.cast(out["num_detections"], tf.int32),
        }
        if "masks" in out:
            result["detection_masks"] = tf.cast(out["masks"], tf.float32)
        if "keypoints" in out:
            result["detection_keypoints"] = tf.cast(out["keypoints"], tf.float32)
        return result

    return serve


def _frozen(fn):
    """``fn`` with every variable turned into a constant, keeping its input and output names."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = fn.get_concrete_function()
    structure = concrete.structured_outputs
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False)  # keep While ops

    @tf.function(input_signature=concrete.structured_input_signature[0])
    def named(images, image_size):
        return tf.nest.pack_sequence_as(structure, frozen(images, image_size))  # sorted-key order

    return named.get_concrete_function()


def _not_builtin(message: str) -> list[str]:
    """The TensorFlow ops a converter error names as needing TF Select (Flex)."""
    found = re.search(r"TF Select ops: ([^\n]+)", message)
    if found:
        return [op.strip() for op in found.group(1).split(",") if op.strip()]
    return sorted(set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", message)))


def convert(
    model,
    image_size: int,
    quantize: str = "none",
) -> bytes:
    """The ``.tflite`` flatbuffer of ``model`` (built with the ``litert`` target).

    Args:
        model: a built ``MaskRCNN`` with its weights.
        image_size: S, the fixed input size.
        quantize: ``none`` (float32), ``float16`` (float16 weights, float32 arithmetic) or ``int8``
            (dynamic-range: int8 weights; convolutions and fully connected layers compute in
            int8 with activations quantised per call; the rest float32). Full-integer int8
            with calibration images is not offered: TF 2.21's converter either quantises the
            NMS loop (its int8 division fails at run time on a zero union) or, asked to keep
            those ops float, fails on the loop's types (see the README).

    Raises:
        UserError: an op without a TFLite builtin (named, with the config key that avoids it).
    """
    import tensorflow as tf

    if quantize not in QUANTIZE:
        raise UserError(f"--quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    concrete = _frozen(litert_function(model, image_size))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises several types; one line for the user
        ops = _not_builtin(str(exc))
        if not ops:
            raise
        hints = sorted({_OP_HINTS[op] for op in ops if op in _OP_HINTS})
        fix = f"; use {' and '.join(hints)}" if hints else "; replace the parts that use them"
        raise UserError(
            f"cannot make a builtin-ops LiteRT model: {', '.join(ops)} are not TFLite builtins{fix} "
            "(nothing was written)"
        ) from None


def write_litert(
    data: bytes,
    out_dir: str | os.PathLike,
    label_map: dict,
    *,
    image_size: int,
    quantize: str,
    config: dict | None = None,
    head_outputs: Sequence[str] = ("detection_masks",),
) -> Path:
    """Write ``model.tflite``, ``label_map.json``, ``config.yaml`` and ``export.json`` into
    ``out_dir`` (which must be new or empty); returns the model file."""
    from mrcnn_tf.export.saved_model import OUTPUT_KEYS, write_export_files

    out = Path(out_dir)
    require_new_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_FILE).write_bytes(data)
    record = {
        "format": "tflite",
        "target": "litert",
        "image_size": int(image_size),
        "quantize": quantize,
        "inputs": {"images": ["uint8", [1, image_size, image_size, 3]], "image_size": ["int32", [1, 2]]},
        "outputs": list(OUTPUT_KEYS) + list(head_outputs),
    }
    write_export_files(out, label_map, config, record)
    return out / MODEL_FILE


def require_new_folder(out: Path) -> None:
    """Refuse an ``--out`` that exists and is not an empty folder (checked before the conversion,
    and again before writing).

    Raises:
        UserError: naming ``out``.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(
            f"--out {out}: exists and is not an empty folder; choose a new one (nothing was written)"
        )


def find_litert(path: str | os.PathLike) -> Path | None:
    """The ``.tflite`` file of ``path`` (the file, or ``model.tflite`` in the folder), else None."""
    path = Path(path)
    if path.is_file() and path.suffix == ".tflite":
        return path
    if (path / MODEL_FILE).is_file():
        return path / MODEL_FILE
    return None


def load_predictor(path: str | os.PathLike, num_threads: int | None = None):
    """A :class:`~mrcnn_tf.export.predictor.Predictor` running ``path`` (a ``.tflite`` file or the
    folder of ``export --format tflite``) in the LiteRT interpreter: each image is letterboxed to
    the model's input and its boxes are mapped back to the image's pixels.

    Raises:
        UserError: ``ai-edge-litert`` is not installed, or the file is not such a model.
    """
    from mrcnn_tf.export.predictor import Predictor, _label_map
    from mrcnn_tf.export.saved_model import MODEL_OUTPUTS

    file = find_litert(path)
    if file is None:
        raise UserError(
            f"{path}: no .tflite file there (pass model.tflite or the folder of `export --format tflite`)"
        )
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise UserError(
            "running a .tflite model needs the LiteRT interpreter: pip install ai-edge-litert"
        ) from None
    try:
        interpreter = Interpreter(model_path=str(file), num_threads=num_threads or os.cpu_count())
        runner = interpreter.get_signature_runner("serving_default")
        inputs = runner.get_input_details()
        size = int(inputs["images"]["shape"][1])
    except (ValueError, RuntimeError, KeyError) as exc:
        raise UserError(f"{file}: not a model of `mrcnn-tf export --format tflite` ({exc})") from exc
    names, ids, skeleton = _label_map(file.parent / "label_map.json")

    class LiteRTPredictor(Predictor):
        def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
            image = np.asarray(image, np.uint8)
            padded, (height, width), scale = letterbox(image, size)
            out = runner(images=padded[None], image_size=np.array([[height, width]], np.int32))
            limit = np.array(image.shape[:2] * 2, np.float32)
            out["detection_boxes"] = np.minimum(np.maximum(out["detection_boxes"] / scale, 0.0), limit)
            if "detection_keypoints" in out:  # continuous pixels of the letterboxed image
                out["detection_keypoints"][..., :2] /= scale
            return {MODEL_OUTPUTS[k]: v for k, v in out.items() if k in MODEL_OUTPUTS}

    predictor = LiteRTPredictor(runner, names, ids, f"{file} (LiteRT)", skeleton)
    predictor._keep_alive = interpreter
    return predictor
