"""ImageNet ResNets as the start of COCO training, from the user's side: torchvision's
``resnet50`` (real key names and shapes) and an MSRA ``R-50.pkl`` (Caffe2 blob names) become a
backbone folder that ``train.init_weights`` takes; conventions that do not fit are refused; the
zoo configs name the start and say where to get it when it is missing."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from torchvision_fixtures import convert, state_dict

from mrcnn_tf.cli import main


def msra_r50(seed: int = 0) -> dict[str, np.ndarray]:
    """Detectron2's ImageNetPretrained/MSRA/R-50.pkl layout: Caffe2 blobs, batch norm folded
    into a scale ``_s`` and a bias ``_b``, the classifier ``pred_w``/``pred_b``."""
    rng = np.random.default_rng(seed)
    blobs = {"conv1_w": (64, 3, 7, 7), "res_conv1_bn_s": (64,), "res_conv1_bn_b": (64,)}
    cin = 64
    for stage, count in zip(range(2, 6), (3, 4, 6, 3), strict=True):
        width = 64 * 2 ** (stage - 2)
        for b in range(count):
            shapes = {"2a": (width, cin, 1, 1), "2b": (width, width, 3, 3), "2c": (width * 4, width, 1, 1)}
            if b == 0:
                shapes["1"] = (width * 4, cin, 1, 1)
            for branch, shape in shapes.items():
                blobs[f"res{stage}_{b}_branch{branch}_w"] = shape
                blobs[f"res{stage}_{b}_branch{branch}_bn_s"] = (shape[0],)
                blobs[f"res{stage}_{b}_branch{branch}_bn_b"] = (shape[0],)
            cin = width * 4
    blobs["pred_w"], blobs["pred_b"] = (1000, 2048), (1000,)
    return {k: rng.normal(0.5, 0.1, s).astype(np.float32) for k, s in blobs.items()}


def _model(*overrides: str):
    from mrcnn_tf import build_model
    from mrcnn_tf.config import load_config

    model = build_model(load_config("mask_rcnn_r50_fpn_1x_coco", ["train.init_weights=null", *overrides]))
    model.build()
    return model


def test_torchvision_resnet50_becomes_the_backbone_that_init_weights_takes(tmp_path, capsys):
    from mrcnn_tf.training.init_weights import initialize_from

    state = state_dict("resnet50", seed=3)
    np.savez(tmp_path / "resnet50.npz", **state)
    assert convert(tmp_path / "resnet50.npz", tmp_path / "r50") == 0
    assert "torchvision ResNet-50 ImageNet classifier" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "r50" / "backbone.json").read_text())
    assert (
        manifest["components"] == ["backbone"]
        and manifest["requires"]["model.backbone.stride_in_1x1"] is False
    )
    model = _model()
    head_before = model.box_head.predictor.cls_score.kernel.numpy().copy()
    report = initialize_from(model, tmp_path / "r50")  # no init_components: the folder says backbone
    assert report.loaded == len(model.backbone.weights)
    np.testing.assert_array_equal(
        model.backbone.stem_conv.kernel.numpy(), state["conv1.weight"].transpose(2, 3, 1, 0)
    )
    block = model.backbone.stages[2][0]  # layer3.0: the stride in its 3x3 conv, torchvision's layout
    np.testing.assert_array_equal(block.norms[1].moving_variance.numpy(), state["layer3.0.bn2.running_var"])
    np.testing.assert_array_equal(model.box_head.predictor.cls_score.kernel.numpy(), head_before)


def test_an_msra_r50_pkl_is_exact_and_refused_by_a_model_of_other_conventions(tmp_path, capsys):
    import tensorflow as tf

    from mrcnn_tf.training.init_weights import initialize_from
    from registry.errors import UserError

    blobs = msra_r50()
    (tmp_path / "R-50.pkl").write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
    assert main(["convert", "detectron2", str(tmp_path / "R-50.pkl"), "--out", str(tmp_path / "msra")]) == 0
    assert "msra ResNet-50 ImageNet classifier" in capsys.readouterr().out
    with pytest.raises(UserError, match=r"model.backbone.stride_in_1x1: False, the weights need True"):
        initialize_from(_model(), tmp_path / "msra")
    model = _model("model.backbone.stride_in_1x1=true", "model.pixel_std=[1.0,1.0,1.0]")
    initialize_from(model, tmp_path / "msra")
    # Caffe2's AffineChannel: y = x * s + b, exactly, from the frozen norm (mean 0, var 1 - eps).
    x = tf.constant(np.random.default_rng(0).normal(size=(1, 4, 4, 64)).astype(np.float32))
    expected = x.numpy() * blobs["res_conv1_bn_s"] + blobs["res_conv1_bn_b"]
    np.testing.assert_allclose(model.backbone.stem_norm(x).numpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(  # BGR -> RGB
        model.backbone.stem_conv.kernel.numpy(), blobs["conv1_w"][:, ::-1].transpose(2, 3, 1, 0)
    )


def test_the_zoo_configs_name_their_imagenet_start_and_where_to_get_it(tmp_path, capsys):
    assert main(["train", "mask_rcnn_r50_fpn_1x_coco", "--workdir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "train.init_weights: pretrained/resnet50_imagenet does not exist" in err
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in err
    assert "mrcnn-tf convert torchvision resnet50-0676ba61.pth --out pretrained/resnet50_imagenet" in err
    assert not (tmp_path / "run").exists()  # found before anything was written
