"""Predictions for image files: from an exported SavedModel or from a config and its weights.

:class:`Predictor` runs one image at a time through the same graph that is exported (the
``serving_default`` signature: in-graph resize and padding, boxes in the input image's pixels),
so ``mrcnn-tf predict --saved-model`` and ``--config/--weights`` give the same detections.
:func:`predict_images` writes, for each image, a PNG with the detections drawn, and one
``predictions.json`` in COCO results format (with ``images.json``, the ``images`` and
``categories`` of a COCO file, so ``COCO("images.json").loadRes("predictions.json")`` works).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from registry.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class Predictor:
    """Detections of one uint8 ``[H, W, 3]`` image at a time.

    Calling it returns the model's output names with a batch dimension of 1, as NumPy:
    ``boxes [1, N, 4]`` ``[y1, x1, y2, x2]`` in pixels of the given image, ``scores [1, N]``,
    ``classes [1, N]`` int (1..K), ``num_detections [1]``, ``masks [1, N, M, M]`` box-relative
    probabilities.

    Args:
        serving_fn: a ``serving_default`` function (``images`` uint8 ``[B, H, W, 3]`` -> the
            exported outputs).
        names: class id (1..K) -> name.
        dataset_ids: ``dataset_ids[k - 1]`` is the dataset's category id of class ``k``.
        source: what the predictor was loaded from (for messages).
        skeleton: 0-based keypoint pairs to draw as lines (the label map's keypoint skeleton).
    """

    def __init__(
        self,
        serving_fn: Callable,
        names: Sequence[str],
        dataset_ids: Sequence[int],
        source: str,
        skeleton: Sequence[Sequence[int]] = (),
    ):
        self.serving_fn = serving_fn
        self.names = list(names)
        self.dataset_ids = [int(i) for i in dataset_ids]
        self.source = source
        self.skeleton = [list(pair) for pair in skeleton]

    def name(self, class_id: int) -> str:
        """The class name of a contiguous class id (``class <k>`` beyond the label map)."""
        k = int(class_id)
        return self.names[k - 1] if 1 <= k <= len(self.names) else f"class {k}"

    def categories(self) -> list[dict]:
        """COCO ``categories`` entries (dataset ids and names)."""
        return [{"id": d, "name": n} for d, n in zip(self.dataset_ids, self.names, strict=True)]

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        import tensorflow as tf

        from mrcnn_tf.export.saved_model import MODEL_OUTPUTS

        out = self.serving_fn(images=tf.constant(np.asarray(image, np.uint8)[None]))
        return {MODEL_OUTPUTS[k]: np.asarray(v) for k, v in out.items() if k in MODEL_OUTPUTS}

    @classmethod
    def from_saved_model(cls, path: str | os.PathLike) -> Predictor:
        """Load an export of ``mrcnn-tf export``: a version directory, or a base path (the
        highest numbered version in it is used)."""
        import tensorflow as tf

        from mrcnn_tf.export.saved_model import OUTPUT_KEYS

        path = resolve_saved_model(path)
        loaded = tf.saved_model.load(str(path))
        if "serving_default" not in loaded.signatures:
            raise UserError(f"{path}: the SavedModel has no serving_default signature")
        fn = loaded.signatures["serving_default"]
        missing = set(OUTPUT_KEYS) - set(fn.structured_outputs)
        if not {"detection_masks", "detection_keypoints"} & set(fn.structured_outputs):
            missing.add("detection_masks")
        if missing or "images" not in fn.structured_input_signature[1]:
            raise UserError(
                f"{path}: not a SavedModel of `mrcnn-tf export` (serving_default needs input 'images' "
                f"and outputs {sorted(OUTPUT_KEYS)}; missing {sorted(missing) or ['images']})"
            )
        names, ids, skeleton = _label_map(path / "assets" / "label_map.json")
        predictor = cls(fn, names, ids, str(path), skeleton)
        predictor._keep_alive = loaded  # the signature needs its SavedModel object alive
        return predictor

    @classmethod
    def from_model(cls, model, preprocess, category_map, source: str = "keras model") -> Predictor:
        """Wrap a built Keras ``MaskRCNN`` in the exported serving graph (same outputs)."""
        from mrcnn_tf.export.saved_model import build_serving_functions

        serving_default, _ = build_serving_functions(model, preprocess)
        skeleton = (category_map.keypoints or {}).get("skeleton", [])
        return cls(serving_default, category_map.names, category_map.dataset_ids, source, skeleton)


def resolve_saved_model(path: str | os.PathLike) -> Path:
    """``path`` if it holds ``saved_model.pb``, else its highest numbered version that does."""
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    if path.is_dir():
        versions = sorted(
            (int(p.name), p) for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()
        )
        if versions:
            return versions[-1][1]
    raise UserError(
        f"{path}: no saved_model.pb there nor in a numbered version directory under it; "
        "pass the directory written by `mrcnn-tf export`"
    )


def _label_map(path: Path) -> tuple[list[str], list[int], list]:
    if not path.is_file():  # a foreign export: numbered classes
        return [], [], []
    from mrcnn_tf.data.category_map import CategoryMap

    try:
        category_map = CategoryMap.load(path)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: not a label map written by mrcnn-tf ({exc})") from exc
    skeleton = (category_map.keypoints or {}).get("skeleton", [])
    return list(category_map.names), list(category_map.dataset_ids), skeleton


def find_images(paths: Iterable[str | os.PathLike]) -> list[tuple[Path, str]]:
    """Image files named or found (recursively) in directories: ``[(path, output name), ...]``.

    The output name is the path relative to the directory given (the file name for files given
    directly) with a ``.png`` suffix; names are made unique with ``-2``, ``-3``, ...

    Raises:
        UserError: a path that does not exist, or no image files at all.
    """
    found: list[tuple[Path, str]] = []
    for given in paths:
        given = Path(given)
        if given.is_dir():
            files = sorted(p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            found.extend((p, p.relative_to(given).with_suffix(".png").as_posix()) for p in files)
        elif given.is_file():
            found.append((given, given.with_suffix(".png").name))
        else:
            raise UserError(f"{given}: no such file or directory")
    if not found:
        raise UserError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, paths))}")
    seen: dict[str, int] = {}
    unique = []
    for path, name in found:
        count = seen.get(name, 0) + 1
        seen[name] = count
        unique.append((path, name if count == 1 else f"{name[:-4]}-{count}.png"))
    return unique


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 RGB ``[H, W, 3]`` (EXIF orientation applied, gray/RGBA converted).

    Raises:
        UserError: the file cannot be read as an image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit grayscale: PIL's convert("RGB") clips every value above 255 to white.
                # Keep the top 8 bits, as TensorFlow's decode_png(dtype=uint8) does for training
                # and serving.
                gray = np.asarray(image, dtype=np.uint32)
                array = np.repeat((np.clip(gray, 0, 65535) >> 8).astype(np.uint8)[..., None], 3, axis=-1)
            else:
                array = np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise UserError(f"{path}: cannot read it as an image ({exc})") from exc
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise UserError(f"{path}: the image has no pixels")
    return array


def image_ids_from_coco(path: str | os.PathLike) -> dict[str, int]:
    """``{file_name: image_id}`` of a COCO annotation file (also keyed by base name)."""
    try:
        with open(path, encoding="utf-8") as handle:
            images = json.load(handle)["images"]
        ids = {}
        for image in images:
            ids[str(image["file_name"])] = int(image["id"])
            ids.setdefault(Path(str(image["file_name"])).name, int(image["id"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: cannot read image ids from it as a COCO file ({exc})") from exc
    return ids


def check_outputs(
    images: Sequence[tuple[Path, str]], out_dir: str | os.PathLike, *, overwrite: bool = False
) -> None:
    """Refuse, before any work, an ``out_dir`` where a picture would replace an input or a file
    that ``predict`` did not write.

    Raises:
        UserError: naming the first file that would be replaced.
    """
    out = Path(out_dir)
    inputs = {path.resolve() for path, _ in images}
    ours = overwrite and (out / "predictions.json").is_file()  # an earlier predict wrote this folder
    for path, name in images:
        target = out / name
        if target.resolve() in inputs:
            raise UserError(
                f"--out {out}: the picture of {path} would replace the input image {target}; choose an "
                "--out folder outside the input folders (nothing was written)"
            )
        if target.exists() and not ours:
            raise UserError(
                f"--out {out}: {target} exists and was not written by an earlier `mrcnn-tf predict` there; "
                "choose an empty or new --out folder (nothing was written)"
            )
    for name in ("predictions.json", "images.json"):
        if (out / name).resolve() in inputs:
            raise UserError(f"--out {out}: {name} would replace an input file; choose another --out")


def assign_image_ids(images: Sequence[tuple[Path, str]], image_ids: Mapping[str, int] | None) -> list[int]:
    """The COCO image id of each image: ``image_ids`` by file name, else 1, 2, ...

    Raises:
        UserError: images whose file names the ``--image-ids`` file lacks (the first few named),
            found before any image is predicted.
    """
    if image_ids is None:
        return list(range(1, len(images) + 1))
    ids, missing = [], []
    for path, name in images:
        key = next((k for k in (path.as_posix(), name[:-4] + path.suffix, path.name) if k in image_ids), None)
        if key is None:
            missing.append(str(path))
        else:
            ids.append(image_ids[key])
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise UserError(
            f"{', '.join(missing[:3])}{more}: no image with this file name in the --image-ids COCO file "
            "(matched by path, relative path or file name); nothing was predicted"
        )
    return ids


def _threshold(outputs: Mapping[str, np.ndarray], score_threshold: float) -> dict[str, np.ndarray]:
    """Only the detections with ``score >= score_threshold`` (batch of one)."""
    n = int(outputs["num_detections"][0])
    keep = np.nonzero(outputs["scores"][0, :n] >= score_threshold)[0]
    kept = {k: v[:, keep] for k, v in outputs.items() if k != "num_detections"}
    kept["num_detections"] = np.array([len(keep)])
    return kept


def _draw_and_encode(
    image: np.ndarray,
    outputs: Mapping[str, np.ndarray],
    names,
    mask_threshold: float,
    mask_paste: str,
    skeleton=(),
):
    """The picture of one image's (already thresholded) detections and the RLE of each mask:
    every mask is pasted once, over its box only, then drawn and encoded (memory: a few
    image-sized buffers plus one mask, whatever the number of detections)."""
    from mrcnn_tf.evaluation.coco_metrics import encode_crop
    from mrcnn_tf.visualization import prediction_picture

    height, width = image.shape[:2]
    boxes = np.clip(np.asarray(outputs["boxes"], np.float32), 0, [height, width, height, width])
    segmentations: list[dict] = []
    picture = prediction_picture(
        image,
        {**outputs, "boxes": boxes},
        0,
        names,
        score_threshold=0.0,  # the outputs are thresholded already
        mask_threshold=mask_threshold,
        mask_paste=mask_paste,
        on_mask=lambda crop, y0, x0: segmentations.append(encode_crop(crop, y0, x0, height, width)),
        skeleton=skeleton,
    )
    return picture, segmentations


def predict_images(
    predictor: Predictor,
    images: Sequence[tuple[Path, str]],
    out_dir: str | os.PathLike,
    *,
    score_threshold: float = 0.5,
    image_ids: Mapping[str, int] | None = None,
    mask_threshold: float = 0.5,
    progress: bool = True,
    mask_paste: str = "detectron2",
    shard: tuple[int, int] = (0, 1),
    gather: Callable[[list], list] | None = None,
) -> dict:
    """Predict every image; write PNG pictures, ``predictions.json`` and ``images.json``.

    Args:
        predictor: see :class:`Predictor`.
        images: ``[(path, output name)]`` from :func:`find_images`.
        out_dir: created if needed; files in it are replaced (the CLI asks first).
        score_threshold: detections below it are neither drawn nor written.
        image_ids: ``{file name: COCO image id}`` (e.g. :func:`image_ids_from_coco`); images
            are numbered 1, 2, ... in order without it.
        mask_threshold: pasted masks are binarised at ``>=`` this.
        mask_paste: the paste rule (``evaluation.mask_paste`` of the config).
        progress: show a progress bar.
        shard: ``(k, n)``: predict only the images ``i`` with ``i % n == k`` (one of ``n``
            workers; pictures are written by the worker that predicts them).
        gather: with ``shard``, a collective that returns every worker's list (in worker order)
            given this worker's (:func:`mrcnn_tf.evaluation.distributed.all_gather_json`); the
            JSON files are written where ``shard[0] == 0`` (the chief), in image order.

    Returns:
        ``{"images": n, "detections": d, "skipped": [(path, reason), ...]}`` (over all workers).

    Raises:
        UserError: an image missing from ``image_ids``.
    """
    import keras

    out = Path(out_dir)
    assigned = assign_image_ids(images, image_ids)  # every id before any work
    out.mkdir(parents=True, exist_ok=True)
    index, count = shard
    mine = [i for i in range(len(images)) if i % count == index]
    bar = keras.utils.Progbar(len(mine), unit_name="image") if progress else None
    done = []  # [image index, COCO results, COCO image entry or None, skip reason or None]
    for i in mine:
        done.append(
            [
                i,
                *_predict_one(
                    predictor, images[i], assigned[i], out, score_threshold, mask_threshold, mask_paste
                ),
            ]
        )
        if bar is not None:
            bar.add(1)
    if gather is not None:
        done = sorted((entry for part in gather(done) for entry in part), key=lambda entry: entry[0])
    results = [r for _, found, _, _ in done for r in found]
    coco_images = [entry for _, _, entry, _ in done if entry is not None]
    skipped = [(str(images[i][0]), reason) for i, _, _, reason in done if reason is not None]
    if index == 0:
        categories = predictor.categories() or [
            {"id": k, "name": f"class {k}"} for k in sorted({r["category_id"] for r in results})
        ]
        (out / "predictions.json").write_text(json.dumps(results) + "\n", encoding="utf-8")
        listing = {"images": coco_images, "categories": categories, "annotations": []}
        (out / "images.json").write_text(json.dumps(listing, indent=1) + "\n", encoding="utf-8")
    return {"images": len(coco_images), "detections": len(results), "skipped": skipped}


def _predict_one(predictor, image_file, image_id, out, score_threshold, mask_threshold, mask_paste):
    """One image: its picture written; ``(COCO results, COCO image entry, None)``, or ``([], None,
    reason)`` when it cannot be read or predicted."""
    from PIL import Image

    from mrcnn_tf.evaluation.coco_metrics import detections_to_coco

    path, name = image_file
    try:
        image = read_image(path)
        outputs = _threshold(predictor(image), score_threshold)
    except Exception as exc:  # noqa: BLE001 - one bad image is reported and skipped, not fatal
        reason = (
            str(exc)
            if isinstance(exc, UserError)
            else f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        )
        return [], None, reason
    height, width = image.shape[:2]
    picture, segmentations = _draw_and_encode(
        image, outputs, predictor.name, mask_threshold, mask_paste, getattr(predictor, "skeleton", ())
    )
    target = out / name
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(target)
    batch = {"image_id": [image_id], "original_size": [[height, width]], "image_scale": [[1.0, 1.0]]}
    to_dataset = [0, *predictor.dataset_ids] if predictor.dataset_ids else None
    ids = to_dataset or list(range(int(outputs["classes"].max(initial=0)) + 1))
    detections = detections_to_coco({k: v for k, v in outputs.items() if k != "masks"}, batch, ids)
    if segmentations:  # the masks pasted for the picture, encoded once
        for detection, segmentation in zip(detections, segmentations, strict=True):
            detection["segmentation"] = segmentation
    entry = {"id": image_id, "file_name": str(path), "height": height, "width": width}
    return detections, entry, None
