"""Build a detector from a config: the one place where a config becomes constructor arguments.

::

    config["model"] ──► build every part through its registry (backbone, neck, ...)
                        inject what one part needs from another:
                          backbone.output_specs() ─► neck.output_specs(...) ─► anchor strides,
                          RoI aligner levels; anchors per location ─► rpn_head.num_anchors;
                          num_classes ─► box_head, mask_head; num_keypoints ─► keypoint_head;
                          proposal_generator.box_coder ─► anchor_labeler (one BoxCoder),
                          detection_generator.box_coder ─► roi_sampler (one BoxCoder)
                        check that the parts fit (levels, channels, strides, call contracts)
                    ──► MaskRCNN(backbone=..., neck=..., ...)   (built layers only)

Nothing in ``modeling/detectors`` reads a config or a registry. Errors are
:class:`registry.ConfigError` naming the ``model.<key>`` at fault.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from registry import ConfigError
from registry.core import check_arguments

#: Config key of each part -> the registry role it comes from.
PART_ROLES = {
    "backbone": "backbone",
    "neck": "neck",
    "anchor_generator": "anchor_generator",
    "rpn_head": "rpn_head",
    "proposal_generator": "proposal_generator",
    "anchor_labeler": "anchor_labeler",
    "roi_sampler": "roi_sampler",
    "box_roi_aligner": "roi_aligner",
    "box_head": "box_head",
    "mask_roi_aligner": "roi_aligner",
    "mask_head": "mask_head",
    "keypoint_roi_aligner": "roi_aligner",
    "keypoint_head": "keypoint_head",
    "detection_generator": "detection_generator",
    "rpn_objectness_loss": "loss",
    "rpn_box_loss": "loss",
    "box_cls_loss": "loss",
    "box_reg_loss": "loss",
    "mask_loss": "loss",
    "keypoint_loss": "loss",
}
#: Methods whose ``call`` must take these keyword arguments (the role contracts the detector uses).
CALL_CONTRACTS = {
    "anchor_labeler": ("seeds",),
    "roi_sampler": ("seeds",),
    "mask_head": ("classes",),
    "proposal_generator": ("training", "post_nms_topk"),
    "detection_generator": ("max_detections",),
}


def build_model(config: Mapping[str, Any], num_classes: int | None = None):
    """The detector that ``config["model"]`` describes (a ``MaskRCNN`` unless ``type`` says otherwise).

    Args:
        config: a loaded config (only its ``model`` section is read).
        num_classes: K foreground classes; None takes ``model.num_classes``. (The data side
            checks K against the dataset: :func:`mrcnn_tf.data.builder.check_num_classes`.)

    Raises:
        ConfigError: no model section, no ``num_classes``, parts that do not fit each other or
            reject their arguments (the message names the ``model.<key>``).
    """
    from mrcnn_tf.registries import DETECTORS, load_builtins

    load_builtins()
    model = config.get("model")
    if not isinstance(model, Mapping):
        raise ConfigError("the config has no 'model' section (a {type: MaskRCNN, ...} mapping)")
    spec = dict(model)
    detector = DETECTORS.entry(spec.pop("type", "MaskRCNN"))
    given = spec.pop("num_classes", None)
    if num_classes is None:
        num_classes = given
    elif given is not None and given != num_classes:
        raise ConfigError(
            f"is {given}, but the model is built for {num_classes} classes", key="model.num_classes"
        )
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ConfigError(
            f"must be a positive integer (the number of foreground classes), got {num_classes!r}",
            key="model.num_classes",
        )
    for key, message in check_arguments(detector, {**spec, "num_classes": num_classes}, injected_ok=True):
        raise ConfigError(f"{detector.name}: {message}", key=f"model.{key}")
    defaults = dict(getattr(detector.cls, "default_parts", {}))
    parts = _build_parts(spec, defaults, num_classes)
    scalars = {k: v for k, v in spec.items() if k not in PART_ROLES}
    if parts.get("keypoint_head") is not None:
        scalars["num_keypoints"] = parts["keypoint_head"].num_keypoints
    try:
        return detector.cls(**parts, **scalars, num_classes=num_classes)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{detector.name}: {exc}", key="model") from exc


def _build(key: str, spec: Any, **offers: Any):
    """Build the part at ``model.<key>``, passing those ``offers`` its entry declares injected."""
    from mrcnn_tf.registries import registry_for_role

    registry = registry_for_role(PART_ROLES[key])
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(
            f"must be {{type: Name, ...}} naming a registered {registry.name}", key=f"model.{key}"
        )
    if "box_coder" in spec and "box_coder" in offers:
        raise ConfigError(
            "is set by the builder (the same coder as the part that decodes these deltas); set "
            "proposal_generator.box_coder or detection_generator.box_coder instead",
            key=f"model.{key}.box_coder",
        )
    injected = registry.entry(spec["type"]).injected
    try:
        return registry.build(spec, **{k: v for k, v in offers.items() if k in injected})
    except ConfigError as exc:
        raise ConfigError(getattr(exc, "reason", str(exc)), key=f"model.{key}") from exc


#: Parts a config may leave out or set to null (no mask head: a Keypoint R-CNN).
OPTIONAL = (
    "mask_roi_aligner",
    "mask_head",
    "mask_loss",
    "keypoint_roi_aligner",
    "keypoint_head",
    "keypoint_loss",
)


def _build_parts(spec: dict, defaults: Mapping[str, Any], num_classes: int) -> dict[str, Any]:
    def part_spec(key: str):
        value = spec.get(key, defaults.get(key))
        if value is None and key not in defaults and key not in OPTIONAL:
            raise ConfigError(f"missing: the model needs a {PART_ROLES[key]}", key=f"model.{key}")
        return value

    def fail(key: str, exc: Exception) -> ConfigError:
        return ConfigError(str(exc), key=f"model.{key}")

    parts: dict[str, Any] = {}
    backbone = parts["backbone"] = _build("backbone", part_spec("backbone"))
    neck = parts["neck"] = _build("neck", part_spec("neck"))
    try:
        pyramid = neck.output_specs(backbone.output_specs())
        from mrcnn_tf.modeling.base import check_pyramid_specs

        check_pyramid_specs(pyramid, type(neck).__name__)
    except (ValueError, KeyError) as exc:
        raise fail("neck", exc) from exc
    anchors = parts["anchor_generator"] = _build(
        "anchor_generator",
        part_spec("anchor_generator"),
        strides={k: v.stride for k, v in pyramid.items()},
    )
    levels = [f"P{k}" for k in range(anchors.min_level, anchors.max_level + 1)]
    _check_levels("anchor_generator", levels, pyramid)
    parts["rpn_head"] = _build(
        "rpn_head", part_spec("rpn_head"), num_anchors=anchors.num_anchors_per_location
    )
    proposals = parts["proposal_generator"] = _build("proposal_generator", part_spec("proposal_generator"))
    parts["anchor_labeler"] = _build(
        "anchor_labeler", part_spec("anchor_labeler"), box_coder=proposals.box_coder
    )
    detections = parts["detection_generator"] = _build(
        "detection_generator", part_spec("detection_generator")
    )
    parts["roi_sampler"] = _build("roi_sampler", part_spec("roi_sampler"), box_coder=detections.box_coder)
    has_mask = spec.get("mask_head", defaults.get("mask_head")) is not None
    has_keypoints = spec.get("keypoint_head") is not None
    if not has_mask and not has_keypoints:
        raise ConfigError(
            "is null and there is no keypoint_head: the model needs one of them", key="model.mask_head"
        )
    if has_keypoints and spec.get("keypoint_roi_aligner") is None:
        raise ConfigError(
            "missing: a keypoint_head needs its own RoI aligner, e.g. "
            "{type: MultiLevelRoIAlign, output_size: 14}",
            key="model.keypoint_roi_aligner",
        )
    aligners = ["box_roi_aligner", "mask_roi_aligner"] if has_mask else ["box_roi_aligner"]
    for key in aligners + (["keypoint_roi_aligner"] if has_keypoints else []):
        value = part_spec(key)
        if value is not None:
            parts[key] = aligner = _build(key, value)
            _check_aligner(key, aligner, pyramid)
    parts["box_head"] = _build("box_head", part_spec("box_head"), num_classes=num_classes)
    parts["mask_head"] = (
        _build("mask_head", part_spec("mask_head"), num_classes=num_classes) if has_mask else None
    )
    if has_keypoints:
        num_keypoints = spec.get("num_keypoints")
        if not isinstance(num_keypoints, int) or isinstance(num_keypoints, bool) or num_keypoints < 1:
            raise ConfigError(
                f"must be a positive integer with a keypoint_head (the dataset's keypoints per instance), "
                f"got {num_keypoints!r}",
                key="model.num_keypoints",
            )
        parts["keypoint_head"] = _build(
            "keypoint_head", part_spec("keypoint_head"), num_keypoints=num_keypoints
        )
        if parts["keypoint_head"].num_keypoints != num_keypoints:
            raise ConfigError(
                f"has num_keypoints {parts['keypoint_head'].num_keypoints}, "
                f"but the model has {num_keypoints}",
                key="model.keypoint_head",
            )
    for key in ("box_head", "mask_head") if has_mask else ("box_head",):
        declared = getattr(parts[key], "num_classes", num_classes)
        if declared != num_classes:
            raise ConfigError(
                f"has num_classes {declared}, but the model has {num_classes}", key=f"model.{key}"
            )
    losses = ["rpn_objectness_loss", "rpn_box_loss", "box_cls_loss", "box_reg_loss"]
    losses += (["mask_loss"] if has_mask else []) + (["keypoint_loss"] if has_keypoints else [])
    for key in losses:
        parts[key] = _build(key, part_spec(key))
    for key, arguments in CALL_CONTRACTS.items():
        if parts.get(key) is not None:
            _check_call(key, parts[key], arguments)
    return parts


def _check_levels(key: str, levels: list[str], pyramid: Mapping[str, Any]) -> None:
    missing = [k for k in levels if k not in pyramid]
    if missing:
        raise ConfigError(
            f"reads pyramid levels {missing}, which the neck does not give (it gives {sorted(pyramid)})",
            key=f"model.{key}",
        )


def _check_aligner(key: str, aligner: Any, pyramid: Mapping[str, Any]) -> None:
    """The aligner's levels exist, share one channel count, and a single map has its stride."""
    if hasattr(aligner, "min_level"):
        levels = [f"P{k}" for k in range(aligner.min_level, aligner.max_level + 1)]
        _check_levels(key, levels, pyramid)
        channels = {pyramid[k].channels for k in levels}
        if len(channels) > 1:
            raise ConfigError(
                f"reads levels {levels} of different channel counts {sorted(channels)}", key=f"model.{key}"
            )
    feature = getattr(aligner, "feature", None)
    if (
        feature is not None
        and feature in pyramid
        and getattr(aligner, "stride", None) != pyramid[feature].stride
    ):
        raise ConfigError(
            f"has stride {aligner.stride}, but the neck's '{feature}' is at stride {pyramid[feature].stride}",
            key=f"model.{key}.stride",
        )


def _check_call(key: str, part: Any, arguments: tuple[str, ...]) -> None:
    """The part's ``call`` takes ``arguments`` (the contract of its role), else a ConfigError."""
    try:
        params = inspect.signature(part.call).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    lacking = [a for a in arguments if a not in params]
    if lacking:
        raise ConfigError(
            f"{type(part).__name__}.call must accept {', '.join(f'{a}=' for a in lacking)} (the "
            f"{PART_ROLES[key].replace('_', ' ')} contract: see the built-in one's docstring)",
            key=f"model.{key}",
        )
