"""The evaluator scores against exactly what the checks approved, and datasets that would
silently mis-train or mis-score are reported (and refused by ``strict``)."""

from __future__ import annotations

import pytest
from coco_fixtures import box_ann, image, write_coco

from mrcnn_tf.data.coco import CocoDataset
from mrcnn_tf.data.report import DatasetError
from mrcnn_tf.evaluation.coco_metrics import coco_metrics


def _perfect_results(annotations):
    """The ground truth itself as detections (score 1): AP must be 1."""
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in annotations
    ]


def test_duplicate_annotation_ids_are_reported_and_perfect_detections_score_ap_1(tmp_path):
    anns = [box_ann(1, 1, [2, 2, 10, 10]), box_ann(1, 1, [20, 5, 15, 12]), box_ann(2, 2, [5, 5, 20, 20])]
    path, images = write_coco(tmp_path, [image(1), image(2)], anns)
    dataset = CocoDataset(path, images)
    assert ("duplicate_annotation_id", "fixed") in dataset.report.by_kind()
    gt = dataset.coco_dict()
    ids = [a["id"] for a in gt["annotations"]]
    assert len(set(ids)) == 3
    metrics, _ = coco_metrics(gt, _perfect_results(anns), ("bbox",))
    assert metrics["bbox"]["AP"] == pytest.approx(1.0)
    # What pycocotools makes of the raw file: the repeated id hides an object.
    raw = {**gt, "annotations": [{**a, "area": a["bbox"][2] * a["bbox"][3], "iscrowd": 0} for a in anns]}
    broken, _ = coco_metrics(raw, _perfect_results(anns), ("bbox",))
    assert broken["bbox"]["AP"] < 0.99
    with pytest.raises(DatasetError, match="duplicate_annotation_id"):
        CocoDataset(path, images, strict=True)


def test_the_evaluator_gets_the_cleaned_polygons_boxes_and_filled_fields(tmp_path):
    ann = box_ann(5, 1, [2, 2, 10, 10])
    ann["segmentation"].append([1, 1, 2, 2])  # a polygon that the checks leave out
    ann["bbox"] = [2, 2, 60, 10]  # reaches outside the 50-pixel-wide image: clipped
    del ann["area"], ann["iscrowd"]
    path, images = write_coco(tmp_path, [image(1)], [ann])
    [gt] = CocoDataset(path, images).coco_dict()["annotations"]
    assert gt["segmentation"] == [[2.0, 2.0, 12.0, 2.0, 12.0, 12.0, 2.0, 12.0]]
    assert gt["bbox"] == [2.0, 2.0, 48.0, 10.0]
    assert gt["iscrowd"] == 0 and gt["area"] == pytest.approx(100.0, abs=12)  # the mask's pixels


def test_a_dataset_of_crowd_regions_only_is_refused_before_training(tmp_path):
    anns = [box_ann(1, 1, [2, 2, 10, 10], iscrowd=1), box_ann(2, 1, [20, 5, 15, 12], iscrowd=1)]
    path, images = write_coco(tmp_path, [image(1)], anns)
    dataset = CocoDataset(path, images)
    [problem] = [p for p in dataset.report.problems if p.kind == "no_trainable_instances"]
    assert "2 iscrowd region(s)" in problem.message and "set it to 0" in problem.message
    with pytest.raises(DatasetError, match="no_trainable_instances"):
        CocoDataset(path, images, strict=True)


def test_a_labelme_background_category_0_is_not_a_class(tmp_path):
    categories = [{"id": 0, "name": "_background_"}, {"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    anns = [box_ann(1, 1, [2, 2, 10, 10], category_id=1), box_ann(2, 1, [20, 5, 15, 12], category_id=2)]
    path, images = write_coco(tmp_path, [image(1)], anns, categories)
    dataset = CocoDataset(path, images)
    assert dataset.num_classes == 2 and list(dataset.category_map.names) == ["cat", "dog"]
    assert ("background_category", "dropped") in dataset.report.by_kind()
    assert [c["id"] for c in dataset.coco_dict()["categories"]] == [1, 2]


def test_training_on_crowd_regions_only_stops_before_step_1(tmp_path):
    from training_fixtures import tiny_config

    from mrcnn_tf.training.trainer import train
    from registry.errors import UserError

    anns = [box_ann(1, 1, [2, 2, 30, 30], iscrowd=1)]
    path, images = write_coco(tmp_path, [image(1, 64, 64)], anns)
    coco = {"type": "CocoDataset", "annotations": str(path), "images": str(images)}
    cfg = tiny_config("data.val=null", "data.num_classes=1")
    cfg["data"]["train"] = coco
    with pytest.raises(
        UserError, match=r"no image has an instance to train on .* set it to 0; nothing to train on"
    ):
        train(cfg, tmp_path / "run", verbose=0)
    assert not list((tmp_path / "run").glob("checkpoints/*"))


def test_missing_area_of_rle_masks_is_their_pixel_count(tmp_path):
    import numpy as np
    import pycocotools.mask as mask_utils

    mask = np.zeros((40, 50), np.uint8)
    mask[5:15, 10:30] = 1  # 200 pixels
    compressed = mask_utils.encode(np.asfortranarray(mask))
    anns = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "bbox": [10, 5, 20, 10],
            "iscrowd": 0,
            "segmentation": {"size": [40, 50], "counts": compressed["counts"].decode()},
        },
        {
            "id": 2,
            "image_id": 1,
            "category_id": 1,
            "bbox": [10, 5, 20, 10],
            "iscrowd": 1,
            "segmentation": {"size": [40, 50], "counts": [260, 10, 30, 10, 1690]},
        },
    ]
    path, images = write_coco(tmp_path, [image(1)], anns)
    areas = [a["area"] for a in CocoDataset(path, images).coco_dict()["annotations"]]
    assert areas == [200.0, 20.0]


def test_an_rle_without_a_bbox_gets_its_box_and_garbage_rle_is_a_finding_not_a_traceback(tmp_path):
    import numpy as np
    import pycocotools.mask as mask_utils

    mask = np.zeros((40, 50), np.uint8)
    mask[5:15, 10:30] = 1
    good = {"size": [40, 50], "counts": mask_utils.encode(np.asfortranarray(mask))["counts"].decode()}
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": good, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": {"size": [40, 50], "counts": "garbage!!"}},
    ]
    path, images = write_coco(tmp_path, [image(1)], anns)
    dataset = CocoDataset(path, images)
    [kept] = dataset.records[0].instances
    assert kept.box == [5.0, 10.0, 15.0, 30.0]  # [y1, x1, y2, x2], from the mask
    assert ("bad_rle", "dropped") in dataset.report.by_kind()
    assert ("box_from_mask", "fixed") in dataset.report.by_kind()


def test_ids_that_are_lists_or_0_are_reported_not_tracebacks_and_id_0_scores_right(tmp_path):
    anns = [
        box_ann(0, 1, [2, 2, 10, 10]),  # id 0: pycocotools reads it as "no match"
        box_ann(2, [1], [20, 5, 15, 12]),  # a list where an image id belongs
        box_ann(3, 1, [5, 20, 20, 15], category_id={"id": 1}),
        box_ann(4, 1, [30, 20, 15, 15]),
    ]
    path, images = write_coco(tmp_path, [image(1)], anns)
    dataset = CocoDataset(path, images)
    kinds = dataset.report.by_kind()
    expected = {("bad_annotation_id", "fixed"), ("unknown_image", "dropped"), ("unknown_category", "dropped")}
    assert expected <= set(kinds), kinds
    gt = dataset.coco_dict()
    assert 0 not in [a["id"] for a in gt["annotations"]] and len(gt["annotations"]) == 2
    kept = [anns[0], anns[3]]
    metrics, _ = coco_metrics(gt, _perfect_results(kept), ("bbox",))
    assert metrics["bbox"]["AP"] == pytest.approx(1.0)
    raw = {**gt, "annotations": [{**a, "area": a["bbox"][2] * a["bbox"][3], "iscrowd": 0} for a in kept]}
    broken, _ = coco_metrics(raw, _perfect_results(kept), ("bbox",))
    assert broken["bbox"]["AP"] < 0.99  # what the raw file would have scored
