"""The mapping between a dataset's category ids and the model's contiguous class ids.

Detectors predict classes ``1..K`` (``0`` is background); datasets number their categories
any way they like (COCO's 80 classes use ids 1..90 with gaps). The mapping is made once from
the annotation file (categories sorted by id), saved beside checkpoints and exports as JSON,
and used to map predictions back to the dataset's ids for evaluation and serving.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CategoryMap"]


@dataclass(frozen=True)
class CategoryMap:
    """Dataset category ids ↔ contiguous class ids ``1..K``.

    Attributes:
        dataset_ids: the dataset's category ids, in class order (class ``k`` is
            ``dataset_ids[k - 1]``); sorted ascending when built from a file.
        names: the category names, in the same order.
        keypoints: for a dataset with keypoints, their ``names``, ``skeleton`` (0-based pairs),
            ``flip_map`` and OKS ``sigmas`` (:class:`~mrcnn_tf.data.coco_keypoints.KeypointSchema`
            as JSON), so that predictions can be drawn and scored without the dataset.
    """

    dataset_ids: tuple[int, ...]
    names: tuple[str, ...]
    keypoints: dict | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        if len(self.dataset_ids) != len(self.names):
            raise ValueError("dataset_ids and names must have the same length")
        if len(set(self.dataset_ids)) != len(self.dataset_ids):
            raise ValueError(f"duplicate category ids in {list(self.dataset_ids)}")

    @classmethod
    def from_categories(cls, categories: Iterable[Mapping]) -> CategoryMap:
        """From COCO ``categories`` entries (``id`` and ``name``), sorted by id."""
        entries = sorted((int(c["id"]), str(c.get("name", c["id"]))) for c in categories)
        return cls(tuple(i for i, _ in entries), tuple(n for _, n in entries))

    @property
    def num_classes(self) -> int:
        """``K``, the number of foreground classes."""
        return len(self.dataset_ids)

    def to_contiguous(self, dataset_id: int) -> int:
        """The class id ``1..K`` of a dataset category id (``KeyError`` if unknown)."""
        return self._index()[int(dataset_id)]

    def to_dataset(self, classes: Sequence[int] | np.ndarray) -> np.ndarray:
        """Dataset category ids of contiguous class ids (array in, int64 array out).

        Raises:
            ValueError: a class id outside ``1..K`` (0, the background/padding id, included).
        """
        classes = np.asarray(classes, np.int64)
        if classes.size and (classes.min() < 1 or classes.max() > self.num_classes):
            raise ValueError(f"class ids must be in 1..{self.num_classes}; got {np.unique(classes).tolist()}")
        return np.asarray(self.dataset_ids, np.int64)[classes - 1]

    def name(self, class_id: int) -> str:
        """The category name of a contiguous class id."""
        return self.names[int(class_id) - 1]

    def _index(self) -> dict[int, int]:
        return {d: k + 1 for k, d in enumerate(self.dataset_ids)}

    def to_json(self) -> dict:
        """``{"categories": [{"id": dataset_id, "name": ..., "class_id": k}, ...]}`` (and
        ``"keypoints": {...}`` when the dataset has keypoints)."""
        out: dict = {
            "categories": [
                {"id": d, "name": n, "class_id": k + 1}
                for k, (d, n) in enumerate(zip(self.dataset_ids, self.names, strict=True))
            ]
        }
        if self.keypoints is not None:
            out["keypoints"] = self.keypoints
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_json` to ``path``."""
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_json(), handle, indent=1)
            handle.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> CategoryMap:
        """Read a file written by :meth:`save` (class order as saved)."""
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        entries = sorted(data["categories"], key=lambda c: c["class_id"])
        if [c["class_id"] for c in entries] != list(range(1, len(entries) + 1)):
            raise ValueError(f"{path}: class ids must be 1..K without gaps")
        keypoints = data.get("keypoints")
        return cls(
            tuple(int(c["id"]) for c in entries),
            tuple(str(c["name"]) for c in entries),
            keypoints if isinstance(keypoints, dict) else None,
        )
