"""TFRecords: a converted dataset reads back equal to the original, image for image, mask for mask."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import tensorflow as tf
from coco_fixtures import box_ann, write_solid_shapes
from PIL import Image

from mrcnn_tf.data.coco import CocoDataset
from mrcnn_tf.data.images import EXIF_ORIENTATION, load_rgb
from mrcnn_tf.data.pipeline import InputPipeline
from mrcnn_tf.data.report import DatasetError
from mrcnn_tf.data.tfrecord import TFRecordDataset, parse_example, write_tfrecords


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """The solid shapes plus a crowd region, an EXIF-rotated JPEG and a 16-bit PNG."""
    root = tmp_path_factory.mktemp("mixed")
    ann_path, images = write_solid_shapes(root)
    data = json.loads(ann_path.read_text())
    rng = np.random.default_rng(0)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)).save(
        images / "turned.jpg", quality=90, exif=exif.tobytes()
    )
    deep = rng.integers(0, 65535, (40, 30), dtype=np.uint16)
    Image.fromarray(deep).save(images / "deep.png")
    data["images"] += [
        {"id": 10, "file_name": "turned.jpg", "height": 50, "width": 30},
        {"id": 11, "file_name": "deep.png", "height": 40, "width": 30},
    ]
    data["annotations"] += [
        box_ann(100, 10, [2, 3, 20, 30]),
        box_ann(101, 11, [5, 5, 10, 20], category_id=2),
        {**box_ann(102, 0, [60, 40, 15, 15]), "iscrowd": 1},
    ]
    ann_path.write_text(json.dumps(data))
    return CocoDataset(ann_path, images, strict=True)


@pytest.fixture(scope="module", params=["rle", "png"])
def converted(mixed, tmp_path_factory, request):
    prefix = tmp_path_factory.mktemp("records") / "mixed"
    paths = write_tfrecords(mixed, prefix, num_shards=2, mask_format=request.param)
    return prefix, paths


def test_records_read_back_equal_to_the_original(mixed, converted):
    prefix, paths = converted
    assert [p.name for p in paths] == ["mixed-00000-of-00002.tfrecord", "mixed-00001-of-00002.tfrecord"]
    parsed = {}
    for example in tf.data.TFRecordDataset([str(p) for p in paths]).map(parse_example):
        parsed[int(example["image_id"])] = {k: v.numpy() for k, v in example.items()}
    assert sorted(parsed) == [0, 1, 2, 10, 11]
    for record in mixed.records:
        got = parsed[record.image_id]
        np.testing.assert_array_equal(got["image"], load_rgb(record.path, record.apply_orientation))
        instances = record.instances + record.crowd
        np.testing.assert_allclose(got["boxes"], [i.box for i in instances], atol=1e-4)
        np.testing.assert_array_equal(got["classes"], [i.class_id for i in instances])
        np.testing.assert_array_equal(
            got["is_crowd"], [False] * len(record.instances) + [True] * len(record.crowd)
        )
        assert len(got["mask_png"]) + len(got["mask_rle"]) == len(instances)
        for k, inst in enumerate(instances):
            seg, size = inst.segmentation, [record.height, record.width]
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, *size)) if isinstance(seg, list) else seg
            if isinstance(rle["counts"], list):
                rle = mask_utils.frPyObjects(rle, *size)
            expected = mask_utils.decode(rle)
            if len(got["mask_rle"]):
                stored = mask_utils.decode({"size": size, "counts": got["mask_rle"][k]})
            else:
                stored = tf.io.decode_png(got["mask_png"][k])[..., 0].numpy()
            np.testing.assert_array_equal(stored, expected)
    assert parsed[10]["image"].shape == (50, 30, 3)  # stored turned
    labels = json.loads((prefix.parent / "mixed-label_map.json").read_text())
    assert labels["num_examples"] == 5 and [c["name"] for c in labels["categories"]] == ["c1", "c2", "c3"]


def test_raw_examples_from_records_equal_those_from_the_coco_reader(mixed, converted):
    prefix, _ = converted
    records = TFRecordDataset(f"{prefix}-*.tfrecord")
    assert len(records) == 5 and records.category_map == mixed.category_map
    from_records = {int(e["image_id"]): e for e in records.tf_dataset(mask_size=16).as_numpy_iterator()}
    for k, record in enumerate(mixed.records):
        want = mixed.load_example(k, 16)
        got = from_records[record.image_id]
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_allclose(got["boxes"], want["boxes"], atol=1e-4)
        np.testing.assert_array_equal(got["classes"], want["classes"])
        np.testing.assert_array_equal(got["masks"], want["masks"])  # crowd left out, crops identical
    assert len(records.coco_dict()["annotations"]) == len(mixed.coco_dict()["annotations"])


def test_pipeline_reads_records_and_shards_them_by_file(converted):
    prefix, _ = converted
    records = TFRecordDataset(f"{prefix}-*.tfrecord")
    pipe = InputPipeline(batch_size=2, min_size=64, max_size=96, max_instances=4, mask_size=8)
    batch = next(iter(pipe(records, training=True)))
    assert batch["images"].shape[0] == 2 and batch["gt_masks"].shape == (2, 4, 8, 8)
    seen = []
    for k in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=k, num_replicas_in_sync=2
        )
        seen.append(
            [int(i) for b in pipe(records, training=False, input_context=context) for i in b["image_id"]]
        )
    assert set(seen[0]).isdisjoint(seen[1]) and sorted(seen[0] + seen[1]) == [0, 1, 2, 10, 11]


def test_conversion_never_overwrites(mixed, converted):
    prefix, paths = converted
    before = paths[0].read_bytes()
    with pytest.raises(DatasetError, match="already exists; choose another --out prefix"):
        write_tfrecords(mixed, prefix, num_shards=2)
    assert paths[0].read_bytes() == before


def test_missing_label_map_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="no TFRecord files match"):
        TFRecordDataset(str(tmp_path / "none-*.tfrecord"))
    (tmp_path / "x-00000-of-00001.tfrecord").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"x-label_map\.json not found"):
        TFRecordDataset(str(tmp_path / "x-*.tfrecord"))
