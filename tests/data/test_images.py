"""Image decoding: grayscale, alpha, 16-bit and EXIF orientation, against NumPy expectations."""

from __future__ import annotations

import numpy as np
import pytest
from coco_fixtures import box_ann, write_coco
from PIL import Image

from mrcnn_tf.data.coco import CocoDataset
from mrcnn_tf.data.images import EXIF_ORIENTATION, load_rgb, probe_image

PIXELS = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)


def test_grayscale_is_replicated_to_three_channels(tmp_path):
    gray = PIXELS[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    np.testing.assert_array_equal(load_rgb(tmp_path / "g.png"), np.stack([gray] * 3, -1))


def test_alpha_is_dropped(tmp_path):
    rgba = np.concatenate([PIXELS, np.zeros_like(PIXELS[..., :1])], -1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_rgb(tmp_path / "a.png"), PIXELS)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    deep = (np.arange(12 * 20, dtype=np.uint16).reshape(12, 20) * 273).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    expected = (deep >> 8).astype(np.uint8)
    np.testing.assert_array_equal(load_rgb(tmp_path / "d.png"), np.stack([expected] * 3, -1))


# What each EXIF orientation asks for, written with NumPy alone (np.rot90 turns counter-clockwise).
TURNS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _jpeg_with_orientation(path, orientation):
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(PIXELS).save(path, format="JPEG", quality=95, exif=exif.tobytes())
    with Image.open(path) as stored:
        return np.asarray(stored.convert("RGB"))  # the stored pixels, not turned


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    path = tmp_path / "e.jpg"
    stored = _jpeg_with_orientation(path, orientation)
    expected = TURNS[orientation](stored)
    header = probe_image(path)
    assert header.orientation == orientation and (header.height, header.width) == expected.shape[:2]
    np.testing.assert_array_equal(load_rgb(path), expected)
    np.testing.assert_array_equal(load_rgb(path, apply_orientation=False), stored)


def test_reader_follows_the_frame_the_annotations_were_drawn_on(tmp_path):
    """Width/height of the turned image: turn it. Of the stored pixels: the tool ignored EXIF."""
    (tmp_path / "images").mkdir()
    stored = _jpeg_with_orientation(tmp_path / "images" / "e.jpg", 6)
    entries = [
        {"id": 0, "file_name": "e.jpg", "height": 20, "width": 12},  # as displayed
        {"id": 1, "file_name": "e.jpg", "height": 12, "width": 20},  # as stored
    ]
    path, images = write_coco(tmp_path, entries, [box_ann(1, 0, [1, 1, 5, 5]), box_ann(2, 1, [1, 1, 5, 5])])
    ds = CocoDataset(path, images)
    np.testing.assert_array_equal(ds.load_example(0, 4)["image"], np.rot90(stored, -1))
    np.testing.assert_array_equal(ds.load_example(1, 4)["image"], stored)
    (problem,) = ds.report.problems
    assert problem.kind == "exif_ignored" and problem.image_id == 1
