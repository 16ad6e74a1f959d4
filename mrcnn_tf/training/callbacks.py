"""Keras callbacks of the trainer: checkpoints that survive ``kill -9``, a non-finite-loss guard,
and COCO evaluation with prediction pictures in TensorBoard.

A Keras "epoch" of the trainer is one *loop* of ``train.steps_per_loop`` optimizer steps;
checkpoints are written at the end of each loop, so a resumed run always starts at a loop
boundary.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np


class _LoopCallback(keras.callbacks.Callback):
    """Knows the training step from the loop (Keras epoch) and batch indices.

    The optimizer's ``iterations`` is not used: it does not count steps that a
    ``LossScaleOptimizer`` skipped.
    """

    def __init__(self, steps_per_loop: int):
        super().__init__()
        self.steps_per_loop = int(steps_per_loop)
        self._loop = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._loop = epoch

    def step_after_batch(self, batch: int) -> int:
        return self._loop * self.steps_per_loop + batch + 1

    def step_after_loop(self, epoch: int) -> int:
        return (epoch + 1) * self.steps_per_loop


class NonFiniteGuard(_LoopCallback):
    """Stop training at the first non-finite loss (``mode="stop"``), or report skipped steps.

    In ``stop`` mode the step, the loss terms and the last good checkpoint are kept in
    :attr:`failure` for the trainer's error message; the checkpoint callback saves nothing
    once this guard has tripped. In ``skip`` mode the optimizer skips the update itself (see
    :func:`mrcnn_tf.training.trainer.build_optimizer`) and this guard prints a warning once per loop.
    """

    def __init__(self, mode: str = "stop", steps_per_loop: int = 1):
        super().__init__(steps_per_loop)
        if mode not in ("stop", "skip"):
            raise ValueError(f"nonfinite mode must be 'stop' or 'skip', got '{mode}'")
        self.mode = mode
        self.failure: dict | None = None
        self._warned = False

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._warned = False

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        step = self.step_after_batch(batch)
        terms = {k: float(v) for k, v in logs.items() if k.endswith("_loss")}
        if self.mode == "skip":
            if not self._warned:
                print(f"\nwarning: non-finite loss at step {step}; the update was skipped ({terms})")
                self._warned = True
            return
        self.failure = {"step": step, "terms": terms}
        self.model.stop_training = True

    @property
    def tripped(self) -> bool:
        return self.failure is not None


class LoopCheckpoint(_LoopCallback):
    """Save model and optimizer state after every loop (see :mod:`mrcnn_tf.training.checkpoints`).

    ``store`` is None on the workers of a multi-worker run other than the chief: they save
    nothing (their variables equal the chief's). After the loop that ends at ``max_steps`` the
    final weights go to ``final_weights`` too, before any evaluation callback runs (a crash in
    the evaluation then cannot lose them).
    """

    def __init__(
        self,
        store,
        guard: NonFiniteGuard | None = None,
        steps_per_loop: int = 1,
        final_weights=None,
        max_steps: int | None = None,
    ):
        super().__init__(steps_per_loop)
        self.store = store
        self.guard = guard
        self.final_weights = final_weights
        self.max_steps = max_steps
        latest = store.latest() if store is not None else None
        self.last_saved: str | None = str(latest[1]) if latest else None

    def on_epoch_end(self, epoch, logs=None):
        if self.store is None or (self.guard is not None and self.guard.tripped):
            return
        step = self.step_after_loop(epoch)
        self.last_saved = str(self.store.save(self.model, step))
        if self.final_weights is not None and step == self.max_steps:
            self.model.save_weights(str(self.final_weights))


class CocoEvalCallback(_LoopCallback):
    """COCO evaluation every ``every`` loops and after the last one (on every worker: each
    predicts its share of the images; only the chief scores, writes and logs).

    Writes ``<out_dir>/step_<N>/metrics.json`` and ``detections.json``, appends to
    ``<out_dir>/history.jsonl``, prints the COCO summary, and logs the AP values and
    prediction pictures to TensorBoard under ``<log_dir>/eval``.
    """

    def __init__(
        self,
        evaluator,
        every: int,
        last_loop: int,
        out_dir,
        log_dir=None,
        verbose: bool = True,
        steps_per_loop: int = 1,
    ):
        super().__init__(steps_per_loop)
        self.evaluator = evaluator
        self.every = int(every)
        self.last_loop = int(last_loop)
        self.out_dir = Path(out_dir)
        self.log_dir = log_dir
        self.verbose = verbose
        self.history: list[dict] = []
        self.last_step: int | None = None  # the step of the last evaluation run here
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        loop = epoch + 1
        if loop != self.last_loop and (self.every <= 0 or loop % self.every):
            return
        self.run(self.step_after_loop(epoch))

    def run(self, step: int) -> dict:
        result = self.evaluator.evaluate(self.model, self.out_dir / f"step_{step}", step=step)
        self.last_step = step
        if result.get("chief") is False:  # another worker gathered and scored these detections
            return result
        record = {"step": step, **{t: result[t] for t in self.evaluator.iou_types_for(self.model)}}
        self.history.append(record)
        with open(self.out_dir / "history.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.verbose:
            print(f"\nCOCO evaluation at step {step} ({result['num_images']} images):\n{result['summary']}")
        self._log(step, result)
        return result

    def _log(self, step: int, result: dict) -> None:
        if self.log_dir is None:
            return
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(Path(self.log_dir) / "eval"))
        with self._writer.as_default(step=step):
            for iou_type in self.evaluator.iou_types_for(self.model):
                for name, value in result[iou_type].items():
                    tf.summary.scalar(f"{iou_type}/{name}", value)
            if result["pictures"]:
                for k, picture in enumerate(result["pictures"]):
                    tf.summary.image(f"predictions/{k}", np.asarray(picture)[None])
        self._writer.flush()


class LoopTensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback with the per-loop (``epoch_*``) scalars at the global step.

    Keras writes them at the epoch index (0, 1, 2, ...) on the same axis as the per-step
    ``batch_*`` scalars (steps 1..N), where they crowd the left edge and hide one another; here a
    loop's scalars are written at the step it ended on, and flushed at once, so every loop shows
    (also while the run goes on).
    """

    def __init__(self, log_dir: str, steps_per_loop: int, **kwargs):
        super().__init__(log_dir, **kwargs)
        self.steps_per_loop = int(steps_per_loop)

    def _log_epoch_metrics(self, epoch, logs):
        super()._log_epoch_metrics((epoch + 1) * self.steps_per_loop, logs)
        for writer in (self._train_writer, self._val_writer):
            writer.flush()


class LogLines(_LoopCallback):
    """One plain line every ``every`` steps and at the end of each loop, for logs that are not a
    terminal (CI, ``nohup``, ``| tee``): Keras's progress bar would write carriage-return frames.

    ``step 40/1200  loss 1.2345  rpn_objectness_loss 0.1234 ...  learning_rate 0.002  1.3 s/step``
    """

    def __init__(self, every: int, max_steps: int, steps_per_loop: int, stream=None):
        super().__init__(steps_per_loop)
        self.every = max(int(every), 1)
        self.max_steps = int(max_steps)
        self.stream = stream
        self._start = None

    def _print(self, step: int, logs) -> None:
        import sys
        import time

        now = time.perf_counter()
        rate = ""
        if self._start is not None:
            (t0, s0) = self._start
            if step > s0:
                rate = f"  {(now - t0) / (step - s0):.2f} s/step"
        values = "  ".join(f"{k} {float(v):.4g}" for k, v in (logs or {}).items() if np.ndim(v) == 0)
        print(f"step {step}/{self.max_steps}  {values}{rate}", file=self.stream or sys.stdout, flush=True)

    def on_train_batch_begin(self, batch, logs=None):
        if self._start is None:
            import time

            self._start = (time.perf_counter(), self.step_after_batch(batch) - 1)

    def on_train_batch_end(self, batch, logs=None):
        step = self.step_after_batch(batch)
        if step % self.every == 0 and batch + 1 < self.steps_per_loop:
            self._print(step, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._print(self.step_after_loop(epoch), logs)
