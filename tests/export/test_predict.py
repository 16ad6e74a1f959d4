"""``mrcnn-tf predict``: pictures and COCO results from a SavedModel or a config and weights."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from training_fixtures import CONFIG, TINY, tiny_config

from mrcnn_tf import build_model
from mrcnn_tf.cli import main
from mrcnn_tf.data.builder import build_input_pipeline
from mrcnn_tf.data.category_map import CategoryMap
from mrcnn_tf.export.saved_model import Preprocessing, export_saved_model
from registry.config import dump_config

SETTINGS = [*TINY, "model.detection_generator.score_threshold=0.0"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Random weights with a label map (dataset ids 3, 7, 42), exported; a folder of images."""
    import keras

    keras.utils.set_random_seed(5)
    root = tmp_path_factory.mktemp("predict")
    cfg = tiny_config("model.detection_generator.score_threshold=0.0")
    model = build_model(cfg)
    model.build()
    run = root / "run"
    run.mkdir()
    model.save_weights(str(run / "model.weights.h5"))
    labels = CategoryMap((3, 7, 42), ("cat", "dog", "eel"))
    labels.save(run / "label_map.json")
    # The run's config names COCO files this machine does not have: predicting and exporting
    # read the run's label map, never the dataset.
    missing = {
        "type": "CocoDataset",
        "annotations": str(root / "no" / "instances.json"),
        "images": str(root / "no"),
    }
    (run / "config.yaml").write_text(
        dump_config({**cfg, "data": {**cfg["data"], "train": missing, "val": missing}})
    )
    base = root / "models"
    export_saved_model(
        model, base / "1", Preprocessing.from_pipeline(build_input_pipeline(cfg)), labels.to_json()
    )
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 80, 3), np.uint8)).save(images / "wide.png")
    Image.fromarray(rng.integers(0, 255, (70, 40), np.uint8)).save(images / "sub" / "gray.jpg")
    (images / "broken.png").write_bytes(b"this is not a png")
    return run, base, images


def _signature_outputs(base, path):
    loaded = tf.saved_model.load(str(base / "1"))
    image = np.asarray(Image.open(path).convert("RGB"))
    return {k: v.numpy()[0] for k, v in loaded.signatures["serving_default"](images=image[None]).items()}


def test_predict_with_a_saved_model_writes_pictures_and_coco_results(setup, tmp_path, capsys):
    from pycocotools.coco import COCO

    _, base, images = setup
    out = tmp_path / "out"
    argv = ["predict", str(images), "--saved-model", str(base), "--out", str(out), "--score-threshold", "0"]
    assert main(argv) == 1  # one file was skipped
    printed = capsys.readouterr().out
    assert "skipped" in printed and "broken.png" in printed and "cannot read it as an image" in printed
    assert Image.open(out / "wide.png").size == (80, 48)
    assert Image.open(out / "sub" / "gray.png").size == (40, 70)
    results = json.loads((out / "predictions.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        detections = COCO(str(out / "images.json")).loadRes(str(out / "predictions.json"))
    assert len(detections.anns) == len(results) > 0
    listing = json.loads((out / "images.json").read_text())
    by_file = {im["file_name"].rsplit("/", 1)[-1]: im["id"] for im in listing["images"]}
    assert listing["categories"] == [
        {"id": 3, "name": "cat"},
        {"id": 7, "name": "dog"},
        {"id": 42, "name": "eel"},
    ]
    reference = _signature_outputs(base, images / "wide.png")
    mine = [r for r in results if r["image_id"] == by_file["wide.png"]]
    n = int(reference["num_detections"])
    assert len(mine) == n
    y1, x1, y2, x2 = reference["detection_boxes"][0].astype(np.float64)
    np.testing.assert_allclose(mine[0]["bbox"], [x1, y1, x2 - x1, y2 - y1], atol=1e-4)
    assert mine[0]["category_id"] == (3, 7, 42)[int(reference["detection_classes"][0]) - 1]
    assert mine[0]["segmentation"]["size"] == [48, 80]
    assert main(argv) == 2  # predictions.json exists: nothing replaced without --overwrite
    assert "already exists" in capsys.readouterr().err


def test_predict_with_config_and_weights_matches_the_saved_model(setup, tmp_path):
    run, base, images = setup
    first, second = tmp_path / "a", tmp_path / "b"
    common = [str(images / "wide.png"), "--score-threshold", "0", "--quiet"]
    assert main(["predict", *common, "--saved-model", str(base / "1"), "--out", str(first)]) == 0
    keras_argv = ["--config", CONFIG, "--weights", str(run), "--set", *SETTINGS, "--out", str(second)]
    assert main(["predict", *common, *keras_argv]) == 0
    a = json.loads((first / "predictions.json").read_text())
    b = json.loads((second / "predictions.json").read_text())
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert x["category_id"] == y["category_id"] and x["image_id"] == y["image_id"]
        np.testing.assert_allclose(x["bbox"], y["bbox"], atol=1e-3)
        assert abs(x["score"] - y["score"]) < 1e-5


def test_a_run_directory_carries_its_config_for_predict_and_export_without_its_dataset(setup, tmp_path):
    run, base, images = setup
    common = [str(images / "wide.png"), "--score-threshold", "0", "--quiet"]
    assert main(["predict", *common, "--saved-model", str(base / "1"), "--out", str(tmp_path / "a")]) == 0
    assert main(["predict", *common, "--weights", str(run), "--out", str(tmp_path / "b")]) == 0  # no --config
    a = json.loads((tmp_path / "a" / "predictions.json").read_text())
    b = json.loads((tmp_path / "b" / "predictions.json").read_text())
    assert [x["category_id"] for x in a] == [y["category_id"] for y in b] and len(a) > 0
    np.testing.assert_allclose([x["score"] for x in a], [y["score"] for y in b], atol=1e-5)
    assert main(["export", "--weights", str(run), "--out", str(tmp_path / "models")]) == 0
    exported = json.loads((tmp_path / "models" / "1" / "assets" / "label_map.json").read_text())
    assert [c["id"] for c in exported["categories"]] == [3, 7, 42]
    # the config beside the export (DESIGN) and the target it was built for
    assets = tmp_path / "models" / "1" / "assets"
    assert json.loads((assets / "export.json").read_text())["target"] == "any"
    assert "conv_algorithm: direct" in (assets / "config.yaml").read_text()
    assert not (run / "synthetic").exists() and not (tmp_path / "no").exists()


def test_predict_uses_image_ids_of_a_coco_file_and_the_score_threshold(setup, tmp_path):
    _, base, images = setup
    reference = _signature_outputs(base, images / "wide.png")
    scores = reference["detection_scores"][: int(reference["num_detections"])]
    threshold = float(np.median(scores))
    coco = tmp_path / "gt.json"
    coco.write_text(json.dumps({"images": [{"id": 1234, "file_name": "photos/wide.png"}]}))
    out = tmp_path / "out"
    argv = ["predict", str(images / "wide.png"), "--saved-model", str(base), "--out", str(out)]
    assert main([*argv, "--image-ids", str(coco), "--score-threshold", str(threshold), "--quiet"]) == 0
    results = json.loads((out / "predictions.json").read_text())
    assert {r["image_id"] for r in results} == {1234}
    assert len(results) == int(np.sum(scores >= threshold))
    assert min(r["score"] for r in results) >= threshold


def test_predict_reports_a_missing_path_and_a_missing_saved_model(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope.jpg"), "--saved-model", str(tmp_path), "--out", "o"]) == 2
    assert "nope.jpg: no such file or directory" in capsys.readouterr().err
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--saved-model", str(tmp_path), "--out", "o"]) == 2
    assert "no saved_model.pb" in capsys.readouterr().err


@pytest.mark.slow
def test_export_in_mixed_bfloat16_computes_in_bfloat16_and_answers_in_float32(setup, tmp_path):
    """``export --precision mixed_bfloat16``: the graph's convolutions run in bfloat16, outputs are
    float32, and the detections are the float32 export's within bfloat16's precision."""
    run, base, images = setup
    out = tmp_path / "bf16"
    assert main(["export", "--weights", str(run), "--out", str(out), "--precision", "mixed_bfloat16"]) == 0
    assert json.loads((out / "1" / "assets" / "export.json").read_text())["precision"] == "mixed_bfloat16"
    loaded = tf.saved_model.load(str(out / "1"))
    fn = loaded.signatures["serving_default"]
    graph = fn.graph.as_graph_def()
    convs = [n for f in graph.library.function for n in f.node_def if n.op == "Conv2D"]
    assert convs and all(n.attr["T"].type == tf.bfloat16.as_datatype_enum for n in convs)
    image = tf.constant(np.asarray(Image.open(images / "wide.png"))[None])
    got = {k: v.numpy() for k, v in fn(images=image).items()}
    assert {k: str(v.dtype) for k, v in got.items()} == {
        "detection_boxes": "float32",
        "detection_scores": "float32",
        "detection_classes": "int32",
        "num_detections": "int32",
        "detection_masks": "float32",
    }
    want = {
        k: v.numpy()
        for k, v in tf.saved_model.load(str(base / "1")).signatures["serving_default"](images=image).items()
    }
    n = int(want["num_detections"][0])
    assert n > 0 and int(got["num_detections"][0]) == n  # score threshold 0: every slot
    # bfloat16 keeps 8 bits of mantissa: the scores agree to ~1e-2 (compared sorted: near-ties
    # of random weights may swap places)
    np.testing.assert_allclose(
        np.sort(got["detection_scores"][0]), np.sort(want["detection_scores"][0]), atol=3e-2
    )
    assert not np.array_equal(got["detection_scores"], want["detection_scores"])  # it did compute in bf16


@pytest.mark.slow
def test_predict_on_two_workers_gives_one_devices_predictions(setup, tmp_path):
    """The same ``predict --strategy multi_worker`` command on two localhost workers sharing one
    --out (a shared filesystem): each draws its share of the pictures, the chief writes
    predictions.json and images.json equal to a one-process run's (same order); the unreadable
    image is reported by both."""
    import subprocess
    import sys

    from training_fixtures import child_env, worker_envs

    _, base, images = setup

    def predict(out, env, extra=()):
        argv = [sys.executable, "-m", "mrcnn_tf.cli", "predict", str(images), "--saved-model", str(base)]
        argv += ["--out", str(out), "--score-threshold", "0", "--quiet", *extra]
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    procs = [predict(tmp_path / "shared", env, ["--strategy", "multi_worker"]) for env in worker_envs(2)]
    procs.append(predict(tmp_path / "one", child_env()))
    outputs = []
    for proc in procs:
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 1, output[-3000:]  # broken.png is skipped: exit status 1
        assert "broken.png" in output
        outputs.append(output)
    assert "worker 1 of 2: images 2, 4, ..." in outputs[1]
    for name in ("predictions.json", "images.json"):
        assert (tmp_path / "shared" / name).read_text() == (tmp_path / "one" / name).read_text(), name
    pictures = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert pictures == sorted(
        p.relative_to(tmp_path / "shared") for p in (tmp_path / "shared").rglob("*.png")
    )
    assert len(pictures) == 2 and json.loads((tmp_path / "one" / "predictions.json").read_text())
