"""``mrcnn-tf convert torchvision`` from the user's side, without torch: checkpoints with
torchvision's real key names and shapes (``tests/fixtures/torchvision/*.json``, read off
torchvision 0.29.1), in each file format we read; bad checkpoints are one clear message with
exit status 2 and nothing written; a pickle that would run code is refused before it runs."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from torchvision_fixtures import convert, state_dict

from mrcnn_tf.cli import main
from mrcnn_tf.convert import torchvision as tv
from mrcnn_tf.convert.checkpoint_io import CheckpointError, read_checkpoint


def test_old_key_names_in_npz_convert_to_a_run_directory_that_predict_takes(tmp_path, capsys):
    state = state_dict("maskrcnn_resnet50_fpn", old_keys=True)
    assert "rpn.head.conv.weight" in state and "roi_heads.mask_head.mask_fcn1.weight" in state
    np.savez(tmp_path / "model.npz", **state)
    run = tmp_path / "run"
    assert convert(tmp_path / "model.npz", run) == 0
    assert sorted(p.name for p in run.iterdir()) == [
        ".mrcnn_tf_run", "config.yaml", "label_map.json", "model.weights.h5"
    ]  # fmt: skip
    labels = json.loads((run / "label_map.json").read_text())
    ids = [c["id"] for c in labels["categories"]]
    assert ids == list(range(1, 91))  # class k = COCO category id k
    named = {c["id"]: c["name"] for c in labels["categories"]}
    assert named[1] == "person" and named[90] == "toothbrush" and named[12] == "N/A" and named[44] == "bottle"
    assert "maskrcnn_resnet50_fpn" in capsys.readouterr().out
    from PIL import Image

    Image.fromarray(np.full((96, 128, 3), 120, np.uint8)).save(tmp_path / "photo.png")
    argv = ["predict", str(tmp_path / "photo.png"), "--weights", str(run), "--out", str(tmp_path / "pred")]
    assert main([*argv, "--set", "data.pipeline.min_size=96", "data.pipeline.max_size=128"]) == 0
    assert (tmp_path / "pred" / "predictions.json").is_file()
    # evaluate on a dataset of 2 COCO categories: the model keeps its 90 classes (class k = id k)
    from coco_fixtures import box_ann, image, write_coco

    categories = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]
    anns = [box_ann(1, 1, [10, 10, 30, 20]), box_ann(2, 1, [40, 30, 20, 20], category_id=3)]
    ann_file, images = write_coco(tmp_path / "coco", [image(1, 96, 128)], anns, categories)
    argv = ["evaluate", "--weights", str(run), "--out", str(tmp_path / "eval"), "--set"]
    sets = [f"data.val.annotations={ann_file}", f"data.val.images={images}", "data.pipeline.min_size=96"]
    assert (
        main([*argv, *sets, "data.pipeline.max_size=128", "model.detection_generator.score_threshold=0.0"])
        == 0
    )
    detections = json.loads((tmp_path / "eval" / "detections.json").read_text())
    assert detections and {d["category_id"] for d in detections} <= set(range(1, 91))


def _fails(checkpoint: Path, out: Path, capsys, *expected: str) -> str:
    assert convert(checkpoint, out) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}-")]
    return err


def test_missing_extra_and_misshapen_keys_are_listed_in_one_message(tmp_path, capsys):
    state = state_dict("maskrcnn_resnet50_fpn")
    del state["roi_heads.box_head.fc7.weight"]
    state["roi_heads.extra_layer.weight"] = np.zeros(3, np.float32)
    state["roi_heads.box_predictor.cls_score.weight"] = np.zeros((81, 1024), np.float32)  # 80 classes
    np.savez(tmp_path / "model.npz", **state)
    _fails(
        tmp_path / "model.npz",
        tmp_path / "run",
        capsys,
        "1 key(s) missing (roi_heads.box_head.fc7.weight)",
        "1 key(s) not used (roi_heads.extra_layer.weight)",
        "roi_heads.box_predictor.cls_score.weight (81, 1024)",
    )


def test_an_unknown_classifier_a_keypoint_rcnn_with_a_mask_head_and_a_non_checkpoint_are_named(
    tmp_path, capsys
):
    shallow = {
        k: v
        for k, v in state_dict("resnet50").items()
        if not k.startswith(("layer3.2", "layer3.3", "layer3.4", "layer3.5"))
    }
    np.savez(tmp_path / "resnet26.npz", **shallow)  # a classifier, but no ResNet-50/101
    _fails(tmp_path / "resnet26.npz", tmp_path / "a", capsys, "a ResNet classifier of unsupported depth")
    kp = {**state_dict("keypointrcnn_resnet50_fpn"), "roi_heads.mask_predictor.x.weight": np.zeros(1)}
    np.savez(tmp_path / "kp.npz", **kp)
    _fails(tmp_path / "kp.npz", tmp_path / "b", capsys, "a Keypoint R-CNN with other heads")
    (tmp_path / "notes.pth").write_text("not weights\n")
    _fails(tmp_path / "notes.pth", tmp_path / "c", capsys, "not a checkpoint")
    _fails(tmp_path / "missing.pth", tmp_path / "d", capsys, "checkpoint not found")


def test_an_existing_folder_is_never_written_into(tmp_path, capsys):
    np.savez(tmp_path / "model.npz", x=np.zeros(1))
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert convert(tmp_path / "model.npz", out) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


class _Planted:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path, capsys):
    marker = tmp_path / "it_ran"
    payload = pickle.dumps({"model": {"conv1.weight": _Planted(marker)}})
    (tmp_path / "model_final.pkl").write_bytes(payload)
    with zipfile.ZipFile(tmp_path / "model.pth", "w") as archive:  # torch.save's zip layout
        archive.writestr("model/data.pkl", payload)
    for name in ("model_final.pkl", "model.pth"):
        with pytest.raises(CheckpointError, match="only tensors, arrays and plain containers"):
            read_checkpoint(tmp_path / name)
        _fails(tmp_path / name, tmp_path / f"out_{name}", capsys, "posix.system", "refused")
    assert not marker.exists()


def test_detectron2_style_pickles_of_numpy_arrays_are_read(tmp_path):
    weights = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "b.bias": np.ones(2, np.float64)}
    (tmp_path / "m.pkl").write_bytes(pickle.dumps({"model": weights, "__author__": "Detectron2 Model Zoo"}))
    read = read_checkpoint(tmp_path / "m.pkl")
    assert sorted(read) == ["a.weight", "b.bias"]
    np.testing.assert_array_equal(read["a.weight"], weights["a.weight"])


def test_safetensors_are_read(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    header = json.dumps({"w": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]}}).encode()
    (tmp_path / "m.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + a.tobytes())
    np.testing.assert_array_equal(read_checkpoint(tmp_path / "m.safetensors")["w"], a)


def test_the_91_labels_are_torchvisions():
    assert len(tv.COCO_91) == 91
    assert [i for i, n in enumerate(tv.COCO_91) if n == "N/A"] == [12, 26, 29, 30, 45, 66, 68, 69, 71, 83]


def test_v2_is_recognised_from_its_keys_and_converted(tmp_path, capsys):
    np.savez(tmp_path / "v2.npz", **state_dict("maskrcnn_resnet50_fpn_v2"))
    assert convert(tmp_path / "v2.npz", tmp_path / "run") == 0
    assert "maskrcnn_resnet50_fpn_v2" in capsys.readouterr().out
    assert "norm: bn" in (tmp_path / "run" / "config.yaml").read_text()
    assert convert(tmp_path / "v2.npz", tmp_path / "run1", "--arch", "maskrcnn_resnet50_fpn") == 2
    assert "but its keys are those of maskrcnn_resnet50_fpn_v2" in capsys.readouterr().err


def _torch_zip(path, tensors: dict, storage_bytes: dict) -> None:
    """A ``torch.save`` zip file written without torch: ``tensors`` maps a name to
    ``(storage key, offset, size, stride)`` and ``storage_bytes`` a key to its float32 bytes."""
    import io
    import sys
    import types

    fake_torch, fake_utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:  # what torch pickles as the storage type
        pass

    def _rebuild_tensor_v2(*args):  # never called here: only pickled by reference
        raise AssertionError

    FloatStorage.__module__, _rebuild_tensor_v2.__module__ = "torch", "torch._utils"
    FloatStorage.__qualname__, _rebuild_tensor_v2.__qualname__ = "FloatStorage", "_rebuild_tensor_v2"
    fake_torch.FloatStorage, fake_utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    fake_torch._utils = fake_utils

    class Ref:
        def __init__(self, key, numel):
            self.key, self.numel = key, numel

    class Tensor:
        def __init__(self, key, offset, size, stride):
            self.args = (Ref(key, len(storage_bytes[key]) // 4), offset, size, stride, False, {})

        def __reduce__(self):
            return (_rebuild_tensor_v2, self.args)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", FloatStorage, obj.key, "cpu", obj.numel) if isinstance(obj, Ref) else None

    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": fake_torch, "torch._utils": fake_utils})
    try:
        buffer = io.BytesIO()
        Pickler(buffer, protocol=2).dump({name: Tensor(*spec) for name, spec in tensors.items()})
    finally:
        for key, module in saved.items():
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        for key, data in storage_bytes.items():
            archive.writestr(f"archive/data/{key}", data)


def test_torch_zip_files_are_read_by_storage_offset_and_stride_and_bounds_are_checked(tmp_path):
    values = np.arange(12, dtype="<f4")
    _torch_zip(
        tmp_path / "ok.pth",
        {"a": ("0", 2, (2, 3), (3, 1)), "t": ("0", 0, (3, 2), (1, 3))},  # a view, a transposed view
        {"0": values.tobytes()},
    )
    read = read_checkpoint(tmp_path / "ok.pth")
    np.testing.assert_array_equal(read["a"], values[2:8].reshape(2, 3))
    np.testing.assert_array_equal(read["t"], values[:6].reshape(2, 3).T)
    _torch_zip(tmp_path / "bad.pth", {"a": ("0", 10, (4, 4), (4, 1))}, {"0": values.tobytes()})
    with pytest.raises(CheckpointError, match="reaches past its storage"):
        read_checkpoint(tmp_path / "bad.pth")  # not a read outside the buffer (a crash)


def test_keypointrcnn_converts_every_tensor_exactly_with_the_coco_keypoint_schema(tmp_path, capsys):
    state = state_dict("keypointrcnn_resnet50_fpn", seed=4)
    np.savez(tmp_path / "kp.npz", **state)
    run = tmp_path / "run"
    assert convert(tmp_path / "kp.npz", run) == 0
    assert "keypointrcnn_resnet50_fpn" in capsys.readouterr().out
    labels = json.loads((run / "label_map.json").read_text())
    assert labels["categories"] == [{"id": 1, "name": "person", "class_id": 1}]
    schema = labels["keypoints"]
    assert schema["names"][:3] == ["nose", "left_eye", "right_eye"] and len(schema["sigmas"]) == 17
    assert schema["flip_map"] == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    assert [15, 13] in schema["skeleton"]  # COCO's (16, 14), 0-based
    config = (run / "config.yaml").read_text()
    assert "decode: torchvision" in config and "mask_head: null" in config

    from mrcnn_tf import build_model
    from mrcnn_tf.config import load_config

    model = build_model(load_config(str(run / "config.yaml")))
    model.build()
    model.load_weights(run / "model.weights.h5")
    head = model.keypoint_head
    for i, conv in enumerate(head.tower.convs):
        np.testing.assert_array_equal(
            conv.kernel.numpy(), state[f"roi_heads.keypoint_head.{2 * i}.weight"].transpose(2, 3, 1, 0)
        )
        np.testing.assert_array_equal(conv.bias.numpy(), state[f"roi_heads.keypoint_head.{2 * i}.bias"])
    # ConvTranspose2d [in, out, kh, kw] -> Conv2DTranspose [kh, kw, out, in]
    deconv = state["roi_heads.keypoint_predictor.kps_score_lowres.weight"]
    np.testing.assert_array_equal(head.deconv.kernel.numpy(), deconv.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(
        model.box_head.predictor.cls_score.kernel.numpy(), state["roi_heads.box_predictor.cls_score.weight"].T
    )
    assert model.mask_head is None and len(head.tower.convs) == 8
