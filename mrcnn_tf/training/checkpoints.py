"""Checkpoints of a run: ``checkpoints/ckpt-<step>.weights.h5`` with model and optimizer state.

Keras's own ``save_weights`` file is used (it holds the optimizer's variables, its step
counter included) rather than ``tf.train.Checkpoint``: Keras 3 layers that keep their
sub-layers in lists or dicts are invisible to ``tf.train.Checkpoint``, which then saves and
restores only a fraction of the model without complaint (found while testing resumption).

Each checkpoint is written under a temporary name and renamed into place, so a process
killed while saving (even with ``kill -9``) leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_NAME = re.compile(r"^ckpt-(\d+)\.weights\.h5$")


class CheckpointStore:
    """The checkpoints of one run directory, newest last.

    Args:
        directory: where the ``ckpt-<step>.weights.h5`` files live.
        keep: how many of the newest to keep (older ones are deleted after each save).
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        self.directory = Path(directory)
        self.keep = int(keep)

    def all(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of every checkpoint, by step."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            match = _NAME.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest(self) -> tuple[int, Path] | None:
        """The newest checkpoint, or None."""
        found = self.all()
        return found[-1] if found else None

    def save(self, model, step: int) -> Path:
        """Write the model's and its optimizer's state at ``step``; prune old checkpoints."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"ckpt-{int(step)}.weights.h5"
        partial = self.directory / f".partial-ckpt-{int(step)}.weights.h5"
        model.save_weights(str(partial))
        os.replace(partial, path)
        for _, old in self.all()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def restore(self, model) -> tuple[int, Path] | None:
        """Load the newest checkpoint into a built model with a built optimizer; its ``(step, path)``.

        None (and nothing loaded) when there is no checkpoint.
        """
        latest = self.latest()
        if latest is not None:
            model.load_weights(str(latest[1]))
        return latest
