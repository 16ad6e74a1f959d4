"""Tensor layouts of PyTorch checkpoints → our Keras variables, shared by the converters.

A conversion is a list of ``(variable, key, transform)``: the variable of our model, the key of
the checkpoint that holds its value, and a function from that array to the variable's layout
(None: as it is). :func:`assign_pairs` checks the whole list, then assigns.

Layouts: conv weights OIHW → HWIO (``transpose(2, 3, 1, 0)``, transposed convs too); Linear
``[out, in]`` → Dense ``[in, out]``; the first fc after a RoI map flattens (C, H, W) in torch and
(H, W, C) here; box deltas are ``(dx, dy, dw, dh)`` per class in torch, ``(dy, dx, dh, dw)`` here.
"""

from __future__ import annotations

import numpy as np

from mrcnn_tf.convert.checkpoint_io import CheckpointError


def conv_kernel(w: np.ndarray) -> np.ndarray:
    """A conv (or transposed conv) weight, OIHW → HWIO."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def bgr_conv_kernel(w: np.ndarray) -> np.ndarray:
    """conv1 of a network fed BGR images (Detectron2, MSRA/Caffe2), for our RGB input: its
    input-channel axis reversed, then OIHW → HWIO."""
    return conv_kernel(w[:, ::-1])


def dense_kernel(w: np.ndarray) -> np.ndarray:
    """A Linear weight ``[out, in]`` → a Dense kernel ``[in, out]``."""
    return np.ascontiguousarray(w.T)


def chw_dense_kernel(w: np.ndarray, channels: int) -> np.ndarray:
    """The first fc after an ``S × S × channels`` RoI map: torch flattens (C, H, W), we (H, W, C)."""
    s = round((w.shape[1] / channels) ** 0.5)
    return np.ascontiguousarray(w.reshape(-1, channels, s, s).transpose(2, 3, 1, 0).reshape(-1, w.shape[0]))


def yx_deltas(w: np.ndarray, drop_background: bool = False) -> np.ndarray:
    """Rows ``4c + (dx, dy, dw, dh)`` → ``4c + (dy, dx, dh, dw)``; without class 0 if asked."""
    groups = w.reshape(-1, 4, *w.shape[1:])
    if drop_background:
        groups = groups[1:]
    return groups[:, [1, 0, 3, 2]].reshape(-1, *w.shape[1:])


def norm_pairs(layer, prefix: str) -> list:
    """A batch norm saved by torch (``weight``, ``bias``, ``running_mean``, ``running_var``)."""
    return [
        (layer.gamma, f"{prefix}.weight", None),
        (layer.beta, f"{prefix}.bias", None),
        (layer.moving_mean, f"{prefix}.running_mean", None),
        (layer.moving_variance, f"{prefix}.running_var", None),
    ]


def conv_pairs(layer, prefix: str, transform=conv_kernel) -> list:
    """A conv saved by torch (``weight`` and, if the layer has one, ``bias``)."""
    pairs = [(layer.kernel, f"{prefix}.weight", transform)]
    if getattr(layer, "bias", None) is not None:
        pairs.append((layer.bias, f"{prefix}.bias", None))
    return pairs


def torchvision_resnet_pairs(backbone, prefix: str = "") -> list:
    """Our ``ResNet`` from torchvision's ``resnet*`` names (``conv1``, ``bn1``, ``layer{1..4}``),
    under ``prefix`` (``backbone.body.`` in its detection models)."""
    pairs = conv_pairs(backbone.stem_conv, f"{prefix}conv1") + norm_pairs(backbone.stem_norm, f"{prefix}bn1")
    for s, stage in enumerate(backbone.stages):
        for b, block in enumerate(stage):
            name = f"{prefix}layer{s + 1}.{b}"
            for k, (conv, norm) in enumerate(zip(block.convs, block.norms, strict=True)):
                pairs += conv_pairs(conv, f"{name}.conv{k + 1}") + norm_pairs(norm, f"{name}.bn{k + 1}")
            if block.shortcut is not None:
                pairs += conv_pairs(block.shortcut, f"{name}.downsample.0")
                pairs += norm_pairs(block.shortcut_norm, f"{name}.downsample.1")
    return pairs


def assign_pairs(pairs: list, state: dict[str, np.ndarray], what: str, path) -> None:
    """Set each ``(variable, key, transform)`` of ``pairs`` from ``state[key]``.

    Raises:
        CheckpointError: keys missing or left over, or shapes that do not fit, listed (the first
            few of each) in one message that says the file is not ``what``; nothing is assigned then.
    """
    missing, wrong, values = [], [], []
    used = set()
    for variable, key, transform in pairs:
        if key not in state:
            missing.append(key)
            continue
        used.add(key)
        value = state[key].astype(np.float32)
        if transform is not None:
            try:
                value = transform(value)
            except ValueError:
                wrong.append(f"{key} {tuple(state[key].shape)}")
                continue
        if tuple(value.shape) != tuple(variable.shape):
            wrong.append(f"{key} {tuple(state[key].shape)}")
            continue
        values.append((variable, value))
    extra = [k for k in state if k not in used]

    def listed(keys):
        return f"{', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"

    problems = []
    if missing:
        problems.append(f"{len(missing)} key(s) missing ({listed(missing)})")
    if extra:
        problems.append(f"{len(extra)} key(s) not used ({listed(extra)})")
    if wrong:
        problems.append(f"{len(wrong)} shape(s) do not fit ({listed(wrong)})")
    if problems:
        raise CheckpointError(f"{path}: not a {what}: {'; '.join(problems)}")
    for variable, value in values:
        variable.assign(value)
