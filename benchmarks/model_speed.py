#!/usr/bin/env python3
"""Latency, first-call time and peak memory of Mask R-CNN: exported SavedModel, in-process, training.

    python benchmarks/model_speed.py                          # every case, R50-FPN, fp32, CPU
    python benchmarks/model_speed.py --cases export_640 export_1024 --repeat 5
    python benchmarks/model_speed.py --precision bfloat16 --cases keras_640
    python benchmarks/model_speed.py --gpu                    # float32, mixed, XLA; largest batch

Random weights, batch 1 unless the case says otherwise, 1000 test proposals and 100 detections
(``model.detection_generator.score_threshold=0`` so that all 100 slots hold a detection and the
mask head runs on 100 RoIs, as a trained model on a busy image would). Each case runs in a fresh
process, so its first call includes all graph tracing and its peak resident memory is its own:

- ``export_<S>``: ``mrcnn-tf export`` of the config (in-graph resize to ``S``; exported once
  beforehand in another process), then ``tf.saved_model.load`` and the ``serving_default``
  signature on a uint8 ``S x S`` image. First call = load + first request.
- ``keras_<S>``: the Keras model in a ``tf.function`` on a float ``S x S`` image. First call =
  build + trace + first run.
- ``train_<S>_b<B>``: forward, losses, backward and SGD update on a synthetic batch of ``B``
  images with 8 objects each.

With ``--peers``, each in-process inference case and each training case is also run with TF
Model Garden's Mask R-CNN (``tf-models-official``, installed on first use into its own virtual
environment under the cache folder; see ``peers/model_garden.py``), with its default 4conv+1fc
box head (``mg_default_*``) and the paper's 2-fc head (``mg_2fc_*``), and with torchvision's
``maskrcnn_resnet50_fpn`` (``tv_*``, eager PyTorch, its own venv; skipped with a message when
torch cannot be installed: CPU builds are not on every index), and the table shows ours/theirs.

``--gpu`` (a GPU must be visible to TensorFlow) runs every case in float32 and mixed precision
(``--mixed``: float16 by default), each also compiled with XLA (``--xla``: ``jit_compile=True``
with the XLA-ready settings ``gather`` RoI aligners, ``padded`` NMS, ``mask_slots: all``; the
export cases run once, float32), reports the GPU's peak memory, and adds ``train_max_<S>``:
training images/s at the largest batch that fits (batch doubled from 2 up to ``--max-batch``
until the GPU runs out of memory). ``--xla`` and ``--precision`` also work alone, on CPU too.

Prints a table (median and spread of ``--repeat`` runs after one warm-up run) and, with
``--json``, writes the numbers. Record results in BENCHMARKS.md with the machine and versions.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CASES = ("export_640", "export_1024", "keras_640", "keras_1024", "train_640_b1", "train_640_b2")
DEFAULT_CONFIG = "mask_rcnn_r50_fpn_1x_coco"
#: The benchmark's model settings on top of the config (see the module docstring).
BENCH_OVERRIDES = [
    "model.proposal_generator.pre_nms_topk_test=1000",
    "model.proposal_generator.post_nms_topk_test=1000",
    "model.detection_generator.max_detections=100",
    "model.detection_generator.score_threshold=0.0",
]
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def _peer_timing():
    """``peers/peer_timing.py`` (the record format shared with the peer scripts)."""
    path = Path(__file__).resolve().parent / "peers" / "peer_timing.py"
    spec = importlib.util.spec_from_file_location("peer_timing", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _overrides(args, size: int) -> list[str]:
    from mrcnn_tf.export.targets import XLA_OVERRIDES  # static shapes, no crop_and_resize or fused NMS

    sizes = [f"data.pipeline.min_size={size}", f"data.pipeline.max_size={size}"]
    return [*BENCH_OVERRIDES, *sizes, *(XLA_OVERRIDES if args.xla else []), *args.set]


def _set_precision(precision: str) -> None:
    import keras

    keras.mixed_precision.set_global_policy(POLICIES[precision])


def _build(args, size: int, target: str | None = None):
    """The benchmark model; ``target``: built as ``mrcnn-tf export --target`` builds it."""
    import keras

    import mrcnn_tf
    from mrcnn_tf.config import load_config
    from mrcnn_tf.export.targets import apply_target

    keras.utils.set_random_seed(0)
    _set_precision(args.precision)
    cfg = load_config(args.config, _overrides(args, size))
    if target is not None:
        cfg = apply_target(cfg, target)
    model = mrcnn_tf.build_model(cfg)
    model.build()
    return cfg, model


def _export_dir(args, size: int) -> Path:
    import mrcnn_tf
    from mrcnn_tf.data.synthetic import default_cache_dir

    digest = hashlib.sha256(json.dumps([args.config, _overrides(args, size), args.precision]).encode())
    for source in sorted(Path(mrcnn_tf.__file__).parent.rglob("*.py")):  # a code change re-exports
        digest.update(source.read_bytes())
    return default_cache_dir() / "bench-exports" / digest.hexdigest()[:12] / "1"


def export_model(args, size: int) -> Path:
    """Export the benchmark model for ``size`` once (cached); returns the version directory."""
    from mrcnn_tf.data.builder import build_input_pipeline
    from mrcnn_tf.export.saved_model import Preprocessing, export_saved_model

    path = _export_dir(args, size)
    if not (path / "saved_model.pb").is_file():
        cfg, model = _build(args, size, target="any")  # as `mrcnn-tf export` builds it
        tmp = path.with_name(f"tmp-{os.getpid()}")
        export_saved_model(
            model, tmp, Preprocessing.from_pipeline(build_input_pipeline(cfg)), {"categories": []}
        )
        tmp.rename(path)
    return path


def _image(size: int, dtype: str = "uint8"):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (1, size, size, 3)).astype(dtype)


def _wait(out) -> None:
    """Block until every tensor of ``out`` (any nesting of dicts, tuples, lists) is computed."""
    import numpy as np
    import tensorflow as tf

    for value in tf.nest.flatten(out):
        np.asarray(value)


def _synced(fn):
    """``fn`` that returns only once its outputs are computed (GPU work is asynchronous)."""

    def run():
        out = fn()
        _wait(out)
        return out

    return run


def run_case(args, case: str) -> dict:
    """Run one case in this process; returns its numbers (seconds, MB)."""
    import tensorflow as tf

    parts = case.split("_")
    kind, size = parts[0], int(parts[1])
    start = time.perf_counter()
    if kind == "export":
        path = _export_dir(args, size)
        loaded = tf.saved_model.load(str(path))
        serve = loaded.signatures["serving_default"]
        image = tf.constant(_image(size))

        def fn():
            return serve(images=image)

    elif kind == "keras":
        _, model = _build(args, size)
        image = tf.constant(_image(size, "float32"))
        fn = tf.function(lambda: model({"images": image}, training=False), jit_compile=args.xla)
    elif kind == "train":
        import keras

        from mrcnn_tf.data.synthetic import random_model_batch

        _, model = _build(args, size)
        batch = random_model_batch(batch=int(parts[2][1:]), size=size)
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        if args.precision == "float16":  # dynamic loss scaling, as the trainer does
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)

        @tf.function(jit_compile=args.xla)
        def fn():
            with tf.GradientTape() as tape:
                loss = model.compute_loss(y_pred=model(batch, training=True))
                scaled = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            return loss

    else:
        raise ValueError(f"unknown case {case}")
    result, out = _peer_timing().measure(case, start, _synced(fn), args.repeat)
    if tf.config.list_logical_devices("GPU"):
        result["peak_gpu_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    if kind in ("export", "keras"):
        result["num_detections"] = int(tf.reduce_sum(out["num_detections"]))
    else:
        result["images"] = list(batch["images"].shape)
    return result


def _environment() -> dict:
    import keras
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "device": gpus[0].name if gpus else "CPU",
    }


class CaseFailed(RuntimeError):
    """A case's process failed; ``out_of_memory`` when TensorFlow said so."""

    def __init__(self, message: str, out_of_memory: bool):
        super().__init__(message)
        self.out_of_memory = out_of_memory


def _child(args, *extra: str) -> dict:
    command = [sys.executable, __file__, "--config", args.config, "--precision", args.precision]
    command += ["--repeat", str(args.repeat), *[f"--set={s}" for s in args.set], *extra]
    command += ["--xla"] if args.xla else []
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        oom = "ResourceExhaustedError" in result.stderr or "Out of memory" in result.stderr
        raise CaseFailed(f"{' '.join(extra)} failed:\n{result.stderr[-4000:]}", oom)
    return json.loads(result.stdout.strip().splitlines()[-1])


def largest_batch(args, size: int) -> dict:
    """Training at the largest batch that fits (doubling from 2, up to ``--max-batch``)."""
    best = None
    batch = 2
    while batch <= args.max_batch:
        try:
            best = _child(args, f"--run-case=train_{size}_b{batch}")
        except CaseFailed as error:
            if not error.out_of_memory:
                raise
            break
        batch *= 2
    if best is None:
        raise SystemExit(f"training at {size}x{size} does not fit with batch 2")
    best["case"] = f"train_max_{size}"
    best["batch"] = best["images"][0]
    best["images_per_s"] = best["batch"] / best["median_s"]
    return best


PEERS_DIR = Path(__file__).resolve().parent / "peers"
#: name -> (script, pip arguments, variants, required). A required peer that cannot be
#: installed stops the run; an optional one (torchvision: builds differ per index) is skipped.
PEERS = {
    "mg": (PEERS_DIR / "model_garden.py", ["tf-models-official"], ("default", "2fc"), True),
    "tv": (
        PEERS_DIR / "tv_maskrcnn.py",
        ["--extra-index-url", "https://download.pytorch.org/whl/cpu", "torch", "torchvision"],
        (None,),
        False,
    ),
}


def _print_row(name: str, r: dict, ratio: float | None = None) -> None:
    extra = f"  GPU peak {r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else ""
    if "images_per_s" in r:
        extra += f"  batch {r['batch']}: {r['images_per_s']:.1f} images/s"
    print(
        f"{name:<34}{r['first_call_s']:>11.2f}s{r['median_s']:>9.3f}s{r['min_s']:>8.3f}s"
        f"{r['max_s']:>8.3f}s{r['peak_rss_mb']:>8.0f} MB"
        + (f"{ratio:>10.2f}x" if ratio else "  (ours)")
        + extra,
        flush=True,
    )


def _peer_python(name: str, given: str | None) -> Path | None:
    """The Python of a peer's own virtual environment (made on first use), or None if skipped."""
    from mrcnn_tf.data.synthetic import default_cache_dir

    if given:
        return Path(given)
    _, packages, _, required = PEERS[name]
    venv = default_cache_dir() / "peer-venvs" / packages[-1]
    names = " ".join(a for a in packages if not a.startswith("-") and "://" not in a)
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing {names} into {venv} (first run: minutes, GBs)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        install = subprocess.run([str(python), "-m", "pip", "install", "-q", *packages])
        if install.returncode != 0:
            python.unlink(missing_ok=True)
            flag = f"--{'model-garden' if name == 'mg' else 'torchvision'}-python"
            message = f"could not install {names} (offline, or no build for this machine)"
            if required:
                raise SystemExit(
                    f"{message}; pass {flag} PATH to a Python that has it, or run without --peers"
                )
            print(f"{packages[-1]}: skipped ({message}; {flag} PATH names a Python that has it)")
            return None
    return python


def _peer_case(args, name: str, python: Path, case: str, variant: str | None) -> dict:
    script = PEERS[name][0]
    command = [str(python), str(script), "--case", case, "--precision", args.precision]
    command += ["--repeat", str(args.repeat), *(["--variant", variant] if variant else [])]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{script.name} {case} ({variant}) failed:\n{result.stderr[-4000:]}")
    record = json.loads(result.stdout.strip().splitlines()[-1])
    record["case"] = "_".join(filter(None, [name, variant, case.removeprefix("keras_")]))
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="config name or file (default: %(default)s)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), help=f"subset of {' '.join(CASES)}")
    parser.add_argument("--repeat", type=int, default=5, help="measured runs after the warm-up")
    parser.add_argument("--precision", choices=tuple(POLICIES), default="float32")
    parser.add_argument("--xla", action="store_true", help="jit_compile=True with the XLA-ready settings")
    parser.add_argument("--gpu", action="store_true", help="float32, mixed and XLA variants of every case")
    parser.add_argument("--mixed", choices=("float16", "bfloat16"), default="float16", help="--gpu's mixed")
    parser.add_argument("--max-batch", type=int, default=64, help="--gpu: largest batch to try")
    parser.add_argument("--set", action="append", default=[], help="extra config override (repeatable)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--peers",
        nargs="*",
        choices=tuple(PEERS),
        help="also run the peers (all, or those named: mg = TF Model Garden, tv = torchvision), "
        "each in its own venv, per in-process and training case",
    )
    parser.add_argument(
        "--model-garden-python", help="a Python with tf-models-official (default: make a venv)"
    )
    parser.add_argument(
        "--torchvision-python", help="a Python with torch and torchvision (default: make a venv)"
    )
    parser.add_argument("--run-case", help=argparse.SUPPRESS)
    parser.add_argument("--export-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_case:
        print(json.dumps(run_case(args, args.run_case)))
        return 0
    if args.export_size:
        print(json.dumps({"export": str(export_model(args, args.export_size))}))
        return 0
    environment = _environment()  # children are fresh processes: this import costs them nothing
    if args.gpu and environment["device"] == "CPU":
        raise SystemExit("--gpu: TensorFlow sees no GPU here (check `nvidia-smi` and the CUDA build of TF)")
    print(
        f"{args.config} ({args.precision}), TF {environment['tensorflow']}, Keras {environment['keras']}, "
        f"{environment['device']}, {environment['cpu']} x{environment['cpu_count']}"
    )
    variants = [(args.precision, args.xla)]
    if args.gpu:
        variants = [("float32", False), (args.mixed, False), ("float32", True), (args.mixed, True)]
    print(
        f"{'case':<34}{'first call':>12}{'median':>10}{'min':>9}{'max':>9}{'peak RSS':>11}{'ours/peer':>11}"
    )
    pythons = {}
    if args.peers is not None:
        given = {"mg": args.model_garden_python, "tv": args.torchvision_python}
        pythons = {name: _peer_python(name, given[name]) for name in args.peers or PEERS}
        pythons = {name: python for name, python in pythons.items() if python is not None}
    results = []
    for precision, xla in variants:
        run = argparse.Namespace(**{**vars(args), "precision": precision, "xla": xla})
        tag = f" [{precision}{'+xla' if xla else ''}]" if len(variants) > 1 else ""
        cases = [c for c in args.cases if not (xla and c.startswith("export_"))]  # the export is not XLA
        for size in sorted({int(c.split("_")[1]) for c in cases if c.startswith("export_")}):
            _child(run, f"--export-size={size}")
        if args.gpu:
            cases += [
                f"train_max_{s}"
                for s in sorted({c.split("_")[1] for c in args.cases if c.startswith("train_")})
            ]
        for case in cases:
            if case.startswith("train_max_"):
                r = largest_batch(run, int(case.split("_")[2]))
            else:
                r = _child(run, f"--run-case={case}")
            r.update(precision=precision, xla=xla)
            results.append(r)
            _print_row(case + tag, r)
            if xla or precision == "float16" or case.startswith(("export_", "train_max_")):
                continue  # the peers are wired for float32 and bfloat16 without XLA
            for name, python in pythons.items():
                if name == "tv" and precision != "float32" and case.startswith("train_"):
                    continue  # torchvision's training case is float32 only
                for variant in PEERS[name][2]:
                    peer = _peer_case(run, name, python, case, variant)
                    results.append(peer)
                    _print_row(peer["case"] + tag, peer, r["median_s"] / peer["median_s"])
    if args.json:
        record = {
            "environment": environment,
            "config": args.config,
            "precision": args.precision,
            "results": results,
        }
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
