"""``mrcnn-tf data check|show|convert|synthetic`` on the synthetic dataset and a hand-written file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from coco_fixtures import box_ann, image, write_coco
from PIL import Image

from mrcnn_tf.cli import main


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    assert (
        main(
            [
                "data",
                "synthetic",
                "--out",
                str(root),
                "--num-train",
                "6",
                "--num-val",
                "2",
                "--image-size",
                "64",
            ]
        )
        == 0
    )
    return root


def test_synthetic_writes_coco_files_deterministically(synthetic, tmp_path, capsys):
    data = json.loads((synthetic / "annotations" / "instances_train.json").read_text())
    assert len(data["images"]) == 6 and data["images"][0]["id"] == 0
    assert [c["name"] for c in data["categories"]] == ["circle", "square", "triangle"]
    kinds = {type(a["segmentation"]).__name__ for a in data["annotations"]}
    assert kinds <= {"list", "dict"} and len(data["annotations"]) >= 6
    again = tmp_path / "again"
    assert (
        main(
            [
                "data",
                "synthetic",
                "--out",
                str(again),
                "--num-train",
                "6",
                "--num-val",
                "2",
                "--image-size",
                "64",
            ]
        )
        == 0
    )
    for rel in ("annotations/instances_train.json", "annotations/instances_val.json", "train/000003.png"):
        assert (again / rel).read_bytes() == (synthetic / rel).read_bytes()
    other = tmp_path / "other"
    assert (
        main(
            [
                "data",
                "synthetic",
                "--out",
                str(other),
                "--num-train",
                "6",
                "--num-val",
                "2",
                "--image-size",
                "64",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    assert (other / "train/000003.png").read_bytes() != (synthetic / "train/000003.png").read_bytes()
    # asking for different contents in the same place is refused
    assert main(["data", "synthetic", "--out", str(synthetic), "--num-train", "7"]) == 2
    assert "nothing was overwritten" in capsys.readouterr().err


def test_check_counts_the_synthetic_dataset(synthetic, capsys):
    ann, images = synthetic / "annotations" / "instances_train.json", synthetic / "train"
    assert main(["data", "check", "--annotations", str(ann), "--images", str(images), "--strict"]) == 0
    out = capsys.readouterr().out
    assert "6 images" in out and "3 classes" in out and "circle" in out and "no problems found" in out


def test_check_reports_problems_and_strict_exits_1(tmp_path, capsys):
    path, images = write_coco(
        tmp_path,
        [image(0), image(1, write=False)],
        [box_ann(1, 0, [1, 1, 5, 5]), box_ann(2, 0, [1, 1, 0, 5])],
    )
    argv = ["data", "check", "--annotations", str(path), "--images", str(images)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 images" in out and "missing_file (dropped)" in out and "zero_area_box (dropped)" in out
    assert "annotation 2, image 0" in out
    assert main([*argv, "--strict"]) == 1
    assert "strict mode: 2 problem(s)" in capsys.readouterr().out


def test_show_draws_pipeline_outputs_and_never_overwrites(synthetic, tmp_path, capsys):
    out = tmp_path / "show"
    argv = [
        "data", "show", "--config", "mask_rcnn_r18_fpn_synthetic", "--out", str(out), "--num", "3",
        "--set", f"data.train.root={synthetic}", "data.train.num_images=6", "data.train.image_size=64",
        "data.pipeline.min_size=96", "data.pipeline.max_size=96",
    ]  # fmt: skip
    assert main(argv) == 0
    pictures = sorted(out.glob("*.png"))
    assert [p.name for p in pictures] == ["sample_000.png", "sample_001.png", "sample_002.png"]
    picture = np.asarray(Image.open(pictures[0]))
    assert picture.shape == (96, 96, 3)
    before = pictures[0].read_bytes()
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err and pictures[0].read_bytes() == before


def test_show_from_annotation_file(tmp_path):
    path, images = write_coco(tmp_path, [image(0, 40, 60)], [box_ann(1, 0, [5, 5, 20, 10])])
    out = tmp_path / "pics"
    assert (
        main(
            [
                "data",
                "show",
                "--annotations",
                str(path),
                "--images",
                str(images),
                "--out",
                str(out),
                "--num",
                "1",
                "--no-augment",
            ]
        )
        == 0
    )
    picture = np.asarray(Image.open(out / "sample_000.png"))
    assert picture.shape == (800, 1200, 3)  # the default pipeline: shorter side 800


def test_convert_writes_shards_and_refuses_to_overwrite(synthetic, tmp_path, capsys):
    ann, images = synthetic / "annotations" / "instances_val.json", synthetic / "val"
    argv = [
        "data",
        "convert",
        "--annotations",
        str(ann),
        "--images",
        str(images),
        "--out",
        str(tmp_path / "val"),
        "--shards",
        "2",
    ]
    assert main(argv) == 0
    assert "wrote 2 images to 2 shard(s)" in capsys.readouterr().out
    assert (tmp_path / "val-00001-of-00002.tfrecord").is_file() and (
        tmp_path / "val-label_map.json"
    ).is_file()
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
