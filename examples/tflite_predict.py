"""Run a LiteRT model of ``mrcnn-tf export --format tflite`` with no TensorFlow and no mrcnn_tf.

Needs only ``pip install ai-edge-litert numpy pillow``::

    python examples/tflite_predict.py exported/model.tflite photo.jpg --out photo-detections.png

Prints one JSON object per detection (class name, score, box ``[x, y, width, height]`` in pixels
of the photo, mask area in pixels) and draws boxes and masks into ``--out``. The label map
(``label_map.json``) is read from the model's folder when it is there.

The model's input is uint8 ``[1, S, S, 3]``: the photo resized so that its longer side is ``S``,
at the top-left, zeros elsewhere, and ``image_size`` int32 ``[1, 2]``, the resized photo's
``(height, width)``. Its boxes are ``[y1, x1, y2, x2]`` in pixels of that input (divide by the
resize scale) and its masks are ``M × M`` probabilities over each box.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image, ImageDraw, ImageOps

COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180)]


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int], float]:
    """``image`` resized (bilinear) so that its longer side is ``size``, top-left in zeros."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new = (max(1, min(size, round(height * scale))), max(1, min(size, round(width * scale))))
    if new != (height, width):
        image = np.asarray(Image.fromarray(image).resize((new[1], new[0]), Image.BILINEAR))
    out = np.zeros([size, size, 3], np.uint8)
    out[: new[0], : new[1]] = image
    return out, new, scale


def paste(mask: np.ndarray, box: np.ndarray, height: int, width: int) -> np.ndarray:
    """An ``M × M`` box-relative probability map -> a bool ``[height, width]`` mask (at 0.5)."""
    y1, x1, y2, x2 = box
    top, left = int(np.floor(y1)), int(np.floor(x1))
    bottom, right = min(height, int(np.ceil(y2))), min(width, int(np.ceil(x2)))
    full = np.zeros([height, width], bool)
    if bottom <= top or right <= left:
        return full
    resized = Image.fromarray(mask.astype(np.float32), mode="F").resize(
        (right - left, bottom - top), Image.BILINEAR
    )
    full[top:bottom, left:right] = np.asarray(resized) >= 0.5
    return full


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model.tflite (or its folder)")
    parser.add_argument("image", help="a photo (JPEG, PNG, ...)")
    parser.add_argument("--out", help="write the photo with the detections drawn here (PNG)")
    parser.add_argument("--score-threshold", type=float, default=0.5)
    args = parser.parse_args(argv)

    model = Path(args.model)
    model = model / "model.tflite" if model.is_dir() else model
    labels = model.parent / "label_map.json"
    categories = json.loads(labels.read_text())["categories"] if labels.is_file() else []
    names = {int(c["class_id"]): str(c["name"]) for c in categories}
    interpreter = Interpreter(model_path=str(model), num_threads=os.cpu_count())
    runner = interpreter.get_signature_runner("serving_default")
    size = int(runner.get_input_details()["images"]["shape"][1])

    with Image.open(args.image) as opened:
        photo = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
    height, width = photo.shape[:2]
    padded, resized, scale = letterbox(photo, size)
    out = runner(images=padded[None], image_size=np.array([resized], np.int32))

    picture = Image.fromarray(photo)
    overlay = np.asarray(picture).astype(np.float32)
    found = []
    for i in range(int(out["num_detections"][0])):
        score = float(out["detection_scores"][0, i])
        if score < args.score_threshold:
            continue
        box = np.clip(out["detection_boxes"][0, i] / scale, 0, [height, width, height, width])
        k = int(out["detection_classes"][0, i])
        mask = paste(out["detection_masks"][0, i], box, height, width)
        colour = COLOURS[len(found) % len(COLOURS)]
        overlay[mask] = 0.5 * overlay[mask] + 0.5 * np.array(colour, np.float32)
        y1, x1, y2, x2 = (float(v) for v in box)
        name = names.get(k, f"class {k}")
        found.append((colour, [x1, y1, x2, y2], f"{name} {score:.2f}"))
        record = {"class": k, "name": name, "score": round(score, 5)}
        record.update(box=[round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)], mask_area=int(mask.sum()))
        print(json.dumps(record))
    if args.out:
        picture = Image.fromarray(overlay.astype(np.uint8))
        draw = ImageDraw.Draw(picture)
        for colour, (x1, y1, x2, y2), label in found:
            draw.rectangle([x1, y1, max(x1, x2), max(y1, y2)], outline=colour, width=2)
            draw.text((x1 + 2, y1 + 1), label, fill=colour)
        picture.save(args.out)
        print(f"wrote {args.out} ({len(found)} detections)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
