"""COCO ``person_keypoints`` files: the categories' keypoint schema and each annotation's keypoints.

A category with keypoints has ``keypoints`` (names) and ``skeleton`` (1-based index pairs); an
annotation has ``keypoints: [x1, y1, v1, x2, y2, v2, ...]`` (integer pixel indices, ``v``: 0 not
labelled, 1 labelled but hidden, 2 visible) and ``num_keypoints``. Checked keypoints become
float32 ``[K, 3]`` ``(x + 0.5, y + 0.5, v)`` in continuous pixels (see
:mod:`mrcnn_tf.ops.keypoints`); unlabelled keypoints are ``(0, 0, 0)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrcnn_tf.data.report import DatasetError

__all__ = [
    "COCO_PERSON_KEYPOINTS",
    "COCO_SIGMAS",
    "KeypointSchema",
    "check_keypoints",
    "flip_map",
    "keypoint_schema",
    "keypoints_to_coco",
]

COCO_PERSON_KEYPOINTS = (
    "nose left_eye right_eye left_ear right_ear left_shoulder right_shoulder left_elbow right_elbow "
    "left_wrist right_wrist left_hip right_hip left_knee right_knee left_ankle right_ankle"
).split()
#: COCO's person skeleton (1-based keypoint pairs, as ``person_keypoints_*.json`` has it).
COCO_SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)  # fmt: skip
#: pycocotools' ``kpt_oks_sigmas`` for COCO's 17 person keypoints.
COCO_SIGMAS = tuple(
    v / 10.0
    for v in (
        0.26,
        0.25,
        0.25,
        0.35,
        0.35,
        0.79,
        0.79,
        0.72,
        0.72,
        0.62,
        0.62,
        1.07,
        1.07,
        0.87,
        0.87,
        0.89,
        0.89,
    )
)
#: The OKS sigma used for every keypoint when neither the dataset nor the config gives any.
DEFAULT_SIGMA = 0.05

Finding = tuple[str, str, str]


def _mirrored_names(name: str) -> list[str]:
    """Candidate names of the mirror image of keypoint ``name`` (lower case)."""
    out = []
    for a, b in (("left", "right"), ("right", "left")):
        if a in name:
            out.append(name.replace(a, b))
    for a, b in (("l_", "r_"), ("r_", "l_")):
        if name.startswith(a):
            out.append(b + name[2:])
    for a, b in (("_l", "_r"), ("_r", "_l")):
        if name.endswith(a):
            out.append(name[:-2] + b)
    return out


def flip_map(
    names: Sequence[str], pairs: Mapping[str, str] | Sequence[Sequence[str]] | None = None
) -> list[int]:
    """The permutation a horizontal flip applies to the keypoints: ``flipped[k] = kp[perm[k]]``.

    Without ``pairs``, ``left_*`` swaps with ``right_*`` (also ``l_``/``r_``, ``*_left``/``*_right``,
    ``*_l``/``*_r``, and a ``left``/``right`` anywhere in the name), as COCO's names do; names
    without a side map to themselves. ``pairs`` (``{a: b}`` or ``[[a, b], ...]``) gives the
    pairs explicitly.

    Raises:
        ValueError: a pair names an unknown keypoint, or a keypoint is in two pairs.
    """
    names = [str(n) for n in names]
    index = {n: i for i, n in enumerate(names)}
    perm = list(range(len(names)))
    if pairs is not None:
        items = list(pairs.items()) if isinstance(pairs, Mapping) else [tuple(p) for p in pairs]
        seen: set[str] = set()
        for pair in items:
            if len(pair) != 2:
                raise ValueError(f"a keypoint flip pair has two names, got {list(pair)}")
            a, b = (str(p) for p in pair)
            for name in (a, b):
                if name not in index:
                    raise ValueError(f"keypoint flip pair names '{name}', which is not a keypoint ({names})")
                if name in seen and a != b:
                    raise ValueError(f"keypoint '{name}' is in two flip pairs")
                seen.add(name)
            perm[index[a]], perm[index[b]] = index[b], index[a]
        return perm
    lowered = {n.lower(): i for i, n in enumerate(names)}
    for i, name in enumerate(names):
        for other in _mirrored_names(name.lower()):
            if other in lowered:
                perm[i] = lowered[other]
                break
    return perm


@dataclass(frozen=True)
class KeypointSchema:
    """The keypoints every instance of the dataset has.

    Attributes:
        names: K keypoint names, in the file's order.
        skeleton: 0-based index pairs to draw as lines (the file's ``skeleton`` is 1-based).
        flip_map: ``flipped[k] = keypoints[flip_map[k]]`` under a horizontal flip.
        sigmas: per-keypoint OKS sigmas for pycocotools' keypoint AP.
        sigma_source: ``config``, ``dataset``, ``coco`` or ``default``.
    """

    names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]
    flip_map: tuple[int, ...]
    sigmas: tuple[float, ...]
    sigma_source: str = "dataset"

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    def to_json(self) -> dict:
        """The schema as JSON (what :class:`~mrcnn_tf.data.category_map.CategoryMap` saves)."""
        return {
            "names": list(self.names),
            "skeleton": [list(p) for p in self.skeleton],
            "flip_map": list(self.flip_map),
            "sigmas": list(self.sigmas),
        }


def keypoint_schema(
    path: Path,
    categories: Sequence[Mapping],
    flip_pairs: Sequence[Sequence[str]] | Mapping[str, str] | None = None,
    sigmas: Sequence[float] | None = None,
) -> KeypointSchema | None:
    """The schema of the categories that have ``keypoints``, or None when none has.

    Sigmas: ``sigmas`` (the config's), else the categories' ``keypoint_sigmas`` (an mrcnn_tf
    extension the synthetic data writes), else COCO's for COCO's 17 person keypoints, else
    :data:`DEFAULT_SIGMA` for each.

    Raises:
        DatasetError: names that are not strings, categories with different keypoints, a
            skeleton or flip pair naming unknown keypoints, sigmas of the wrong length.
    """
    with_kp = [c for c in categories if isinstance(c, Mapping) and c.get("keypoints")]
    if not with_kp:
        return None
    first = with_kp[0]
    names = first["keypoints"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DatasetError(
            f"{path}: category {first.get('id')} 'keypoints' must be a list of names, got {names!r}"
        )
    for cat in with_kp[1:]:
        if cat["keypoints"] != names:
            raise DatasetError(
                f"{path}: categories {first.get('id')} and {cat.get('id')} have different 'keypoints'; one "
                "keypoint head needs one list of keypoints (split the file or give them the same names)"
            )
    k = len(names)
    skeleton = []
    for pair in first.get("skeleton") or []:
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(i, int) and 1 <= i <= k for i in pair)
        ):
            raise DatasetError(
                f"{path}: category {first.get('id')} 'skeleton' entry {pair!r} is not a pair of keypoint "
                f"numbers in 1..{k} (COCO numbers keypoints from 1)"
            )
        skeleton.append((pair[0] - 1, pair[1] - 1))
    try:
        perm = flip_map(names, flip_pairs)
    except ValueError as exc:
        raise DatasetError(f"{path}: keypoint_flip_pairs: {exc}") from exc
    source = "config"
    if sigmas is None:
        sigmas, source = first.get("keypoint_sigmas"), "dataset"
    if sigmas is None:
        if list(names) == COCO_PERSON_KEYPOINTS:
            sigmas, source = COCO_SIGMAS, "coco"
        else:
            sigmas, source = (DEFAULT_SIGMA,) * k, "default"
    if len(sigmas) != k or not all(isinstance(s, (int, float)) and s > 0 for s in sigmas):
        raise DatasetError(
            f"{path}: keypoint sigmas need {k} positive numbers (one per keypoint), got {sigmas!r}"
        )
    return KeypointSchema(tuple(names), tuple(skeleton), tuple(perm), tuple(float(s) for s in sigmas), source)


def check_keypoints(
    value: object, k: int, width: int, height: int, box: Sequence[float]
) -> tuple[np.ndarray, list[Finding]]:
    """One annotation's ``keypoints`` as float32 ``[K, 3]`` (see the module docstring), and findings.

    A missing list is K unlabelled keypoints (annotations of categories without keypoints).
    A list of the wrong length or with non-numbers is left out (all unlabelled, ``fixed``);
    a ``v`` outside {0, 1, 2} and a labelled keypoint outside the image make that keypoint
    unlabelled (``fixed``); a labelled keypoint outside the box is kept (``kept``: it is
    no target of a RoI that does not cover it, as in Detectron2).
    """
    out = np.zeros((k, 3), np.float32)
    if value is None:
        return out, []
    if not isinstance(value, list) or len(value) != 3 * k:
        got = f"{len(value)} values" if isinstance(value, list) else repr(value)[:40]
        return out, [
            (
                "bad_keypoints",
                "fixed",
                f"'keypoints' has {got}, the category has {k} keypoints ({3 * k} values): "
                "left out (unlabelled)",
            )
        ]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return out, [("bad_keypoints", "fixed", "'keypoints' holds values that are not numbers: left out")]
    findings: list[Finding] = []
    y1, x1, y2, x2 = box
    for j in range(k):
        x, y, v = value[3 * j : 3 * j + 3]
        if v not in (0, 1, 2):
            findings.append(
                (
                    "bad_keypoint_visibility",
                    "fixed",
                    f"keypoint {j} has v={v!r}, not 0, 1 or 2: taken as unlabelled",
                )
            )
            continue
        if v == 0:
            continue
        cx, cy = float(x) + 0.5, float(y) + 0.5
        if not (0 <= cx <= width and 0 <= cy <= height):
            findings.append(
                (
                    "keypoint_outside_image",
                    "fixed",
                    f"keypoint {j} at ({x}, {y}) is outside the {width}x{height} image: taken as unlabelled",
                )
            )
            continue
        if not (x1 <= cx <= x2 and y1 <= cy <= y2):
            findings.append(
                (
                    "keypoint_outside_box",
                    "kept",
                    f"keypoint {j} at ({x}, {y}) is outside its box [x {x1:g}..{x2:g}, y {y1:g}..{y2:g}]",
                )
            )
        out[j] = (cx, cy, v)
    return out, findings


def keypoints_to_coco(keypoints: np.ndarray) -> dict:
    """``{"keypoints": [x, y, v, ...], "num_keypoints": n}`` in the file's integer-pixel frame
    from checked ``[K, 3]`` keypoints (``x - 0.5``; unlabelled ones ``0, 0, 0``)."""
    flat = []
    for x, y, v in np.asarray(keypoints, np.float64):
        flat += [float(x) - 0.5, float(y) - 0.5, int(v)] if v > 0 else [0, 0, 0]
    return {"keypoints": flat, "num_keypoints": int((np.asarray(keypoints)[:, 2] > 0).sum())}
