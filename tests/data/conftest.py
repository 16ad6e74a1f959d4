"""Fixtures shared by the data tests."""

from __future__ import annotations

import pytest
from coco_fixtures import write_solid_shapes

from mrcnn_tf.data.coco import CocoDataset


@pytest.fixture(scope="module")
def solid(tmp_path_factory):
    """Three 60x80 images of solid-coloured shapes on black (polygons and compressed RLE)."""
    return CocoDataset(*write_solid_shapes(tmp_path_factory.mktemp("solid")), strict=True)
