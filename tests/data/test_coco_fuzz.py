"""Fuzzing the COCO reader: random corruptions of a valid annotations file (wrong types,
missing keys, out-of-range numbers, duplicated entries) must either be refused with our
one-line :class:`DatasetError` or yield a dataset whose ground truth pycocotools evaluates
without error — and, scored against itself, to AP 1 (a mis-keyed or mangled ground truth
scores less). Never a traceback from deep inside, never a silent acceptance of something
evaluation would reject.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from coco_fixtures import box_ann, image, write_coco

from mrcnn_tf.data.coco import CocoDataset
from mrcnn_tf.data.report import DatasetError
from mrcnn_tf.evaluation.coco_metrics import coco_metrics

#: Values that a corruption puts where a field was.
BAD_VALUES = [
    None, "abc", "", "12", -1, 0, 10**12, 1.5, -3.25, True, [], [1], [1, 2, 3], {}, {"a": 1},
    [[1, 2]], [[]], float("nan"), float("inf"), [None, None, None, None], ["1", "2", "3", "4"],
]  # fmt: skip


def _valid_file() -> dict:
    rle = mask_utils.encode(np.asfortranarray(np.pad(np.ones((8, 9), np.uint8), ((5, 27), (12, 29)))))
    annotations = [
        box_ann(1, 1, [2, 2, 10, 10]),
        box_ann(2, 1, [20, 5, 15, 12], category_id=2),
        box_ann(3, 2, [5, 5, 20, 20]),
        {
            "id": 4, "image_id": 2, "category_id": 2, "iscrowd": 0, "area": 72.0,
            "segmentation": {"size": [40, 50], "counts": rle["counts"].decode()},
            "bbox": [12.0, 5.0, 9.0, 8.0],
        },
        box_ann(5, 3, [30, 10, 12, 25], iscrowd=1),
        box_ann(6, 3, [3, 4, 14, 9]),
    ]  # fmt: skip
    images = [image(1, write=False), image(2, write=False), image(3, write=False)]
    categories = [{"id": 1, "name": "thing"}, {"id": 2, "name": "other", "supercategory": "x"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def _paths(node, prefix=()):
    """Every (path, value) below ``node``: dict keys and list indices."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield (*prefix, key), value
        yield from _paths(value, (*prefix, key))


def _corrupt(data: dict, rng: np.random.Generator) -> tuple[dict, str]:
    """One to three random corruptions of ``data``; returns the new data and what was done."""
    data = copy.deepcopy(data)
    done = []
    for _ in range(int(rng.integers(1, 4))):
        paths = list(_paths(data))
        path, _ = paths[int(rng.integers(len(paths)))]
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = rng.choice(["replace", "replace", "replace", "delete", "duplicate", "scale"])
        if action == "delete":
            del parent[key]
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif action == "scale" and type(parent[key]) in (int, float):
            parent[key] = parent[key] * float(rng.choice([-1, 0, 100, 1e-9]))
        else:
            action = "replace"
            parent[key] = copy.deepcopy(BAD_VALUES[int(rng.integers(len(BAD_VALUES)))])
        done.append(f"{action} {'/'.join(map(str, path))}")
    return data, "; ".join(done)


def _perfect_results(gt: dict) -> list[dict]:
    """Every non-crowd ground-truth object as a detection with score 1 (box and RLE mask)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = copy.deepcopy(gt)
    coco.createIndex()
    results = []
    for ann in gt["annotations"]:
        if ann["iscrowd"]:
            continue
        rle = coco.annToRLE(ann)
        rle = {"size": list(rle["size"]), "counts": rle["counts"]}
        entry = {"image_id": ann["image_id"], "category_id": ann["category_id"], "score": 1.0}
        results.append({**entry, "bbox": ann["bbox"], "segmentation": rle})
    return results


def _check_ground_truth(gt: dict, what: str) -> None:
    """What pycocotools relies on: unique integer ids, finite boxes inside their image, known
    categories and images, an area and an iscrowd flag on every annotation."""
    images = {i["id"]: i for i in gt["images"]}
    categories = {c["id"] for c in gt["categories"]}
    ids = [a["id"] for a in gt["annotations"]]
    assert len(set(ids)) == len(ids), what
    for ann in gt["annotations"]:
        assert isinstance(ann["id"], int) and ann["id"] != 0, what
        assert ann["image_id"] in images and ann["category_id"] in categories, what
        img = images[ann["image_id"]]
        assert ann["iscrowd"] in (0, 1) and 0 < ann["area"] <= img["width"] * img["height"], what
        x, y, w, h = ann["bbox"]
        assert all(math.isfinite(v) for v in (x, y, w, h)) and w > 0 and h > 0, what
        assert x >= 0 and y >= 0 and x + w <= img["width"] + 1e-6 and y + h <= img["height"] + 1e-6, what


def test_random_corruptions_are_refused_in_one_line_or_evaluate_cleanly(tmp_path):
    valid = _valid_file()
    base, images_dir = write_coco(tmp_path, [image(k) for k in (1, 2, 3)], [])
    rng = np.random.default_rng(1000)
    outcomes = {"refused": 0, "accepted": 0}
    for case in range(240):
        data, what = _corrupt(valid, rng)
        what = f"case {case}: {what}"
        path = tmp_path / f"fuzz_{case}.json"
        path.write_text(json.dumps(data))
        try:
            dataset = CocoDataset(path, images_dir)
        except DatasetError as exc:
            message = str(exc)
            assert len(message.strip().splitlines()) == 1 and str(path) in message, f"{what}: {message}"
            outcomes["refused"] += 1
            continue
        outcomes["accepted"] += 1
        gt = dataset.coco_dict()
        _check_ground_truth(gt, what)
        results = _perfect_results(gt)
        if not results:
            continue
        metrics, _ = coco_metrics(gt, results, ("bbox", "segm"))
        for iou_type in ("bbox", "segm"):
            assert metrics[iou_type]["AP"] == pytest.approx(1.0), f"{what}: {iou_type} {metrics[iou_type]}"
    # The generator exercises both sides.
    assert outcomes["refused"] > 0 and outcomes["accepted"] > 0, outcomes
    assert base.exists()
