"""Role contracts: what a backbone and a neck promise the parts that read their outputs.

A backbone returns a dict of feature maps (``{"C2": ..., "C5": ...}``) and says, before it is
ever called, the channels and stride of each (:meth:`Backbone.output_specs`, Detectron2's
``ShapeSpec``). A neck turns those into a pyramid ``{"P2": ..., "P6": ...}`` whose level names
are the log2 of their strides (``P4`` is at stride 16): anchors, the RPN and the RoI aligners
are keyed by those names. The builder reads the specs to wire the parts together and checks
them (:func:`check_pyramid_specs`); the registries refuse classes that do not subclass these
bases or leave ``output_specs`` unimplemented.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import keras

_LEVEL = re.compile(r"^P(\d+)$")


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Channels and stride (input pixels per feature cell) of one feature map."""

    channels: int
    stride: int


class Backbone(keras.layers.Layer):
    """Base class of the ``backbone`` role.

    Call: ``images [B, H, W, 3]`` float32, normalised -> ``{name: [B, H/stride, W/stride, C]}``.
    Subclasses implement :meth:`output_specs` (it must not need the layer to be built).
    """

    def output_specs(self) -> dict[str, FeatureSpec]:
        """``{name: FeatureSpec}`` of every map ``call`` returns."""
        raise NotImplementedError


class Neck(keras.layers.Layer):
    """Base class of the ``neck`` role.

    Call: the backbone's dict -> ``{"P{k}": [B, H/2**k, W/2**k, C_k]}``: every output's name is
    ``P`` and the log2 of its stride. Subclasses implement :meth:`output_specs`.
    """

    def output_specs(self, input_specs: Mapping[str, FeatureSpec]) -> dict[str, FeatureSpec]:
        """``{"P{k}": FeatureSpec}`` of the outputs, given the backbone's ``input_specs``.

        Raises:
            ValueError: the backbone lacks a map this neck reads (the message names it).
        """
        raise NotImplementedError


def check_pyramid_specs(specs: Mapping[str, FeatureSpec], owner: str) -> None:
    """Raise ``ValueError`` unless every key is ``P{k}`` with stride ``2**k``.

    Anchors and RoI aligners find a level's stride from its name; a neck that breaks this
    would silently misplace every anchor and RoI.
    """
    for name, spec in specs.items():
        match = _LEVEL.match(str(name))
        if match is None or spec.stride != 2 ** int(match.group(1)):
            raise ValueError(
                f"{owner} returns '{name}' at stride {spec.stride}: pyramid levels must be named "
                "P{k} with stride 2**k (P4 at stride 16)"
            )
