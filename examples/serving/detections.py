"""Reading served detections, shared by the REST and gRPC clients of this folder."""

from __future__ import annotations

import json
from collections.abc import Mapping


def read_files(paths) -> list[bytes]:
    """The bytes of each file (encoded images are sent as they are)."""
    data = []
    for path in paths:
        with open(path, "rb") as handle:
            data.append(handle.read())
    return data


def load_names(path: str | None) -> dict[int, str]:
    """``{class id: name}`` from an export's ``assets/label_map.json`` (empty without one)."""
    if not path:
        return {}
    with open(path, encoding="utf-8") as handle:
        return {int(c["class_id"]): str(c["name"]) for c in json.load(handle)["categories"]}


def describe(prediction: Mapping, names: Mapping[int, str], score_threshold: float = 0.5) -> list[str]:
    """One line per detection of one image: class name, score and ``[x1, y1, x2, y2]`` pixels.

    ``prediction`` holds one image's outputs (lists or arrays): ``num_detections``,
    ``detection_scores [N]``, ``detection_boxes [N, 4]`` (``[y1, x1, y2, x2]``),
    ``detection_classes [N]``.
    """
    lines = []
    for i in range(int(prediction["num_detections"])):
        score = float(prediction["detection_scores"][i])
        if score < score_threshold:
            continue
        y1, x1, y2, x2 = (float(v) for v in prediction["detection_boxes"][i])
        class_id = int(prediction["detection_classes"][i])
        name = names.get(class_id, f"class {class_id}")
        lines.append(f"{name:<16} {score:.3f}  box [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}]")
    return lines


def print_detections(paths, predictions, names: Mapping[int, str], score_threshold: float) -> None:
    """Print each image's detections under its path."""
    for path, prediction in zip(paths, predictions, strict=True):
        lines = describe(prediction, names, score_threshold)
        print(f"{path}: {len(lines)} detections")
        for line in lines:
            print("  " + line)
