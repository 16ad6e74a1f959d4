"""Keypoints through the COCO reader, its checks, and the input pipeline (resize, flip, crop)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mrcnn_tf.data import transforms as T
from mrcnn_tf.data.coco import CocoDataset
from mrcnn_tf.data.pipeline import InputPipeline
from mrcnn_tf.data.report import DatasetError

NAMES = ["nose", "left_hand", "right_hand"]


def write_coco(tmp_path, annotations, categories=None):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((60, 80, 3), 90, np.uint8)).save(images / "a.png")
    cats = categories or [
        {"id": 1, "name": "person", "keypoints": NAMES, "skeleton": [[1, 2], [1, 3]]},
        {"id": 5, "name": "dog"},
    ]
    data = {"images": [{"id": 3, "file_name": "a.png", "width": 80, "height": 60}], "categories": cats}
    base = {"image_id": 3, "category_id": 1, "iscrowd": 0}
    data["annotations"] = [{**base, "id": i + 1, **a} for i, a in enumerate(annotations)]
    path = tmp_path / "kp.json"
    path.write_text(json.dumps(data))
    return path, images


def box_ann(x, y, w, h, **extra):
    return {"bbox": [x, y, w, h], "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]], **extra}


def test_reader_keeps_checked_keypoints_in_continuous_pixels_and_reports_bad_ones(tmp_path):
    anns = [
        box_ann(10, 10, 30, 40, keypoints=[20, 15, 2, 35, 30, 1, 0, 0, 0], num_keypoints=2),
        box_ann(10, 10, 30, 40, keypoints=[20, 15, 2, 35, 30, 1]),  # 6 values for 3 keypoints
        box_ann(
            10, 10, 30, 40, keypoints=[20, 15, 3, 95, 30, 2, 45, 20, 2]
        ),  # v=3, outside image, outside box
        box_ann(50, 5, 20, 20, category_id=5),  # a category without keypoints
    ]
    path, images = write_coco(tmp_path, anns)
    ds = CocoDataset(path, images)
    assert ds.num_keypoints == 3 and ds.keypoints.names == tuple(NAMES)
    assert ds.keypoints.skeleton == ((0, 1), (0, 2)) and ds.keypoints.flip_map == (0, 2, 1)
    assert ds.keypoints.sigma_source == "default" and ds.keypoints.sigmas == (0.05,) * 3
    kinds = sorted((p.kind, p.action, p.annotation_id) for p in ds.report.problems)
    assert kinds == [
        ("bad_keypoint_visibility", "fixed", 3),
        ("bad_keypoints", "fixed", 2),
        ("keypoint_outside_box", "kept", 3),
        ("keypoint_outside_image", "fixed", 3),
    ]
    example = ds.load_example(0, mask_size=8)
    want = np.array(
        [
            [[20.5, 15.5, 2], [35.5, 30.5, 1], [0, 0, 0]],
            [[0, 0, 0]] * 3,
            [[0, 0, 0], [0, 0, 0], [45.5, 20.5, 2]],
            [[0, 0, 0]] * 3,
        ],
        np.float32,
    )
    np.testing.assert_array_equal(example["keypoints"], want)
    gt = {a["id"]: a for a in ds.coco_dict()["annotations"]}
    assert gt[1]["keypoints"] == [20.0, 15.0, 2, 35.0, 30.0, 1, 0, 0, 0] and gt[1]["num_keypoints"] == 2
    assert gt[3]["keypoints"] == [0, 0, 0, 0, 0, 0, 45.0, 20.0, 2] and gt[3]["num_keypoints"] == 1
    assert gt[4]["num_keypoints"] == 0
    assert ds.category_map.keypoints["skeleton"] == [[0, 1], [0, 2]]
    with pytest.raises(DatasetError, match="keypoint_outside_box"):
        CocoDataset(path, images, strict=True)


def test_schema_errors_name_the_file_and_the_fix(tmp_path):
    cats = [
        {"id": 1, "name": "a", "keypoints": ["x", "y"], "skeleton": [[1, 3]]},
    ]
    path, images = write_coco(tmp_path, [box_ann(1, 1, 5, 5)], cats)
    with pytest.raises(DatasetError, match=r"kp\.json: category 1 'skeleton' entry \[1, 3\].*1\.\.2"):
        CocoDataset(path, images)
    cats = [{"id": 1, "name": "a", "keypoints": ["x", "y"]}]
    (tmp_path / "kp.json").write_text(
        json.dumps({**json.loads(path.read_text()), "categories": cats}), encoding="utf-8"
    )
    with pytest.raises(DatasetError, match="keypoint_flip_pairs: keypoint flip pair names 'z'"):
        CocoDataset(path, images, keypoint_flip_pairs=[["x", "z"]])
    with pytest.raises(DatasetError, match="keypoint sigmas need 2 positive numbers"):
        CocoDataset(path, images, keypoint_sigmas=[0.1])
    ds = CocoDataset(path, images, keypoint_flip_pairs=[["x", "y"]], keypoint_sigmas=[0.1, 0.2])
    assert ds.keypoints.flip_map == (1, 0) and ds.keypoints.sigma_source == "config"


def example_with_keypoints():
    kps = np.array(
        [[[20.5, 15.5, 2], [35.5, 30.5, 1], [12.25, 40.0, 2]], [[0, 0, 0], [70.0, 50.0, 2], [5, 5, 0]]]
    )
    return {
        "image": tf.constant(np.random.default_rng(0).integers(0, 255, (60, 80, 3)), tf.uint8),
        "image_id": tf.constant(3, tf.int64),
        "boxes": tf.constant([[10, 10, 50, 40], [40, 60, 58, 75]], tf.float32),
        "classes": tf.constant([1, 1], tf.int32),
        "masks": tf.ones([2, 8, 8], tf.uint8),
        "keypoints": tf.constant(kps, tf.float32),
    }, kps


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_pipeline_resizes_and_flips_keypoints_with_the_flip_map(flip):
    example, kps = example_with_keypoints()
    pipeline = InputPipeline(min_size=120, max_size=1000, flip_prob=flip, max_instances=4, mask_size=8)
    out = pipeline.transform(example, tf.constant([1, 2]), training=True, keypoint_flip=[0, 2, 1])
    got = out["gt_keypoints"].numpy()
    assert got.shape == (4, 3, 3)
    # shortest edge 60 -> 120: x2; a flip mirrors x in the 160-wide image and swaps the hands
    want = kps * [2.0, 2.0, 1.0]
    if flip:
        want[..., 0] = np.where(want[..., 2] > 0, 160 - want[..., 0], want[..., 0])
        want = want[:, [0, 2, 1]]
    # instances are shuffled when padded: match by box
    boxes = out["gt_boxes"].numpy()
    for g, box in enumerate(np.array([[10, 10, 50, 40], [40, 60, 58, 75]], np.float64) * 2):
        if flip:
            box = [box[0], 160 - box[3], box[2], 160 - box[1]]
        row = int(np.argmin(np.abs(boxes - box).sum(1)))
        np.testing.assert_allclose(got[row], want[g], atol=1e-4)
    padding = out["gt_classes"].numpy() == 0
    assert padding.sum() == 2 and (got[padding] == 0).all()


def test_crop_makes_keypoints_outside_the_window_unlabelled():
    example, kps = example_with_keypoints()
    instances = {
        "boxes": example["boxes"],
        "mask_boxes": example["boxes"],
        "classes": example["classes"],
        "masks": example["masks"],
        "keypoints": example["keypoints"],
    }
    cropped = T.crop_instances(instances, tf.constant([10, 15]), tf.constant([40, 50]))
    got = cropped["keypoints"].numpy()
    want = []
    for inst in kps:
        rows = []
        for x, y, v in inst:
            x, y = x - 15, y - 10
            inside = v > 0 and 0 <= x <= 50 and 0 <= y <= 40
            rows.append([x, y, v] if inside else [0, 0, 0])
        want.append(rows)
    np.testing.assert_allclose(got, np.array(want, np.float32)[: len(got)], atol=1e-6)
    assert got[0, 2].tolist() == [0, 0, 0] and got[0, 0].tolist() == [5.5, 5.5, 2]


def test_synthetic_keypoint_dataset_is_a_clean_coco_keypoint_file(tmp_path):
    from mrcnn_tf.data.synthetic_keypoints import KEYPOINT_NAMES, SyntheticKeypointDataset

    ds = SyntheticKeypointDataset(num_images=6, root=tmp_path)  # strict: no findings at all
    assert ds.keypoints.names == KEYPOINT_NAMES
    assert ds.keypoints.flip_map == (0, 1, 3, 2, 4, 6, 5, 8, 7)
    assert ds.keypoints.sigma_source == "dataset"
    example = ds.load_example(0, mask_size=8)
    kp = example["keypoints"]
    assert kp.shape[1:] == (9, 3) and set(np.unique(kp[..., 2])) <= {0.0, 1.0, 2.0}
    boxes = example["boxes"]
    labelled = kp[..., 2] > 0
    x, y = kp[..., 0], kp[..., 1]
    inside = (
        (x >= boxes[:, None, 1])
        & (x <= boxes[:, None, 3])
        & (y >= boxes[:, None, 0])
        & (y <= boxes[:, None, 2])
    )
    assert labelled.sum() > 0 and inside[labelled].all()


def test_data_check_reports_keypoint_findings_and_data_show_draws_the_skeleton(tmp_path, capsys):
    from mrcnn_tf.cli import main
    from mrcnn_tf.data.synthetic_keypoints import SyntheticKeypointDataset

    anns = [box_ann(10, 10, 30, 40, keypoints=[20, 15, 2, 35, 30, 5, 95, 20, 2])]
    path, images = write_coco(tmp_path, anns)
    assert main(["data", "check", "--annotations", str(path), "--images", str(images)]) == 0
    out = capsys.readouterr().out
    assert "bad_keypoint_visibility (fixed)" in out and "keypoint_outside_image (fixed)" in out
    assert "annotation 1, image 3" in out

    root = tmp_path / "kp"
    dataset = SyntheticKeypointDataset(num_images=2, root=root)
    argv = [
        "data", "show", "--config", "keypoint_rcnn_r18_fpn_synthetic", "--out", str(tmp_path / "show"),
        "--num", "1", "--no-augment", "--set", f"data.train.root={root}", "data.train.num_images=2",
    ]  # fmt: skip
    assert main(argv) == 0
    from mrcnn_tf.visualization import instance_colours

    picture = np.asarray(Image.open(tmp_path / "show" / "sample_000.png"))
    example = dataset.load_example(0, 8)
    colours = {tuple(int(c) for c in colour) for colour in instance_colours(len(example["boxes"]))}
    labelled = example["keypoints"][example["keypoints"][..., 2] > 0]
    assert len(labelled) > 3
    # a dot in the instance's own colour (masks only blend it in) on the labelled keypoints
    drawn = [tuple(int(c) for c in picture[int(y), int(x)]) in colours for x, y, _ in labelled]
    assert np.mean(drawn) > 0.8, drawn


def test_tfrecord_conversion_refuses_keypoints_instead_of_dropping_them(tmp_path):
    from mrcnn_tf.data.tfrecord import write_tfrecords

    path, images = write_coco(tmp_path, [box_ann(10, 10, 30, 40, keypoints=[20, 15, 2, 35, 30, 1, 0, 0, 0])])
    with pytest.raises(
        DatasetError, match=r"kp\.json: its instances have keypoints \(3 each\).*Nothing was written"
    ):
        write_tfrecords(CocoDataset(path, images), tmp_path / "shards" / "r", num_shards=2)
    assert not (tmp_path / "shards").exists() or not any((tmp_path / "shards").iterdir())
