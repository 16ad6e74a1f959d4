"""The COCO reader: formats, crowd, categories, ids, and every kind of bad input with its message."""

from __future__ import annotations

import json
import os

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from coco_fixtures import box_ann, image, write_coco
from numpy_ref import reference_crop

from mrcnn_tf.data.category_map import CategoryMap
from mrcnn_tf.data.coco import CocoDataset
from mrcnn_tf.data.report import DatasetError


def kinds(dataset):
    return {(p.kind, p.action) for p in dataset.report.problems}


def messages(dataset):
    return "\n".join(str(p) for p in dataset.report.problems)


def test_reads_polygons_rle_and_compressed_rle_with_exact_masks(tmp_path):
    h, w = 40, 50
    full = np.zeros((h, w), np.uint8)
    full[5:30, 10:20] = 1
    full[20:30, 20:35] = 1
    rle = mask_utils.encode(np.asfortranarray(full))
    from mrcnn_tf.data.rle import decompress_counts

    anns = [
        box_ann(1, 0, [2, 3, 20, 10]),
        {
            **box_ann(2, 0, [10, 5, 25, 25]),
            "segmentation": {"size": [h, w], "counts": rle["counts"].decode()},
        },
        {
            **box_ann(3, 0, [10, 5, 25, 25]),
            "segmentation": {"size": [h, w], "counts": decompress_counts(rle["counts"]).tolist()},
        },
        {**box_ann(4, 0, [0, 0, 50, 40]), "segmentation": [[1, 1, 10, 1, 10, 10], [30, 30, 45, 30, 45, 38]]},
    ]
    path, images = write_coco(tmp_path, [image(0)], anns)
    ds = CocoDataset(path, images, strict=True)
    ex = ds.load_example(0, 16)
    assert ex["image_id"] == 0
    np.testing.assert_allclose(ex["boxes"][0], [3, 2, 13, 22])  # [y1, x1, y2, x2]
    np.testing.assert_array_equal(ex["classes"], [1, 1, 1, 1])
    np.testing.assert_array_equal(ex["masks"][1], reference_crop(full, [5, 10, 30, 35], 16))
    np.testing.assert_array_equal(ex["masks"][2], ex["masks"][1])
    poly = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(anns[3]["segmentation"], h, w)))
    np.testing.assert_array_equal(ex["masks"][3], reference_crop(poly, [0, 0, 40, 50], 16))
    assert ex["masks"][0].all()  # a box-shaped polygon fills its box


def test_crowd_regions_are_not_targets_but_stay_for_evaluation(tmp_path):
    crowd = {**box_ann(2, 5, [0, 0, 10, 10]), "iscrowd": 1}
    path, images = write_coco(tmp_path, [image(5)], [box_ann(1, 5, [20, 20, 10, 10]), crowd])
    ds = CocoDataset(path, images, strict=True)
    ex = ds.load_example(0, 8)
    assert ex["boxes"].shape == (1, 4) and ds.report.counts["crowd"] == 1
    assert [a["id"] for a in ds.coco_dict()["annotations"]] == [1, 2]


def test_categories_map_to_contiguous_ids_and_back(tmp_path):
    cats = [{"id": 12, "name": "c"}, {"id": 3, "name": "a"}, {"id": 7, "name": "b"}]
    anns = [box_ann(1, 0, [0, 0, 5, 5], 7), box_ann(2, 0, [5, 5, 5, 5], 12), box_ann(3, 0, [9, 9, 5, 5], 3)]
    path, images = write_coco(tmp_path, [image(0)], anns, cats)
    ds = CocoDataset(path, images, strict=True)
    np.testing.assert_array_equal(ds.load_example(0, 4)["classes"], [2, 3, 1])
    cmap = ds.category_map
    assert cmap.names == ("a", "b", "c") and cmap.num_classes == 3
    np.testing.assert_array_equal(cmap.to_dataset([2, 3, 1]), [7, 12, 3])
    assert cmap.to_contiguous(12) == 3
    cmap.save(tmp_path / "labels.json")
    assert CategoryMap.load(tmp_path / "labels.json") == cmap
    with pytest.raises(ValueError, match=r"1\.\.3"):
        cmap.to_dataset([0])


def test_empty_images_are_kept_or_skipped(tmp_path):
    path, images = write_coco(tmp_path, [image(0), image(1)], [box_ann(1, 1, [0, 0, 5, 5])])
    kept = CocoDataset(path, images, strict=True)
    assert [r.image_id for r in kept.records] == [0, 1] and kept.report.counts["empty_images"] == 1
    assert kept.load_example(0, 4)["boxes"].shape == (0, 4)
    skipped = CocoDataset(path, images, skip_empty=True)
    assert [r.image_id for r in skipped.records] == [1]


def test_bad_json_and_bad_structure_fail_with_the_file_name(tmp_path):
    (tmp_path / "images").mkdir()
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [}')
    with pytest.raises(DatasetError, match=r"bad\.json: not valid JSON \(line 1"):
        CocoDataset(bad, tmp_path / "images")
    bad.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DatasetError, match="'categories' is missing"):
        CocoDataset(bad, tmp_path / "images")
    bad.write_text(json.dumps({"images": [], "categories": [{"id": 1}, {"id": 1}]}))
    with pytest.raises(DatasetError, match=r"category ids \[1\] appear more than once"):
        CocoDataset(bad, tmp_path / "images")
    with pytest.raises(DatasetError, match=r"image folder .* does not exist"):
        CocoDataset(bad, tmp_path / "nope")


def test_bad_images_are_dropped_and_named(tmp_path):
    entries = [
        image(1),
        image(2, write=False),  # missing file
        image(3, name="../escape.png", write=False),
        image(4, name=str(tmp_path / "abs.png"), write=False),
        image(5, name="text.png", write=False),
        image(6, height=41),  # size in the file differs
        image(7),
    ]
    path, images = write_coco(tmp_path, entries, [box_ann(k, k, [1, 1, 5, 5]) for k in range(1, 8)])
    (images / "text.png").write_text("not an image")
    entries[5]["height"] = 40  # the PNG was written 41 high, the file says 40
    data = json.loads(path.read_text())
    data["images"][5]["height"] = 40
    path.write_text(json.dumps(data))
    ds = CocoDataset(path, images)
    assert [r.image_id for r in ds.records] == [1, 7]
    found = kinds(ds)
    assert {
        ("missing_file", "dropped"),
        ("unsafe_path", "refused"),
        ("not_an_image", "dropped"),
        ("size_mismatch", "dropped"),
    } <= found
    text = messages(ds)
    assert "image 2: image file" in text and "img2.png does not exist" in text
    assert "'../escape.png' points outside the image folder" in text
    assert "abs.png' points outside the image folder" in text
    assert "image 5:" in text and "not an image file" in text
    assert "image 6: img6.png: the annotation file says 50x40 but the image is 50x41" in text
    with pytest.raises(DatasetError, match="strict mode"):
        CocoDataset(path, images, strict=True)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_image_is_dropped(tmp_path):
    path, images = write_coco(tmp_path, [image(1), image(2)], [box_ann(1, 1, [1, 1, 5, 5])])
    os.chmod(images / "img2.png", 0)
    try:
        ds = CocoDataset(path, images)
    finally:
        os.chmod(images / "img2.png", 0o644)
    assert ("unreadable_file", "dropped") in kinds(ds) and "permission denied" in messages(ds)


def test_bad_annotations_are_dropped_or_clipped_and_named(tmp_path):
    anns = [
        box_ann(1, 0, [1, 1, 5, 5]),
        box_ann(2, 99, [1, 1, 5, 5]),  # unknown image
        box_ann(3, 0, [1, 1, 5, 5], category_id=42),  # unknown category
        {**box_ann(4, 0, [1, 1, 5, 5]), "segmentation": [[1, 1, 4, 4]]},  # 2 points
        box_ann(5, 0, [1, 1, 0, 5]),  # zero width
        box_ann(6, 0, [1, 1, -3, 5]),  # negative width
        box_ann(7, 0, [40, 30, 20, 20]),  # partly outside a 50x40 image: clipped
        box_ann(8, 0, [60, 50, 5, 5]),  # entirely outside
        {
            **box_ann(9, 0, [1, 1, 5, 5]),
            "segmentation": [[1, 1, 4, 4], [1, 1, 6, 1, 6, 6]],
        },  # one bad polygon
        {**box_ann(10, 0, [1, 1, 5, 5]), "segmentation": {"size": [10, 10], "counts": [100]}},  # wrong size
        {**box_ann(11, 0, [1, 1, 5, 5]), "segmentation": {"size": [40, 50], "counts": [5, 5]}},  # short runs
        {**box_ann(12, 0, [1, 1, 5, 5]), "segmentation": []},
        {**box_ann(13, 0, [1, 1, 5, 5]), "segmentation": [[1, 1, 5, 1, 9, 1]]},  # zero area
    ]
    path, images = write_coco(tmp_path, [image(0)], anns)
    ds = CocoDataset(path, images)
    kept = [i.annotation_id for i in ds.records[0].instances]
    assert kept == [1, 7, 9]
    np.testing.assert_allclose(ds.records[0].instances[1].box, [30, 40, 40, 50])
    expected = {
        2: ("unknown_image", "image_id 99 is not in 'images'"),
        3: ("unknown_category", "category_id 42 is not in 'categories'"),
        4: ("short_polygon", "has 4 coordinates; a polygon needs at least 3 (x, y) points"),
        5: ("zero_area_box", "zero or negative width/height"),
        6: ("zero_area_box", "zero or negative width/height"),
        7: ("box_clipped", "extends 10.00 px outside the 50x40 image"),
        8: ("box_outside", "lies outside the 50x40 image"),
        9: ("short_polygon", "that polygon was left out"),
        10: ("bad_rle", "differs from the image's [height, width] = [40, 50]"),
        11: ("bad_rle", "cover 10 pixels, the image has 2000"),
        12: ("no_segmentation", "Mask R-CNN needs a mask per instance"),
        13: ("empty_mask", "encloses no area"),
    }
    by_id = {p.annotation_id: p for p in ds.report.problems}
    for ann_id, (kind, text) in expected.items():
        assert by_id[ann_id].kind == kind and text in by_id[ann_id].message, by_id[ann_id]
    assert by_id[7].action == "clipped" and by_id[9].action == "fixed" and by_id[4].action == "dropped"
    summary = ds.report.summary()
    assert "ann.json: 12 problem(s) found" in summary and "2 x zero_area_box (dropped)" in summary
    with pytest.raises(DatasetError, match="annotation 3, image 0: category_id 42"):
        CocoDataset(path, images, strict=True)


def test_image_whose_annotations_all_fail_is_dropped_not_made_background(tmp_path):
    path, images = write_coco(
        tmp_path, [image(0), image(1)], [box_ann(1, 0, [1, 1, 0, 5]), box_ann(2, 1, [1, 1, 5, 5])]
    )
    ds = CocoDataset(path, images)
    assert [r.image_id for r in ds.records] == [1]
    assert ("image_lost_all_annotations", "dropped") in kinds(ds)
