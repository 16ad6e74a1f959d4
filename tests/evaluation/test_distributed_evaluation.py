"""COCO evaluation on every replica and worker: MirroredStrategy over 2 logical CPUs, and a real
two-process MultiWorkerMirroredStrategy cluster on localhost, against one device.

Each run is its own process (``distributed_eval.py``): logical devices and clusters must be set
before TensorFlow starts. 7 images in batches of 2 (the last batch short): the detections, their
order and the image ids must be exactly one device's, and each batch must have run on the replica
or worker it belongs to.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from training_fixtures import DISTRIBUTED_EVAL, child_env, tiny_config, worker_envs

SCRIPT = Path(__file__).with_name("distributed_eval.py")
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _start(mode: str, weights: Path, out: Path, env: dict | None = None) -> subprocess.Popen:
    argv = [sys.executable, str(SCRIPT), mode, str(weights), str(out)]
    env = env or child_env(PYTHONPATH=str(ROOT))
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> None:
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-4000:]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("single_eval")
    _finish(_start("single", root / "w.weights.h5", root / "single.json"))
    record = json.loads((root / "single.json").read_text())
    assert record["predicted"] == [[0, 0], [1, 0], [2, 0], [3, 0]]
    assert len(record["image_ids"]) == 7 and record["results"]
    return root / "w.weights.h5", record


def _assert_same_detections(got: dict, want: dict) -> None:
    assert got["image_ids"] == want["image_ids"]
    assert len(got["results"]) == len(want["results"])
    for a, b in zip(got["results"], want["results"], strict=True):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-3) and a["score"] == pytest.approx(
            b["score"], abs=1e-5
        )
        assert a["segmentation"] == b["segmentation"]


def test_mirrored_over_two_devices_splits_the_batches_and_gives_one_devices_detections(single, tmp_path):
    weights, want = single
    _finish(_start("mirrored", weights, tmp_path / "m.json"))
    got = json.loads((tmp_path / "m.json").read_text())
    assert got["replicas"] == 2
    assert got["predicted"] == [[0, 0], [1, 1], [2, 0], [3, 1]]  # batch b on replica b % 2
    _assert_same_detections(got, want)


def test_two_workers_on_localhost_each_predict_their_batches_and_the_chief_gathers(single, tmp_path):
    weights, want = single
    procs = [
        _start("multi_worker", weights, tmp_path / "w.json", env)
        for env in worker_envs(2, PYTHONPATH=str(ROOT))
    ]
    for proc in procs:
        _finish(proc)
    chief = json.loads((tmp_path / "w.json").read_text())
    other = json.loads((tmp_path / "w.json.1").read_text())
    assert (chief["worker"], other["worker"], chief["workers"]) == (0, 1, 2)
    assert [i for i, _ in chief["predicted"]] == [0, 2] and [i for i, _ in other["predicted"]] == [1, 3]
    assert "results" not in other  # only the chief holds the gathered detections
    _assert_same_detections(chief, want)


def test_mrcnn_tf_evaluate_on_two_workers_writes_one_devices_metrics(single, tmp_path):
    """The same ``mrcnn-tf evaluate`` command on each worker (``runtime.strategy=multi_worker``,
    ``TF_CONFIG``): the chief writes metrics equal to a one-device run's; the other writes nothing."""
    import shutil

    from registry.config import dump_config

    weights, _ = single
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(weights, run / "model.weights.h5")
    (run / "config.yaml").write_text(dump_config(tiny_config(*DISTRIBUTED_EVAL)))

    def evaluate(out: Path, env: dict | None = None) -> subprocess.Popen:
        argv = [sys.executable, "-m", "mrcnn_tf.cli", "evaluate", "--weights", str(run), "--out", str(out)]
        if env is not None:
            argv += ["--set", "runtime.strategy=multi_worker"]
        env = env or child_env(PYTHONPATH=str(ROOT))
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    procs = [evaluate(tmp_path / f"w{i}", env) for i, env in enumerate(worker_envs(2, PYTHONPATH=str(ROOT)))]
    procs.append(evaluate(tmp_path / "one"))
    for proc in procs:
        _finish(proc)
    want = json.loads((tmp_path / "one" / "metrics.json").read_text())
    got = json.loads((tmp_path / "w0" / "metrics.json").read_text())
    assert (
        want["num_images"] == got["num_images"] == 7 and want["num_detections"] == got["num_detections"] > 0
    )
    for iou_type in ("bbox", "segm"):
        assert got[iou_type] == pytest.approx(want[iou_type], abs=1e-6)
    assert not (tmp_path / "w1").exists()  # the other worker wrote nothing
