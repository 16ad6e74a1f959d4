"""The ``train:`` and ``evaluation:`` sections of a config, checked key by key."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from mrcnn_tf.config_schema import constructed
from registry.errors import ConfigError

MIXED_PRECISION = (None, "float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class TrainSettings:
    """``train:``: how long, how often, and in which precision to train.

    Attributes:
        max_steps: optimizer steps in all.
        steps_per_loop: steps between checkpoints (one Keras "epoch" and progress bar);
            ``max_steps`` must be a multiple of it.
        keep_checkpoints: how many recent checkpoints to keep.
        eval_every: run the COCO evaluation every this many loops (0: only after the last).
        reference_batch_size: when set, the schedule's learning rate is multiplied by
            ``global batch / reference_batch_size`` (the linear scaling rule, Goyal et al. 2017).
        nonfinite: ``stop`` (a non-finite loss stops the run with an error naming the step and
            the last good checkpoint) or ``skip`` (the update of that step is skipped).
        mixed_precision: ``mixed_float16`` (with dynamic loss scaling) or ``mixed_bfloat16``;
            None or ``float32`` trains in float32.
        jit_compile: compile the training step with XLA (use ``backend: gather`` RoI aligners).
        log_every: steps between TensorBoard scalar writes.
        num_pictures: prediction pictures logged to TensorBoard at each evaluation.
        init_weights: start a new run from these weights (a run directory or ``.weights.h5``):
            every weight whose layer and shape fit is taken, the rest start fresh (fine-tuning,
            another number of classes). Ignored when the run resumes from its own checkpoint.
        init_components: take only these components' weights from ``init_weights``
            (e.g. ``[backbone, neck]``); None takes everything that fits.
    """

    RANGES: ClassVar[dict] = {
        "max_steps": (1, None),
        "steps_per_loop": (1, None),
        "keep_checkpoints": (1, None),
        "eval_every": (0, None),
        "reference_batch_size": (1, None),
        "log_every": (1, None),
        "num_pictures": (0, None),
    }

    max_steps: int = 1000
    steps_per_loop: int = 100
    keep_checkpoints: int = 3
    eval_every: int = 0
    reference_batch_size: int | None = None
    nonfinite: str = "stop"
    mixed_precision: str | None = None
    jit_compile: bool = False
    log_every: int = 20
    num_pictures: int = 4
    init_weights: str | None = None
    init_components: list[str] | None = None

    def __post_init__(self):
        if self.max_steps < 1 or self.steps_per_loop < 1:
            raise ConfigError("train.max_steps and train.steps_per_loop must be positive")
        self.steps_per_loop = min(self.steps_per_loop, self.max_steps)
        if self.max_steps % self.steps_per_loop:
            raise ConfigError(
                f"train.max_steps ({self.max_steps}) must be a multiple of train.steps_per_loop "
                f"({self.steps_per_loop}): checkpoints are written at the end of each loop",
                key="train.max_steps",
            )
        if self.nonfinite not in ("stop", "skip"):
            raise ConfigError(f"must be 'stop' or 'skip', got {self.nonfinite!r}", key="train.nonfinite")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(
                f"must be one of mixed_float16, mixed_bfloat16, float32, got {self.mixed_precision!r}",
                key="train.mixed_precision",
            )
        if self.init_components is not None and (
            isinstance(self.init_components, str) or not all(isinstance(c, str) for c in self.init_components)
        ):
            raise ConfigError(
                f"must be a list of component names like [backbone, neck], got {self.init_components!r}",
                key="train.init_components",
            )
        if self.keep_checkpoints < 1:
            raise ConfigError("must be at least 1", key="train.keep_checkpoints")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> TrainSettings:
        return constructed(cls, cfg.get("train"), "train")

    @property
    def num_loops(self) -> int:
        return self.max_steps // self.steps_per_loop


@dataclasses.dataclass
class EvalSettings:
    """``evaluation:``: how the COCO evaluation runs.

    Attributes:
        mask_threshold: pasted mask probabilities are binarised at ``>=`` this.
        max_images: evaluate the first ``max_images`` validation images only (None: all).
        mask_paste: how a box-relative mask is pasted into the image: ``detectron2`` (bilinear
            over the box, zero outside) or ``torchvision`` (its ``paste_masks_in_image``); see
            :func:`mrcnn_tf.ops.masks.paste_mask_crop`. ``predict`` uses it too.
    """

    RANGES: ClassVar[dict] = {"mask_threshold": (0.0, 1.0), "max_images": (1, None)}

    mask_threshold: float = 0.5
    max_images: int | None = None
    mask_paste: str = "detectron2"

    def __post_init__(self) -> None:
        if self.mask_paste not in ("detectron2", "torchvision"):
            raise ConfigError(
                f"must be detectron2 or torchvision, got {self.mask_paste!r}", key="evaluation.mask_paste"
            )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> EvalSettings:
        return constructed(cls, cfg.get("evaluation"), "evaluation")


@dataclasses.dataclass
class RuntimeSettings:
    """``runtime:``: where and how reproducibly a run executes.

    Attributes:
        seed: seed of Keras, NumPy and TensorFlow's random generators (weights, sampling).
        strategy: ``tf.distribute`` strategy (see :func:`mrcnn_tf.training.strategy.build_strategy`).
        deterministic: bit-reproducible runs (``tf.config.experimental.enable_op_determinism``,
            slower); set for the run and restored after it.
    """

    RANGES: ClassVar[dict] = {"seed": (0, 2**31 - 1)}

    seed: int = 0
    strategy: str = "auto"
    deterministic: bool = False

    def __post_init__(self):
        from mrcnn_tf.training.strategy import STRATEGIES

        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown strategy '{self.strategy}'; choose one of {', '.join(STRATEGIES)}",
                key="runtime.strategy",
            )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> RuntimeSettings:
        return constructed(cls, cfg.get("runtime"), "runtime")
