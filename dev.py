#!/usr/bin/env python3
"""Project tasks that need nothing but Python 3.10+ and pip.

    python3 dev.py demo        # the main job (creates .venv and installs the project first)
    python3 dev.py test        # the default test suite (fast; what CI runs)
    python3 dev.py test-slow   # the slow tests
    python3 dev.py test-torch  # parity with torch/torchvision (creates .venv-torch for them)
    python3 dev.py test-gpu    # the GPU tier and the GPU benchmark (on a machine with a GPU)
    python3 dev.py lint        # ruff check + ruff format --check
    python3 dev.py format      # ruff format + ruff check --fix

Each task creates ``.venv`` next to this file on first use and (re)installs the project in
editable mode with its test extras whenever ``pyproject.toml`` changes. Extra arguments are
passed on (``python3 dev.py test -k registry``, ``python3 dev.py demo --workdir /tmp/demo``).
Set ``MRCNN_TF_VENV`` to use another virtual environment folder.

``test-torch`` also creates ``.venv-torch``, a separate environment with only torch,
torchvision, NumPy and Pillow (``MRCNN_TF_TORCH_VENV`` moves it): the reference scripts of the
parity tests run there in subprocesses, so torch is never a dependency of the package or of
``.venv``. torch's Linux wheels are CUDA builds of several GB; they run on the CPU.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("MRCNN_TF_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".mrcnn_tf-install-stamp"
TORCH_VENV = Path(os.environ.get("MRCNN_TF_TORCH_VENV", ROOT / ".venv-torch"))
TORCH_PYTHON = (
    TORCH_VENV / ("Scripts" if os.name == "nt" else "bin") / ("python.exe" if os.name == "nt" else "python")
)
#: What the parity tests' reference scripts need; torch/torchvision pinned to a pair that works together.
TORCH_REQUIREMENTS = ("torch==2.14.1", "torchvision==0.29.1", "numpy", "pillow")


def _run(*cmd: str | os.PathLike) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.call([str(c) for c in cmd], cwd=ROOT)


def ensure_env() -> None:
    """Create the virtual environment and install the project if needed."""
    if not PYTHON.exists():
        print(f"creating virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    print("installing mrcnn_tf and its dependencies (first run: a few minutes)", flush=True)
    if _run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip") != 0:
        sys.exit("pip could not upgrade itself; see the messages above")
    if _run(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[test]") != 0:
        sys.exit("installing the project failed; see the messages above")
    STAMP.write_text(digest)


def ensure_torch_env() -> None:
    """Create the separate torch environment of the parity tests if needed."""
    stamp = TORCH_VENV / ".mrcnn_tf-torch-stamp"
    wanted = " ".join(TORCH_REQUIREMENTS)
    if TORCH_PYTHON.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return
    if not TORCH_PYTHON.exists():
        print(f"creating the torch environment {TORCH_VENV} (several GB: torch's wheels are CUDA builds)")
        venv.EnvBuilder(with_pip=True).create(TORCH_VENV)
    if _run(TORCH_PYTHON, "-m", "pip", "install", "--quiet", *TORCH_REQUIREMENTS) != 0:
        sys.exit("installing torch and torchvision failed; see the messages above")
    stamp.write_text(wanted)


def main(argv: list[str]) -> int:
    tasks = ("demo", "test", "test-slow", "test-torch", "test-gpu", "lint", "format")
    if not argv or argv[0] not in tasks:
        print(__doc__)
        return 2
    task, rest = argv[0], argv[1:]
    ensure_env()
    if task == "demo":
        return _run(BIN / "mrcnn-tf", "demo", *rest)
    if task == "test":
        return _run(PYTHON, "-m", "pytest", "-m", "not slow and not gpu and not torch", *rest)
    if task == "test-slow":
        return _run(PYTHON, "-m", "pytest", "-m", "slow and not torch", *rest)
    if task == "test-torch":
        ensure_torch_env()
        os.environ["MRCNN_TF_TORCH_PYTHON"] = str(TORCH_PYTHON)
        return _run(PYTHON, "-m", "pytest", "-m", "torch", *rest)
    if task == "test-gpu":  # the GPU tier, then the GPU benchmark (a lent device: see BENCHMARKS.md)
        code = _run(PYTHON, "-m", "pytest", "-m", "gpu", "-rs", *rest)
        bench = ROOT / "benchmarks" / "model_speed.py"
        return code or _run(PYTHON, bench, "--gpu", "--repeat", "3", "--json", ROOT / "gpu_benchmark.json")
    if task == "lint":
        code = _run(PYTHON, "-m", "ruff", "check", ".")
        return code or _run(PYTHON, "-m", "ruff", "format", "--check", ".")
    code = _run(PYTHON, "-m", "ruff", "format", ".")
    return code or _run(PYTHON, "-m", "ruff", "check", "--fix", ".")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
