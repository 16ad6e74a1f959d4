"""Train a detector with ``model.fit`` under ``tf.distribute``: the ``mrcnn-tf train`` command.

:func:`train` builds the model and the optimizer inside the strategy's scope, restores the
latest checkpoint of the run directory if there is one (model, optimizer state and step:
the learning-rate schedule and the data order continue where they stopped), and calls
``model.fit`` one loop (``train.steps_per_loop`` steps) per Keras epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mrcnn_tf.training import workdir as run_files
from mrcnn_tf.training.settings import EvalSettings, RuntimeSettings, TrainSettings
from registry.errors import ConfigError, UserError


class TrainingError(UserError):
    """Training stopped on a non-finite loss."""


def build_optimizer(cfg: Mapping[str, Any], settings: TrainSettings, global_batch_size: int):
    """The optimizer of ``cfg["optimizer"]`` driven by the schedule of ``cfg["schedule"]``.

    The schedule's ``base_learning_rate`` is scaled by ``global_batch_size /
    train.reference_batch_size`` when that is set; a cosine schedule without ``total_steps``
    ends at ``train.max_steps``. ``train.nonfinite: skip`` (or ``mixed_float16``) wraps the
    optimizer in Keras's ``LossScaleOptimizer``, which skips any step whose gradients are not
    finite (with ``skip`` alone the loss scale starts at 1, so float32 results are unchanged).
    """
    import keras

    from mrcnn_tf.registries import OPTIMIZERS, SCHEDULES
    from mrcnn_tf.training.schedules import WarmupCosineDecay

    opt_spec = dict(cfg.get("optimizer") or {"type": "SGD"})
    if "learning_rate" in opt_spec:
        raise ConfigError(
            "set the learning rate as schedule.base_learning_rate (the schedule drives the optimizer)",
            key="optimizer.learning_rate",
        )
    schedule = SCHEDULES.build(cfg.get("schedule") or {"type": "WarmupStepDecay"})
    if isinstance(schedule, WarmupCosineDecay) and schedule.total_steps <= 0:
        schedule = WarmupCosineDecay(**{**schedule.get_config(), "total_steps": settings.max_steps})
    if settings.reference_batch_size:
        schedule = schedule.scaled(global_batch_size / settings.reference_batch_size)
    optimizer = OPTIMIZERS.build(opt_spec, learning_rate=schedule)
    if settings.mixed_precision == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    if settings.nonfinite == "skip":
        return keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=1.0)
    return optimizer


@contextlib.contextmanager
def process_settings(mixed_precision: str | None, deterministic: bool) -> Iterator[None]:
    """Set Keras's dtype policy and TensorFlow's op determinism for a run; restore both after.

    Both are process-wide: a library call must not leave them changed behind the caller.
    """
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config  # the public API has no getter

    policy = keras.config.dtype_policy()
    was_deterministic = tf_config.is_op_determinism_enabled()
    keras.config.set_dtype_policy(mixed_precision or "float32")
    if deterministic and not was_deterministic:
        # TensorFlow's CPU and GPU kernels are not bit-reproducible run to run without this
        # (measured: 1e-3 apart after 4 steps of the tiny test model); it costs some speed.
        tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        keras.config.set_dtype_policy(policy)
        if deterministic and not was_deterministic:
            tf_config.disable_op_determinism()


def train(
    cfg: Mapping[str, Any],
    workdir: str | os.PathLike,
    *,
    overwrite: bool = False,
    verbose: int | str = "auto",
    strategy=None,
) -> dict:
    """Train (or resume training) the model of ``cfg`` in ``workdir``.

    Args:
        cfg: a loaded config (see :func:`mrcnn_tf.config.load_config`).
        workdir: the run directory (see :mod:`mrcnn_tf.training.workdir`).
        overwrite: delete an earlier run in ``workdir`` first (never done without it).
        verbose: Keras ``fit`` verbosity (``auto``: a progress bar).
        strategy: a ``tf.distribute`` strategy; default from ``runtime.strategy``.

    Returns:
        ``{"step", "weights", "metrics", "history", "loss_history"}``.

    Raises:
        TrainingError: a non-finite loss (``train.nonfinite: stop``), naming the step and the
            last good checkpoint.
        UserError: a finished run in ``workdir`` without ``overwrite``, bad config or data.
    """
    settings = TrainSettings.from_config(cfg)
    runtime = RuntimeSettings.from_config(cfg)
    with process_settings(settings.mixed_precision, runtime.deterministic):
        return _train(
            cfg, settings, runtime, workdir, overwrite=overwrite, verbose=verbose, strategy=strategy
        )


def _train(
    cfg, settings: TrainSettings, runtime: RuntimeSettings, workdir, *, overwrite, verbose, strategy
) -> dict:
    import keras
    import tensorflow as tf

    from mrcnn_tf import build_model
    from mrcnn_tf.data.builder import build_dataset, build_input_pipeline, check_num_classes
    from mrcnn_tf.evaluation.evaluator import CocoEvaluator
    from mrcnn_tf.export.targets import for_this_machine
    from mrcnn_tf.training.callbacks import (
        CocoEvalCallback,
        LogLines,
        LoopCheckpoint,
        LoopTensorBoard,
        NonFiniteGuard,
    )
    from mrcnn_tf.training.checkpoints import CheckpointStore
    from mrcnn_tf.training.init_weights import initialize_from
    from mrcnn_tf.training.strategy import build_strategy, is_chief
    from registry.config import dump_config

    if strategy is None:
        strategy = build_strategy(runtime.strategy)
    eval_settings = EvalSettings.from_config(cfg)
    workdir = Path(workdir)
    resuming = CheckpointStore(workdir / "checkpoints").latest() is not None  # init_weights is not read
    if settings.init_weights and not resuming and not Path(settings.init_weights).exists():
        from mrcnn_tf.convert.backbones import missing_start_message

        raise UserError(
            missing_start_message(settings.init_weights)
            or f"train.init_weights: {settings.init_weights} does not exist (a run directory or .weights.h5)"
        )
    chief = is_chief(strategy)
    if chief:
        removed = run_files.prepare(workdir, dump_config(cfg), overwrite=overwrite)
        if removed and verbose:
            print(f"--overwrite: removed {', '.join(removed)} of the earlier run in {workdir}")

    train_data = build_dataset(cfg, "train")
    report = getattr(train_data, "report", None)
    refused = [p for p in (report.problems if report else []) if p.kind == "no_trainable_instances"]
    if refused:
        raise UserError(f"data.train ({report.source}): {refused[0].message}; nothing to train on")
    check_num_classes(cfg, train_data)
    val_data = build_dataset(cfg, "val") if (cfg.get("data") or {}).get("val") else None
    pipeline = build_input_pipeline(cfg)
    if chief:
        train_data.category_map.save(workdir / "label_map.json")

    keras.utils.set_random_seed(runtime.seed)
    with strategy.scope():
        model = build_model(for_this_machine(cfg))  # direct convs where a GPU runs the evaluation
        blockers = model.xla_blockers() if settings.jit_compile and hasattr(model, "xla_blockers") else []
        if blockers:
            raise ConfigError(
                f"true needs {' '.join(blockers)} (XLA has no crop_and_resize kernel and needs "
                "static shapes): add them to the config or as --set overrides",
                key="train.jit_compile",
            )
        model.build()
        optimizer = build_optimizer(cfg, settings, pipeline.batch_size)
        model.compile(optimizer=optimizer, jit_compile=bool(settings.jit_compile))
        optimizer.build(model.trainable_variables)
    store = CheckpointStore(workdir / "checkpoints", keep=settings.keep_checkpoints)
    latest = store.restore(model)  # (step, path): the step is in the file name
    start = latest[0] if latest else 0
    if start % settings.steps_per_loop:
        raise UserError(f"{latest[1]}: saved at step {start}, not at a multiple of train.steps_per_loop")
    if verbose and latest:
        print(f"resuming from {latest[1]} (step {start} of {settings.max_steps})")
    if settings.init_weights and not latest:
        report = initialize_from(model, settings.init_weights, settings.init_components)
        if chief:
            (workdir / "init_weights.json").write_text(
                json.dumps(dataclasses.asdict(report), indent=2) + "\n", encoding="utf-8"
            )
        if verbose:
            print(report.summary())

    def dataset_fn(input_context=None):
        # Each step takes one batch per replica from this worker's pipeline.
        per_step = (
            input_context.num_replicas_in_sync // input_context.num_input_pipelines if input_context else 1
        )
        return pipeline(train_data, training=True, input_context=input_context, skip_batches=start * per_step)

    if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        data = dataset_fn()
    else:
        data = strategy.distribute_datasets_from_function(dataset_fn)

    guard = NonFiniteGuard(settings.nonfinite, settings.steps_per_loop)
    weights = workdir / run_files.WEIGHTS
    saver = LoopCheckpoint(
        store if chief else None,
        guard,
        settings.steps_per_loop,
        final_weights=weights,
        max_steps=settings.max_steps,
    )
    callbacks: list = [guard, saver]
    evaluator_cb = None
    log_dir = None
    if chief:
        log_dir = workdir / "logs" if importlib.util.find_spec("tensorboard") else None
        if log_dir is None:
            print("warning: the tensorboard package is not installed; no TensorBoard logs are written")
        else:
            callbacks.append(
                LoopTensorBoard(
                    str(log_dir), settings.steps_per_loop, update_freq=settings.log_every, write_graph=False
                )
            )
    if val_data is not None:  # on every worker: each predicts its share, the chief scores and writes
        evaluator = CocoEvaluator(
            val_data,
            pipeline,
            mask_threshold=eval_settings.mask_threshold,
            mask_paste=eval_settings.mask_paste,
            max_images=eval_settings.max_images,
            num_pictures=settings.num_pictures,
            strategy=strategy,
        )
        evaluator_cb = CocoEvalCallback(
            evaluator,
            settings.eval_every,
            settings.num_loops,
            workdir / "eval",
            log_dir,
            verbose=bool(verbose) and chief,
            steps_per_loop=settings.steps_per_loop,
        )
        callbacks.append(evaluator_cb)
    if verbose == "auto" and not sys.stdout.isatty():
        # Not a terminal (CI, nohup, | tee): plain lines instead of progress-bar frames.
        callbacks.append(LogLines(settings.log_every, settings.max_steps, settings.steps_per_loop))
        verbose = 0
    history = {}
    if start < settings.max_steps:
        fit = model.fit(
            data,
            shuffle=False,
            epochs=settings.num_loops,
            initial_epoch=start // settings.steps_per_loop,
            steps_per_epoch=settings.steps_per_loop,
            callbacks=callbacks,
            verbose=verbose,
        )
        history = fit.history
    if guard.tripped:
        failure = guard.failure
        last = saver.last_saved or "none (no loop finished)"
        raise TrainingError(
            f"the loss became non-finite at step {failure['step']} (loss terms over the current loop: "
            f"{failure['terms']}); training stopped and nothing after the last good checkpoint was saved. "
            f"Last good checkpoint: {last}. Lower schedule.base_learning_rate, set optimizer.clipnorm, "
            "check the data (`mrcnn-tf data check`), or set train.nonfinite=skip; then run the same command "
            "to resume from that checkpoint"
        )
    step = settings.max_steps
    metrics = None
    if chief and not weights.is_file():  # resumed after the last loop: the saver did not run
        model.save_weights(str(weights))
    if evaluator_cb is not None and evaluator_cb.last_step is None:  # resumed after the last loop
        evaluator_cb.set_model(model)
        evaluator_cb.run(step)  # on every worker (each predicts its share)
    if chief:
        if evaluator_cb is not None:
            metrics = {k: v for k, v in evaluator_cb.history[-1].items() if k != "step"}
        run_files.write_state(workdir, finished=True, step=step, weights=str(weights), metrics=metrics)
    return {
        "step": step,
        "weights": str(weights),
        "metrics": metrics,
        "history": evaluator_cb.history if evaluator_cb else [],
        "loss_history": history,
        "model": model,
    }
