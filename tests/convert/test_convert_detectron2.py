"""``mrcnn-tf convert detectron2`` from the user's side, on model-zoo ``.pkl`` files with
Detectron2's real key names and shapes (``tests/detectron2_fixtures.py``): both architectures
convert and predict end to end, the class layout moves exactly, bad files are one message."""

from __future__ import annotations

import json

import numpy as np
import pytest
from detectron2_fixtures import state_dict, write_pkl
from PIL import Image

from mrcnn_tf.cli import main


def convert(checkpoint, out, *extra) -> int:
    return main(["convert", "detectron2", str(checkpoint), "--out", str(out), *extra])


@pytest.mark.slow  # two R50 models built, converted and traced: ~1.5 min
@pytest.mark.parametrize("arch", ["mask_rcnn_R_50_FPN", "mask_rcnn_R_50_C4"])
def test_a_zoo_final_converts_and_predicts_end_to_end(tmp_path, capsys, arch):
    pkl = write_pkl(tmp_path / "model_final.pkl", state_dict(arch))
    run = tmp_path / "run"
    assert convert(pkl, run) == 0
    assert arch in capsys.readouterr().out
    labels = json.loads((run / "label_map.json").read_text())["categories"]
    assert (
        len(labels) == 80
        and labels[0]["name"] == "person"
        and labels[0]["id"] == 1
        and labels[-1]["id"] == 90
    )
    assert "sampling_ratio: 0" in (run / "config.yaml").read_text()
    Image.fromarray(np.full((96, 128, 3), 120, np.uint8)).save(tmp_path / "photo.png")
    argv = ["predict", str(tmp_path / "photo.png"), "--weights", str(run), "--out", str(tmp_path / "pred")]
    sets = [
        "data.pipeline.min_size=96",
        "data.pipeline.max_size=128",
        "model.detection_generator.score_threshold=0.0",
    ]
    assert main([*argv, "--score-threshold", "0", "--set", *sets]) == 0
    predictions = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert predictions and {p["category_id"] for p in predictions} <= {c["id"] for c in labels}


def test_the_class_layout_and_colour_order_move_exactly(tmp_path):
    """Background last → first, no background box rows, (dx, dy, dw, dh) → (dy, dx, dh, dw),
    BGR conv1 → RGB: checked on the converted variables against the file's arrays."""
    from mrcnn_tf import build_model
    from mrcnn_tf.config import load_config
    from mrcnn_tf.convert import detectron2 as d2

    state = state_dict("mask_rcnn_R_50_FPN", seed=1)
    model = build_model(load_config(d2.CONFIGS["mask_rcnn_R_50_FPN"]))
    model.build()
    d2.assign(model, d2.normalise_keys(state), "mask_rcnn_R_50_FPN", "x.pkl")
    predictor = model.box_head.predictor
    cls_w, cls_b = (
        state["roi_heads.box_predictor.cls_score.weight"],
        state["roi_heads.box_predictor.cls_score.bias"],
    )
    np.testing.assert_array_equal(predictor.cls_score.kernel.numpy()[:, 0], cls_w[80])  # background
    np.testing.assert_array_equal(predictor.cls_score.kernel.numpy()[:, 1:], cls_w[:80].T)
    np.testing.assert_array_equal(predictor.cls_score.bias.numpy(), np.concatenate([cls_b[80:], cls_b[:80]]))
    box_w = state["roi_heads.box_predictor.bbox_pred.weight"]  # rows 4c + (dx, dy, dw, dh)
    ours = predictor.bbox_pred.kernel.numpy().T.reshape(80, 4, -1)  # rows 4c + (dy, dx, dh, dw)
    np.testing.assert_array_equal(ours, box_w.reshape(80, 4, -1)[:, [1, 0, 3, 2]])
    conv1 = state["backbone.bottom_up.stem.conv1.weight"]  # [out, in (B, G, R), kh, kw]
    np.testing.assert_array_equal(
        model.backbone.stem_conv.kernel.numpy(), conv1[:, ::-1].transpose(2, 3, 1, 0)
    )
    mask = state["roi_heads.mask_head.predictor.weight"][:, :, 0, 0]  # 80 channels, no background
    np.testing.assert_array_equal(model.mask_head.predictor.kernel.numpy()[0, 0], mask.T)


def test_files_that_are_not_zoo_mask_rcnn_finals_are_named(tmp_path, capsys):
    keypoint = {**state_dict("mask_rcnn_R_50_FPN"), "roi_heads.keypoint_head.conv_fcn1.weight": np.zeros(1)}
    caffe2 = {"conv1_w": np.zeros((64, 3, 7, 7)), "res2_0_branch2a_w": np.zeros((64, 64, 1, 1))}
    lsj = {**state_dict("mask_rcnn_R_50_FPN"), "backbone.fpn_lateral2.norm.weight": np.zeros(256)}
    missing = state_dict("mask_rcnn_R_50_C4")
    del missing["roi_heads.res5.2.conv3.weight"]
    for name, state, expected in [
        ("kp.pkl", keypoint, "a Keypoint R-CNN checkpoint"),
        ("R-50.pkl", caffe2, "a Caffe2/Detectron1 file"),
        ("lsj.pkl", lsj, "normalised FPN/heads"),
        ("c4.pkl", missing, "1 key(s) missing (roi_heads.res5.2.conv3.weight)"),
    ]:
        assert convert(write_pkl(tmp_path / name, state), tmp_path / f"out_{name}") == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / f"out_{name}").exists()
