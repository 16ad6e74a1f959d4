"""RLE decoding and the box crop, against pycocotools' full decode and a float64 NumPy reference."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from numpy_ref import reference_crop

from mrcnn_tf.data.rle import crop_rle, decompress_counts, segmentation_to_counts


@pytest.mark.parametrize("seed", range(20))
def test_decompress_counts_matches_pycocotools_decode(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 80, 2)
    mask = (rng.random((h, w)) < rng.uniform(0, 1)).astype(np.uint8)
    if seed == 0:
        mask[:] = 0
    if seed == 1:
        mask[:] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    counts = decompress_counts(rle["counts"])
    assert counts.sum() == h * w
    # rebuild the column-major mask from the runs
    flat = np.repeat(np.arange(counts.size) % 2, counts).astype(np.uint8)
    np.testing.assert_array_equal(flat.reshape(w, h).T, mask)


def test_decompress_counts_rejects_garbage():
    with pytest.raises(ValueError, match="outside"):
        decompress_counts("abc~")
    with pytest.raises(ValueError, match="middle"):
        decompress_counts("0P")  # 'P' has the continuation bit set


@pytest.mark.parametrize("kind", ["polygon", "polygons", "rle", "compressed"])
def test_crop_is_exact_for_every_segmentation_format(kind):
    h, w = 97, 131
    rng = np.random.default_rng(3)
    if kind.startswith("polygon"):
        segmentation = [[10.5, 7, 90, 12, 60.2, 80, 15, 60]]
        if kind == "polygons":
            segmentation.append([100, 50, 125, 55, 110, 90])
        mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w)))
    else:
        mask = np.zeros((h, w), np.uint8)
        mask[20:70, 30:100] = rng.random((50, 70)) < 0.7
        rle = mask_utils.encode(np.asfortranarray(mask))
        if kind == "rle":
            segmentation = {"size": [h, w], "counts": decompress_counts(rle["counts"]).tolist()}
        else:
            segmentation = {"size": [h, w], "counts": rle["counts"].decode()}
    counts = segmentation_to_counts(segmentation, h, w)
    for box, size in [([7.0, 10.5, 80.0, 125.0], 28), ([20.3, 30.7, 69.9, 99.1], 56), ([0, 0, h, w], 112)]:
        np.testing.assert_array_equal(crop_rle(counts, h, w, box, size), reference_crop(mask, box, size))


def test_crop_of_a_flipped_mask_is_the_mirrored_crop():
    h, w = 60, 90
    mask = np.zeros((h, w), np.uint8)
    mask[10:50, 20:40] = 1
    mask[30:50, 40:70] = 1
    box = [10.0, 20.0, 50.0, 70.0]
    flipped_box = [10.0, w - 70.0, 50.0, w - 20.0]
    counts = segmentation_to_counts(mask_utils.encode(np.asfortranarray(mask)), h, w)
    flipped = segmentation_to_counts(mask_utils.encode(np.asfortranarray(mask[:, ::-1].copy())), h, w)
    np.testing.assert_array_equal(
        crop_rle(flipped, h, w, flipped_box, 20), crop_rle(counts, h, w, box, 20)[:, ::-1]
    )


@pytest.mark.parametrize("seed", range(6))
def test_graph_rle_matches_the_numpy_reader(seed):
    """The TensorFlow decompress + crop gives the NumPy reader's runs and crops exactly."""
    import tensorflow as tf

    from mrcnn_tf.data import rle_tf

    rng = np.random.default_rng(seed)
    h, w = rng.integers(5, 90, 2)
    mask = (rng.random((h, w)) < 0.4).astype(np.uint8)
    mask[: h // 2] = 0  # long runs too
    counts = mask_utils.encode(np.asfortranarray(mask))["counts"]
    np.testing.assert_array_equal(
        rle_tf.decompress_counts(tf.constant(counts)).numpy(), decompress_counts(counts)
    )
    boxes = np.array([[0, 0, h, w], [1.3, 2.7, h - 0.4, w - 1.1], [h / 3, w / 4, h / 2, w / 2]], np.float64)
    crops = rle_tf.crop_rle_strings(tf.constant([counts] * 3), tf.constant(boxes), h, w, 12).numpy()
    for box, crop in zip(boxes, crops, strict=True):
        np.testing.assert_array_equal(crop, reference_crop(mask, box, 12))
