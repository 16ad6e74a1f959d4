"""Where a graph will run, decided outside ``modeling/`` and ``ops/`` (which never look for a GPU
when they trace): the export's ``--target`` and the device of an in-process run.

* ``any`` (the export default) and ``cpu``: direct 3×3 convolutions. Winograd (``conv_algorithm:
  auto``) is faster on CPUs for maps of known size, but a SavedModel serves any image size, and
  with unknown sizes it raised the export's peak memory at 1024 from 1.85 to 2.63 GB; it stays
  out of exports.
* ``gpu``: direct convolutions (cuDNN has its own Winograd) and the ``crop_and_resize`` RoIAlign
  (a GPU kernel).
* ``litert`` (``export --format tflite``; not a ``--target`` choice): only parts whose ops are
  TFLite builtins: direct convolutions, the ``gather`` RoIAlign, ``padded`` per-class NMS.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

TARGETS = ("any", "cpu", "gpu")
LITERT = "litert"
#: Config overrides with which a stock Mask R-CNN config's training step and inference compile
#: with XLA (``jit_compile=True``): static shapes, no ``crop_and_resize`` and no fused NMS
#: (``MaskRCNN.xla_blockers`` names the training step's share of them for a given model).
XLA_OVERRIDES = (
    "model.box_roi_aligner.backend=gather",
    "model.mask_roi_aligner.backend=gather",
    "model.detection_generator.nms_backend=padded",
    "model.proposal_generator.nms_backend=padded",
    "model.mask_slots=all",
)


def _takes(key: str, part: dict, argument: str) -> bool:
    """Whether the registered class of model part ``key`` takes ``argument``."""
    import inspect

    from mrcnn_tf.modeling.builder import PART_ROLES
    from mrcnn_tf.registries import registry_for_role

    if key not in PART_ROLES or not isinstance(part, dict) or "type" not in part:
        return False
    try:
        cls = registry_for_role(PART_ROLES[key]).get(part["type"])
    except LookupError:
        return False
    return argument in inspect.signature(cls.__init__).parameters


def apply_target(cfg: Mapping[str, Any], target: str) -> dict:
    """A copy of ``cfg`` whose model computes the way ``target`` wants (see the module docstring):
    every model part whose class takes ``conv_algorithm`` gets ``direct``; for ``gpu`` every part
    that takes a RoIAlign ``backend`` gets ``crop_and_resize``; for ``litert`` ``gather`` and every
    part that takes ``nms_backend`` gets ``padded``."""
    if target not in (*TARGETS, LITERT):
        raise ValueError(f"target must be one of {(*TARGETS, LITERT)}, got {target!r}")
    cfg = copy.deepcopy(dict(cfg))
    model = cfg.get("model") or {}
    for key, part in model.items():
        if _takes(key, part, "conv_algorithm"):
            part["conv_algorithm"] = "direct"
        if target in ("gpu", LITERT) and _takes(key, part, "backend") and "aligner" in key:
            part["backend"] = "crop_and_resize" if target == "gpu" else "gather"
        if target == LITERT and _takes(key, part, "nms_backend"):
            part["nms_backend"] = "padded"
    return cfg


def for_this_machine(cfg: Mapping[str, Any]) -> dict:
    """``cfg`` for an in-process run here: the ``gpu`` target when a GPU is visible, else as is.

    A run that compiles its training step with XLA (``train.jit_compile``) keeps its RoIAlign
    backend (``gather``: ``crop_and_resize`` has no XLA kernel) and only gets direct convolutions.
    """
    import tensorflow as tf

    if not tf.config.list_logical_devices("GPU"):
        return dict(cfg)
    if ((cfg.get("train") or {}).get("jit_compile")) is True:
        return apply_target(cfg, "any")
    return apply_target(cfg, "gpu")
