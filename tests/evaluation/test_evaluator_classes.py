"""The evaluator maps the model's classes to category ids with the model's own label map when
it has one (a converted COCO model: class k = COCO id k, 90 classes, whatever the dataset lists;
a run evaluated on another export of its data, categories in another order)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from coco_fixtures import box_ann, image, write_coco

from mrcnn_tf.data.category_map import CategoryMap
from mrcnn_tf.data.coco import CocoDataset
from mrcnn_tf.data.pipeline import InputPipeline
from mrcnn_tf.evaluation.evaluator import CocoEvaluator


class _OneBox:
    """A stand-in detector: one detection of class ``cls`` on the box every image has."""

    def __init__(self, cls: int):
        self.cls = cls

    def __call__(self, inputs, training=False):
        b = tf.shape(inputs["images"])[0]
        box = tf.constant([[[10.0, 10.0, 30.0, 40.0]]])  # [y1, x1, y2, x2]: the ground truth
        return {
            "boxes": tf.tile(box, [b, 1, 1]),
            "scores": tf.ones([b, 1]),
            "classes": tf.fill([b, 1], self.cls),
            "num_detections": tf.fill([b], 1),
            "masks": tf.ones([b, 1, 28, 28]),
        }


@pytest.fixture
def dataset(tmp_path):
    categories = [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}]  # not sorted by id
    anns = [box_ann(k + 1, k + 1, [10, 10, 30, 20], category_id=3) for k in range(2)]
    path, images = write_coco(tmp_path, [image(1, 64, 64), image(2, 64, 64)], anns, categories)
    return CocoDataset(path, images)


def test_the_models_label_map_decides_the_category_ids(dataset):
    pipeline = InputPipeline(batch_size=2, min_size=64, max_size=64)
    coco_like = CategoryMap(tuple(range(1, 91)), tuple(f"c{i}" for i in range(1, 91)))  # class k = id k
    result = CocoEvaluator(dataset, pipeline, category_map=coco_like, iou_types=("bbox",)).evaluate(
        _OneBox(3)
    )
    assert result["bbox"]["AP"] == pytest.approx(1.0)
    # By the dataset's own classes (ids sorted: class 1 = person, class 2 = car), "car" is class 2,
    # which the COCO-like map reads as category id 2: no such object.
    assert dataset.category_map.dataset_ids == (1, 3)
    by_dataset = CocoEvaluator(dataset, pipeline, iou_types=("bbox",)).evaluate(_OneBox(2))
    assert by_dataset["bbox"]["AP"] == pytest.approx(1.0)
    wrong = CocoEvaluator(dataset, pipeline, category_map=coco_like, iou_types=("bbox",)).evaluate(_OneBox(2))
    assert wrong["bbox"]["AP"] == pytest.approx(0.0)
    assert np.isfinite(wrong["bbox"]["AP50"])
