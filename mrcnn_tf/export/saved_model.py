"""Export a detector as a self-contained SavedModel that TF Serving serves as it is.

The exported graph does everything a client would otherwise have to: decoding (for the
``serving_bytes`` signature), the shortest-edge resize and padding of the training pipeline,
normalisation, detection, and mapping boxes back to the pixels of the input image. Each image
of a request is processed on its own (``tf.map_fn``), so a request may hold images of any size
(``serving_bytes``) and outputs have fixed shapes: ``N = max_detections`` slots per image.

Signatures (both return the same outputs):

- ``serving_default``: ``images`` uint8 ``[B, H, W, 3]``.
- ``serving_bytes``: ``image_bytes`` string ``[B]`` of encoded JPEG/PNG/GIF/BMP (TF Serving's
  REST API sends them as ``{"b64": ...}``); grayscale and RGBA images are converted to RGB.

Outputs: ``detection_boxes`` float32 ``[B, N, 4]`` ``[y1, x1, y2, x2]`` in pixels of the input
image; ``detection_scores`` float32 ``[B, N]``; ``detection_classes`` int32 ``[B, N]`` (1..K, 0
for empty slots); ``num_detections`` int32 ``[B]``; ``detection_masks`` float32
``[B, N, M, M]`` box-relative mask probabilities (models with a mask head);
``detection_keypoints`` float32 ``[B, N, K, 3]`` ``(x, y, score)`` in continuous pixels of the
input image (models with a keypoint head); with ``paste_masks=True`` also
``detection_masks_image`` uint8 ``[B, N, H, W]`` (0/1, pasted in the graph; ``serving_default``
only, whose images share one size; ``B*N*H*W`` bytes, so ~6 GB for 100 slots of an 8000×8000
image: large-image clients should paste ``detection_masks`` themselves).

``assets/label_map.json`` holds the class names and the dataset's category ids,
``assets/config.yaml`` the resolved config the model was built from and ``assets/export.json``
the ``--target`` (:mod:`mrcnn_tf.export.targets`) and the TensorFlow/Keras versions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import tensorflow as tf

from mrcnn_tf.data import transforms as T
from mrcnn_tf.ops.masks import paste_masks as paste_box_masks

#: Exported output name -> the model's output name.
MODEL_OUTPUTS = {
    "detection_boxes": "boxes",
    "detection_scores": "scores",
    "detection_classes": "classes",
    "num_detections": "num_detections",
    "detection_masks": "masks",
    "detection_keypoints": "keypoints",
}
#: The outputs of every export (and ``detection_masks`` and/or ``detection_keypoints``).
OUTPUT_KEYS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


class Preprocessing:
    """The evaluation-mode resize of the input pipeline, for one image inside the graph.

    Args:
        min_size, max_size: shortest-edge resize (the pipeline's).
        size_divisibility: pad to multiples of this.
        antialias: low-pass filter when shrinking.
        size_rounding: ``round`` or ``floor`` (see :class:`~mrcnn_tf.data.pipeline.InputPipeline`).
        uint8_images: round the resized image to uint8 (as the pipeline does) or keep float32.
    """

    def __init__(
        self,
        min_size: int,
        max_size: int,
        size_divisibility: int = 32,
        antialias: bool = True,
        size_rounding: str = "round",
        uint8_images: bool = True,
    ):
        self.size_rounding = size_rounding
        self.uint8_images = bool(uint8_images)
        self.min_size = int(min_size)
        self.max_size = int(max_size)
        self.size_divisibility = int(size_divisibility)
        self.antialias = bool(antialias)

    @classmethod
    def from_pipeline(cls, pipeline) -> Preprocessing:
        return cls(
            pipeline.min_size,
            pipeline.max_size,
            pipeline.size_divisibility,
            pipeline.antialias,
            getattr(pipeline, "size_rounding", "round"),
            getattr(pipeline, "uint8_images", True),
        )

    def __call__(self, image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """uint8 ``[H, W, 3]`` -> (padded ``[Hp, Wp, 3]`` uint8 or float32, size ``[2]``, scale ``[2]``
        float32)."""
        shape = tf.shape(image)
        size = T.short_side_size(shape[0], shape[1], self.min_size, self.max_size, self.size_rounding)
        resized = T.resize_image(image, size, self.antialias)
        resized = tf.clip_by_value(resized, 0.0, 255.0)
        resized = tf.cast(tf.round(resized), tf.uint8) if self.uint8_images else tf.cast(resized, tf.float32)
        padded = T.pad_image(resized, self.size_divisibility)
        size = tf.cast(size, tf.float32)
        return padded, size, size / tf.cast(shape[:2], tf.float32)


def _detect_one(model, preprocess: Preprocessing, image: tf.Tensor) -> dict[str, tf.Tensor]:
    image = tf.ensure_shape(image, [None, None, 3])
    shape = tf.shape(image)
    tf.debugging.assert_greater(tf.reduce_min(shape[:2]), 0, message="empty image (0 pixels)")
    padded, size, scale = preprocess(image)
    out = model({"images": padded[None], "image_size": size[None]}, training=False)
    original = tf.cast(shape[:2], tf.float32)
    boxes = out["boxes"][0] / tf.tile(scale, [2])[None]
    boxes = tf.minimum(tf.maximum(boxes, 0.0), tf.tile(original, [2])[None])
    result = {
        "detection_boxes": boxes,
        "detection_scores": out["scores"][0],
        "detection_classes": tf.cast(out["classes"][0], tf.int32),
        "num_detections": tf.cast(out["num_detections"][0], tf.int32),
    }
    if "masks" in out:
        result["detection_masks"] = tf.cast(out["masks"][0], tf.float32)
    if "keypoints" in out:
        keypoints = tf.cast(out["keypoints"][0], tf.float32)
        xy = keypoints[..., :2] / tf.stack([scale[1], scale[0]])
        result["detection_keypoints"] = tf.concat([xy, keypoints[..., 2:]], axis=-1)
    return result


def _decode(data: tf.Tensor) -> tf.Tensor:
    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    return tf.ensure_shape(image, [None, None, 3])


def build_serving_functions(model, preprocess: Preprocessing, *, paste_masks: bool = False):
    """``(serving_default, serving_bytes)`` tf.functions over ``model`` (see the module docstring)."""
    num = model.max_detections
    probe = model({"images": tf.zeros([1, 64, 64, 3], tf.uint8)}, training=False)
    signature = {
        "detection_boxes": tf.TensorSpec([num, 4], tf.float32),
        "detection_scores": tf.TensorSpec([num], tf.float32),
        "detection_classes": tf.TensorSpec([num], tf.int32),
        "num_detections": tf.TensorSpec([], tf.int32),
    }
    if "masks" in probe:
        mask = int(probe["masks"].shape[-1])
        signature["detection_masks"] = tf.TensorSpec([num, mask, mask], tf.float32)
    if "keypoints" in probe:
        signature["detection_keypoints"] = tf.TensorSpec(
            [num, int(probe["keypoints"].shape[2]), 3], tf.float32
        )
    paste_masks = paste_masks and "detection_masks" in signature

    def run(images):
        return tf.map_fn(lambda im: _detect_one(model, preprocess, im), images, fn_output_signature=signature)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serving_default(images):
        out = run(images)
        if paste_masks:
            shape = tf.shape(images)

            def paste(args):  # one detection at a time: float memory H*W, not N*H*W
                masks, boxes = args
                return tf.map_fn(
                    lambda mb: paste_box_masks(mb[0][None], mb[1][None], (shape[1], shape[2]))[0],
                    (masks, boxes),
                    fn_output_signature=tf.uint8,
                )

            out["detection_masks_image"] = tf.map_fn(
                paste, (out["detection_masks"], out["detection_boxes"]), fn_output_signature=tf.uint8
            )
        return out

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serving_bytes(image_bytes):
        return tf.map_fn(
            lambda data: _detect_one(model, preprocess, _decode(data)),
            image_bytes,
            fn_output_signature=signature,
        )

    return serving_default, serving_bytes


def export_saved_model(
    model,
    out_dir: str | os.PathLike,
    preprocess: Preprocessing,
    label_map: dict,
    *,
    paste_masks: bool = False,
    config: dict | None = None,
    target: str = "any",
    precision: str = "float32",
) -> Path:
    """Write the SavedModel to ``out_dir`` (which must not exist); returns it.

    Args:
        model: a built ``MaskRCNN`` with its trained weights.
        out_dir: e.g. ``models/mrcnn/1`` (TF Serving wants numbered versions under a base path).
        preprocess: the in-graph resize (normally :meth:`Preprocessing.from_pipeline`).
        label_map: written as ``assets/label_map.json`` (``CategoryMap`` content).
        config: the resolved config the model was built from, written as ``assets/config.yaml``.
        target: the ``--target`` it was built for (:mod:`mrcnn_tf.export.targets`), written with
            the TensorFlow/Keras versions as ``assets/export.json``.
        paste_masks: add ``detection_masks_image`` to ``serving_default``.
        precision: the dtype policy ``model`` was built under (``mixed_float16``/``mixed_bfloat16``
            for ``--target gpu``), recorded in ``assets/export.json``; outputs stay float32.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; choose another --version or --out")
    serving_default, serving_bytes = build_serving_functions(model, preprocess, paste_masks=paste_masks)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serving_default)
    archive.add_endpoint("serving_bytes", serving_bytes)
    archive.write_out(str(out_dir), verbose=False)
    record = {"target": target, "precision": precision, "paste_masks": bool(paste_masks)}
    write_export_files(out_dir / "assets", label_map, config, record)
    return out_dir


def write_export_files(folder: Path, label_map: dict, config: dict | None, record: dict) -> None:
    """What goes beside every export: ``label_map.json``, ``config.yaml`` (the resolved config,
    when given) and ``export.json`` (``record`` plus the TensorFlow and Keras versions)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "label_map.json").write_text(json.dumps(label_map, indent=2) + "\n", encoding="utf-8")
    if config is not None:
        from registry.config import dump_config

        (folder / "config.yaml").write_text(dump_config(config), encoding="utf-8")
    record = {**record, "tensorflow": tf.__version__, "keras": keras.__version__}
    (folder / "export.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
