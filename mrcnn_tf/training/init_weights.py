"""Start training from other weights: fine-tuning, or a new number of classes.

``train.init_weights: PATH`` (a run directory, a ``.weights.h5`` file or a ``checkpoints/``
folder) loads every weight whose layer and shape match the new model, and leaves the rest at
their fresh initialisation, as Detectron2's ``MODEL.WEIGHTS`` does: with a different number of
classes, the class-dependent predictors (box classifier and regressor, mask predictor) start
fresh and everything else is kept. ``train.init_components: [backbone, neck]`` keeps only those
components (Model Garden's ``init_checkpoint_modules``). It applies only to a new run: a run that
resumes from its own checkpoint ignores it. A folder written by ``mrcnn-tf convert`` from an
ImageNet classifier holds a backbone only: its components are the default, and a model whose
backbone conventions differ from the weights' is refused (``backbone.json``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from registry.errors import UserError


@dataclasses.dataclass
class InitReport:
    """What :func:`initialize_from` did.

    Attributes:
        source: the weights file read.
        loaded: number of variables taken from it.
        fresh: paths of the variables left at their fresh initialisation (shape mismatch, not
            in the file, or outside ``components``).
    """

    source: str
    loaded: int
    fresh: list[str]

    def summary(self) -> str:
        lines = [f"initialised {self.loaded} variables from {self.source}"]
        if self.fresh:
            layers = sorted({path.rsplit("/", 1)[0] for path in self.fresh})
            lines.append(f"  {len(self.fresh)} variables start fresh, in: {', '.join(layers)}")
        return "\n".join(lines)


def initialize_from(model, path: str | os.PathLike, components: Sequence[str] | None = None) -> InitReport:
    """Load the weights of ``path`` that fit the built ``model``; leave the others as they are.

    Which variables loaded is found exactly, not parsed from Keras's warnings: every float
    variable is set to NaN first, Keras loads with ``skip_mismatch=True``, and the variables
    still NaN afterwards get their fresh values back.

    Args:
        model: a built ``MaskRCNN`` (or any Keras model).
        path: weights as :func:`mrcnn_tf.training.workdir.load_weights` accepts them.
        components: attribute names of the model (``backbone``, ``neck``, ``rpn_head``,
            ``box_head``, ``mask_head``...) whose weights to take; None takes all that fit.

    Raises:
        UserError: no weights at ``path``, an unknown component, or nothing in the file fits.
    """
    from mrcnn_tf.convert.backbones import check_manifest
    from mrcnn_tf.training.workdir import float_variables, load_filled, resolve_weights

    source = resolve_weights(path)
    if os.path.isdir(path):  # a converted ImageNet backbone says what it holds and needs
        converted = check_manifest(model, path)
        if converted is not None and components is None:
            components = converted
    keep = None
    if components is not None:
        unknown = [c for c in components if getattr(model, c, None) is None]
        if unknown:
            raise UserError(
                f"train.init_components names {unknown}, which this model does not have; use the "
                "component keys of the model config (backbone, neck, rpn_head, box_head, mask_head, ...)"
            )
        keep = {id(v) for c in components for v in getattr(model, c).weights}
    floats = float_variables(model)
    fresh_values = [v.numpy() for v in floats]
    try:
        not_loaded = {id(v) for v in load_filled(model, source, skip_mismatch=True)}
    except Exception:
        for v, value in zip(floats, fresh_values, strict=True):
            v.assign(value)
        raise
    fresh = []
    for v, value in zip(floats, fresh_values, strict=True):
        if id(v) in not_loaded or (keep is not None and id(v) not in keep):
            v.assign(value)
            fresh.append(v.path)
    loaded = len(floats) - len(fresh)
    if loaded == 0:
        raise UserError(f"{source}: no weight in it fits this model (different architecture?)")
    return InitReport(source=source, loaded=loaded, fresh=fresh)
