"""What a dataset check found: each problem with its file, image id and annotation id.

Readers never stop at the first bad item and never fix things silently. Each finding is a
:class:`Problem` with an ``action``: ``dropped`` (the item is left out), ``refused`` (a path
that escapes the image folder), ``clipped`` or ``fixed`` (kept after a correction), ``kept``
(kept as it is, but worth a look). The
default is to carry on and print :meth:`DataReport.summary`; ``strict`` turns any finding into
a :class:`DatasetError` that lists them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from registry.errors import UserError

__all__ = ["DataReport", "DatasetError", "Problem"]

#: Findings that keep the item (after a correction).
KEPT_ACTIONS = ("clipped", "fixed", "kept")


class DatasetError(UserError, ValueError):
    """A dataset file is unusable, or has problems while ``strict`` is on."""


@dataclass(frozen=True)
class Problem:
    """One finding.

    Attributes:
        kind: a short key, e.g. ``missing_file``, ``short_polygon``, ``box_clipped``.
        action: ``dropped`` | ``refused`` | ``clipped`` | ``fixed`` | ``kept``.
        message: what is wrong and how to fix it.
        image_id: the image's ``id`` in the annotation file, if any.
        annotation_id: the annotation's ``id`` (or ``"annotations[i]"`` when it has none).
    """

    kind: str
    action: str
    message: str
    image_id: object = None
    annotation_id: object = None

    def __str__(self) -> str:
        where = []
        if self.annotation_id is not None:
            where.append(f"annotation {self.annotation_id}")
        if self.image_id is not None:
            where.append(f"image {self.image_id}")
        prefix = f"{', '.join(where)}: " if where else ""
        return f"{prefix}{self.message} [{self.kind}, {self.action}]"


@dataclass
class DataReport:
    """Findings of one dataset read, plus counts of what was kept.

    Attributes:
        source: the annotation file (named in every message).
        problems: every finding, in file order.
        counts: ``images``, ``instances``, ``crowd``, ``empty_images`` ... of what was kept.
        instances_per_class: kept (non-crowd) instances per contiguous class id.
    """

    source: str
    problems: list[Problem] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    instances_per_class: Counter = field(default_factory=Counter)

    def add(
        self, kind: str, action: str, message: str, *, image_id: object = None, annotation_id: object = None
    ) -> None:
        """Record one finding."""
        self.problems.append(Problem(kind, action, message, image_id, annotation_id))

    def by_kind(self) -> Counter:
        """``{(kind, action): count}``."""
        return Counter((p.kind, p.action) for p in self.problems)

    def dropped(self) -> list[Problem]:
        """Findings whose item was left out (dropped or refused)."""
        return [p for p in self.problems if p.action not in KEPT_ACTIONS]

    def summary(self, examples: int = 3) -> str:
        """A few lines: each kind of finding with its count and the first ``examples`` cases."""
        if not self.problems:
            return f"{self.source}: no problems found"
        lines = [f"{self.source}: {len(self.problems)} problem(s) found"]
        for (kind, action), count in sorted(self.by_kind().items()):
            lines.append(f"  {count:>6} x {kind} ({action})")
            shown = [p for p in self.problems if p.kind == kind and p.action == action][:examples]
            lines.extend(f"           e.g. {p}" for p in shown)
        return "\n".join(lines)

    def raise_if_problems(self) -> None:
        """Strict mode: raise :class:`DatasetError` listing the findings, if there are any."""
        if self.problems:
            raise DatasetError(
                self.summary(examples=10) + "\n(strict mode: fix these in the annotation file, "
                "or drop `strict` to leave the bad items out)"
            )
