"""The files of a training run, and loading trained weights.

A run directory holds::

    config.yaml          the resolved config (a resumed run must use the same one)
    label_map.json       class ids, names and the dataset's category ids
    checkpoints/         ckpt-<step>.weights.h5: model and optimizer state after each loop (a few kept)
    logs/                TensorBoard: losses, learning rate, COCO AP, prediction pictures
    eval/step_<N>/       metrics.json and detections.json of each evaluation
    model.weights.h5     the final weights (written when training finishes, before the last evaluation)
    train_state.json     {"finished": true, "step": N} once finished
    init_weights.json    what train.init_weights took (runs that start from other weights)
    .mrcnn_tf_run        marks the folder as a run of ours: ``--overwrite`` removes run files only here
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from registry.errors import ConfigError, UserError

#: What a run writes; ``--overwrite`` removes exactly these (nothing else in the directory).
RUN_FILES = (
    "config.yaml",
    "label_map.json",
    "checkpoints",
    "logs",
    "eval",
    "model.weights.h5",
    "train_state.json",
    "init_weights.json",
)
WEIGHTS = "model.weights.h5"
STATE = "train_state.json"
#: Written first into every run directory; its presence says the run files there are ours.
MARKER = ".mrcnn_tf_run"


def read_state(workdir: str | os.PathLike) -> dict:
    """``train_state.json`` of a run, or ``{}``."""
    path = Path(workdir) / STATE
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def write_state(workdir: str | os.PathLike, **state) -> None:
    path = Path(workdir) / STATE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def is_run_directory(workdir: str | os.PathLike) -> bool:
    """Whether a run of ours wrote ``workdir``: its marker, or (runs from before the marker)
    a ``train_state.json`` or a ``checkpoints/ckpt-<step>.weights.h5``."""
    workdir = Path(workdir)
    return (
        (workdir / MARKER).is_file()
        or (workdir / STATE).is_file()
        or any((workdir / "checkpoints").glob("ckpt-*.weights.h5"))
    )


def _foreign_files(workdir: Path) -> list[str]:
    """Run-file names present in ``workdir`` that a run of ours did not write."""
    if not workdir.is_dir() or is_run_directory(workdir):
        return []
    return [
        name + ("/" if (workdir / name).is_dir() else "") for name in RUN_FILES if (workdir / name).exists()
    ]


def prepare(workdir: str | os.PathLike, config_text: str, *, overwrite: bool) -> list[str]:
    """Get ``workdir`` ready: refuse to touch a finished run unless ``overwrite``; save the config.

    ``overwrite`` removes the files an earlier run of ours wrote (:data:`RUN_FILES`) and only
    in a folder that such a run wrote (:func:`is_run_directory`); everything else stays.

    Returns:
        The names removed (printed by the caller).

    Raises:
        UserError: the run finished (weights would be replaced), holds a different config, or
            the folder holds files of those names that no run of ours wrote (nothing is deleted).
    """
    workdir = Path(workdir)
    foreign = _foreign_files(workdir)
    if foreign:
        raise UserError(
            f"{workdir} holds {', '.join(foreign)} but no run of mrcnn-tf wrote them (no {MARKER}); nothing "
            "was changed or deleted. Choose another --workdir (an empty or new folder)"
        )
    removed = []
    if overwrite and is_run_directory(workdir):
        for name in RUN_FILES:
            path = workdir / name
            if path.is_dir():
                shutil.rmtree(path)
                removed.append(name + "/")
            elif path.exists():
                path.unlink()
                removed.append(name)
    state = read_state(workdir)
    if state.get("finished"):
        raise UserError(
            f"{workdir} holds a finished run (step {state.get('step')}, weights {workdir / WEIGHTS}); "
            "nothing was changed. Evaluate or export it, choose another --workdir, or pass --overwrite "
            "to delete that run and train again"
        )
    path = workdir / "config.yaml"
    if path.exists() and path.read_text(encoding="utf-8") != config_text:
        raise ConfigError(
            f"{path} holds a different config, so this run cannot resume from its checkpoints; choose "
            "another --workdir, or pass --overwrite to delete that run and start again"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text(
        "a run directory of mrcnn-tf: `train --overwrite` may replace its run files\n"
    )
    path.write_text(config_text, encoding="utf-8")
    return removed


def resolve_weights(path: str | os.PathLike) -> str:
    """The ``.weights.h5`` file that ``path`` stands for.

    ``path`` may be a ``.weights.h5`` file (final weights or a checkpoint), a ``checkpoints/``
    directory (its latest checkpoint), or a run directory (its final weights, else its latest
    checkpoint).

    Raises:
        UserError: nothing loadable at ``path``.
    """
    from mrcnn_tf.training.checkpoints import CheckpointStore

    path = Path(path)
    if path.is_dir():
        if (path / WEIGHTS).is_file():
            path = path / WEIGHTS
        else:  # no final weights: the newest checkpoint
            latest = CheckpointStore(path / "checkpoints").latest() or CheckpointStore(path).latest()
            if latest is None:
                raise UserError(
                    f"{path}: no {WEIGHTS} and no checkpoint in it; pass a weights file or a run directory"
                )
            path = latest[1]
    if not path.is_file():
        raise UserError(f"{path}: weights file not found")
    if not path.name.endswith(".weights.h5"):
        raise UserError(f"{path}: not a .weights.h5 file or a run directory")
    return str(path)


def load_weights(model, path: str | os.PathLike) -> str:
    """Load trained weights into a built ``model``; returns the file loaded.

    ``path``: as :func:`resolve_weights` takes it.

    Raises:
        UserError: nothing loadable at ``path``, or weights that do not fit the model.
    """
    path = resolve_weights(path)
    advice = (
        "to start from weights of another model (other classes, another head), set train.init_weights instead"
    )
    try:
        missing = [v.path for v in load_filled(model, path)]
    except ValueError as exc:
        raise UserError(
            f"{path}: these weights do not fit the model of this config ({exc}); {advice}"
        ) from exc
    except OSError as exc:
        raise UserError(f"{path}: not a Keras weights file (HDF5) or unreadable: {exc}") from exc
    extra = _model_arrays_in(path) - len(model.weights)
    if missing or extra > 0:
        what = (
            f"{len(missing)} of {len(model.weights)} variables are not in the file or have another shape "
            f"({', '.join(missing[:3])}, ...)"
            if missing
            else f"the file holds {extra} variables more than the model has (another head or depth?)"
        )
        raise UserError(
            f"{path}: these weights do not fit the model of this config: {what}; is it the config the "
            f"weights were trained with? {advice}"
        )
    return path


def float_variables(model) -> list:
    """The model's floating-point variables (the ones a NaN can mark)."""
    import numpy as np

    return [v for v in model.weights if np.dtype(v.dtype).kind == "f"]


def load_filled(model, path: str, *, skip_mismatch: bool = False) -> list:
    """Load ``path`` into ``model``; return the float variables the file did not fill.

    Found exactly, not parsed from Keras's warnings (Keras only warns about variables missing
    from the file or of another shape): every float variable is set to NaN first, and those
    still NaN afterwards were not loaded; they keep the NaN (the caller decides).
    """
    import warnings

    import numpy as np

    floats = float_variables(model)
    for v in floats:
        v.assign(np.full(v.shape, np.nan, np.dtype(v.dtype)))
    with warnings.catch_warnings():  # Keras lists the skipped layers; the caller reports them
        warnings.simplefilter("ignore")
        model.load_weights(path, skip_mismatch=skip_mismatch)
    return [v for v in floats if np.isnan(v.numpy()).any()]


def _model_arrays_in(path: str) -> int:
    """How many model (not optimizer) arrays a Keras ``.weights.h5`` file holds."""
    import h5py

    names: list[str] = []
    with h5py.File(path, "r") as handle:
        handle.visit(lambda n: names.append(n) if isinstance(handle[n], h5py.Dataset) else None)
    return sum(1 for n in names if n.split("/")[0] not in ("optimizer", "metrics"))
