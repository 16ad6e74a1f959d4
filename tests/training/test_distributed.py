"""Training under tf.distribute: MirroredStrategy over 2 logical CPUs, and a real two-process
MultiWorkerMirroredStrategy cluster on localhost, against one device with the same global batch.

Each run is its own process (logical devices and clusters must be set before TensorFlow
starts). Sampling is seeded per example by the input pipeline, and loss normalisers are
global over replicas, so the split of the batch does not change the update.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from training_fixtures import child_env, worker_envs

RUN = Path(__file__).with_name("distributed_run.py")


def _run(mode, workdir, out, env=None, timeout=600):
    return subprocess.Popen(
        [sys.executable, str(RUN), mode, str(workdir), str(out)],
        env=env or child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc, timeout=600):
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output[-4000:]
    return output


def _weights(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("single")
    _finish(_run("single", root / "run", root / "w.npz"))
    return _weights(root / "w.npz")


def _assert_same(a, b, rtol=2e-4, atol=2e-5):
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=atol, err_msg=key)


@pytest.mark.slow
def test_mirrored_over_two_devices_equals_one_device(single, tmp_path):
    output = _finish(_run("mirrored", tmp_path / "run", tmp_path / "w.npz"))
    assert "replicas 2 step 2" in output
    mirrored = _weights(tmp_path / "w.npz")
    # the weights moved, and equally
    assert any(not np.allclose(v, 0) for k, v in single.items() if k.endswith("kernel"))
    _assert_same(single, mirrored)
    metrics = json.loads((tmp_path / "run" / "eval" / "step_2" / "metrics.json").read_text())
    assert metrics["num_images"] == 3  # evaluated on both replicas (tests/evaluation: how they split)


@pytest.mark.slow
def test_two_worker_cluster_on_localhost_trains_identical_weights(single, tmp_path):
    procs = [
        _run(
            "multi_worker",
            tmp_path / "run",  # a shared run directory, as on a shared filesystem
            tmp_path / f"w{i}.npz",
            env=env,
        )
        for i, env in enumerate(worker_envs(2))
    ]
    outputs = [_finish(p) for p in procs]
    assert all("replicas 2 step 2" in out for out in outputs)
    w0, w1 = _weights(tmp_path / "w0.npz"), _weights(tmp_path / "w1.npz")
    _assert_same(w0, w1, rtol=0, atol=0)
    _assert_same(single, w0)
    # only the chief wrote the run's files; the final evaluation ran on both workers (a worker that
    # skipped it would leave the chief waiting in the all-gather) and the chief scored 3 images
    assert (tmp_path / "run" / "model.weights.h5").is_file()
    metrics = json.loads((tmp_path / "run" / "eval" / "step_2" / "metrics.json").read_text())
    assert metrics["num_images"] == 3 and metrics["step"] == 2


def test_the_multi_worker_shim_is_still_needed():
    """Keras without the shim still fails as reported in keras-team/keras#20585.

    When this fails, upstream fixed one of the two bugs: drop that half of
    :mod:`mrcnn_tf.training.multi_worker`.
    """
    script = Path(__file__).with_name("keras_multi_worker_probe.py")
    results = {}
    for patch in ("none", "build_only", "all"):
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), patch],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for env in worker_envs(2)
        ]
        outputs = [p.communicate(timeout=300)[0] for p in procs]
        results[patch] = outputs[0]
    assert "Attempt to convert a value (PerReplica" in results["none"]
    assert "Invalid reduction dimension 0" in results["build_only"]
    assert "FIT OK" in results["all"], results["all"][-3000:]
