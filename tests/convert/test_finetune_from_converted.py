"""Fine-tuning a converted COCO model on a dataset of your own classes, from the user's side:
a config whose ``_base_`` is the bundled torchvision config and ``train.init_weights`` the
converted run directory; the class-dependent predictors start fresh, everything else is taken."""

from __future__ import annotations

import json

import numpy as np
import pytest
from torchvision_fixtures import convert, state_dict

from mrcnn_tf.cli import main

pytestmark = pytest.mark.slow


def test_a_converted_run_directory_is_the_start_of_fine_tuning_on_3_classes(tmp_path, write):
    np.savez(tmp_path / "coco.npz", **state_dict("maskrcnn_resnet50_fpn"))
    assert convert(tmp_path / "coco.npz", tmp_path / "tv_coco") == 0
    assert (
        main(
            [
                "data",
                "synthetic",
                "--out",
                str(tmp_path / "mine"),
                "--num-train",
                "4",
                "--num-val",
                "2",
                "--image-size",
                "64",
            ]
        )
        == 0
    )
    annotations = sorted((tmp_path / "mine" / "annotations").glob("*train*.json"))
    config = write(
        "finetune.yaml",
        f"""
        _base_: [mask_rcnn_r50_fpn_torchvision_coco.yaml]
        model: {{num_classes: 3}}
        data:
          num_classes: 3
          train: {{type: CocoDataset, annotations: {annotations[0]}, images: {tmp_path / "mine" / "train"}}}
          val: null
          pipeline: {{batch_size: 1, min_size: 64, max_size: 64, train_min_sizes: [64]}}
        train: {{init_weights: {tmp_path / "tv_coco"}, max_steps: 1, steps_per_loop: 1}}
        """,
    )
    sets = ["model.roi_sampler.num_samples=32", "model.proposal_generator.post_nms_topk_train=64"]
    assert main(["train", str(config), "--workdir", str(tmp_path / "run"), "--set", *sets]) == 0
    report = json.loads((tmp_path / "run" / "init_weights.json").read_text())
    fresh = {path.rsplit("/", 1)[0].rsplit("/", 1)[-1] for path in report["fresh"]}
    assert fresh == {"cls_score", "bbox_pred", "predictor"}, fresh
    assert report["loaded"] > 300
