"""Geometric transforms of one example, in TensorFlow (run inside ``tf.data``).

Conventions: ``image`` ``[H, W, 3]``; ``boxes`` float32 ``[G, 4]`` ``[y1, x1, y2, x2]`` in
pixels of the image (pixel ``i`` covers ``[i, i + 1)``); ``masks`` ``[G, S, S]`` cropped to
their boxes (see :mod:`mrcnn_tf.data.base`). Because masks live in box coordinates, resizing
the image leaves them unchanged and a horizontal flip reverses their columns: both are exact.
A crop that cuts a box clips the box but keeps the mask's frame in ``mask_boxes``.
``Instances`` is a dict of ``boxes``, ``mask_boxes``, ``classes``, ``masks`` and, for datasets
with keypoints, ``keypoints`` ``[G, K, 3]`` ``(x, y, v)`` (:mod:`mrcnn_tf.ops.keypoints`).
Random choices take a stateless ``seed`` (int32 ``[2]``), so a pipeline is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from mrcnn_tf.ops.keypoints import flip_keypoints

__all__ = [
    "Instances",
    "crop_instances",
    "flip_boxes",
    "flip_left_right",
    "pad_image",
    "pad_instances",
    "resize_image",
    "scaled_size",
    "short_side_size",
]

#: ``boxes`` ``[G, 4]``, ``mask_boxes`` ``[G, 4]``, ``classes`` ``[G]``, ``masks`` ``[G, S, S]``.
Instances = dict[str, tf.Tensor]


SIZE_ROUNDING = ("round", "floor")


def scaled_size(height: tf.Tensor, width: tf.Tensor, scale: tf.Tensor, rounding: str = "round") -> tf.Tensor:
    """int32 ``[2]``: ``(height, width) * scale``, rounded (``round``: to the nearest in
    float32; ``floor``: torchvision's ``interpolate(scale_factor=...)``, ``floor(dim * scale)`` in
    float64), at least 1."""
    if rounding == "floor":
        hw = tf.cast(tf.stack([height, width]), tf.float64) * tf.cast(scale, tf.float64)
        return tf.cast(tf.maximum(tf.floor(hw), 1.0), tf.int32)
    hw = tf.cast(tf.stack([height, width]), tf.float32)
    return tf.cast(tf.maximum(tf.round(hw * scale), 1.0), tf.int32)


def short_side_size(
    height: tf.Tensor, width: tf.Tensor, min_size, max_size, rounding: str = "round"
) -> tf.Tensor:
    """int32 ``[2]``: the size with the shorter side ``min_size`` and the longer at most ``max_size``.

    Detectron2's ``ResizeShortestEdge`` and torchvision's ``GeneralizedRCNNTransform``:
    ``scale = min(min_size / short, max_size / long)``, then ``rounding`` (``floor`` computes in
    float64 as torchvision does in Python: 500 × (480 / 500) is 480, not 479).
    """
    dtype = tf.float64 if rounding == "floor" else tf.float32  # torchvision: Python floats
    h, w = tf.cast(height, dtype), tf.cast(width, dtype)
    scale = tf.minimum(
        tf.cast(min_size, dtype) / tf.minimum(h, w), tf.cast(max_size, dtype) / tf.maximum(h, w)
    )
    return scaled_size(height, width, scale, rounding)


def resize_image(image: tf.Tensor, size: tf.Tensor, antialias: bool = True) -> tf.Tensor:
    """Bilinear resize to ``size`` (int32 ``[2]``), as float32; no-op when the size is unchanged.

    ``antialias`` low-pass filters when shrinking (as Pillow does), so large images are not
    aliased; enlarging is plain bilinear either way.
    """
    image = tf.convert_to_tensor(image)
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], size))
    return tf.cond(
        same,
        lambda: tf.cast(image, tf.float32),
        lambda: tf.image.resize(image, size, method="bilinear", antialias=antialias),
    )


def flip_boxes(boxes: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Mirror ``[..., 4]`` boxes in an image of ``width`` columns."""
    w = tf.cast(width, boxes.dtype)
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    return tf.stack([y1, w - x2, y2, w - x1], axis=-1)


def flip_left_right(
    image: tf.Tensor, instances: Instances, width: tf.Tensor, keypoint_flip: Sequence[int] | None = None
) -> tuple[tf.Tensor, Instances]:
    """Mirror an image of ``width`` columns with its instances (exact: masks reverse columns).

    Keypoints are mirrored and reordered by ``keypoint_flip`` (left <-> right; see
    :func:`mrcnn_tf.data.coco_keypoints.flip_map`), which they then need.
    """
    flipped = dict(instances)
    flipped["boxes"] = flip_boxes(instances["boxes"], width)
    flipped["mask_boxes"] = flip_boxes(instances["mask_boxes"], width)
    flipped["masks"] = instances["masks"][:, :, ::-1]
    if "keypoints" in instances:
        if keypoint_flip is None:
            raise ValueError("flipping keypoints needs their flip map (keypoint_flip)")
        flipped["keypoints"] = flip_keypoints(instances["keypoints"], width, keypoint_flip)
    return image[:, ::-1], flipped


def scale_keypoints(keypoints: tf.Tensor, ratio: tf.Tensor) -> tf.Tensor:
    """``[G, K, 3]`` keypoints of an image resized by ``ratio`` ``[2]`` (y, x output px per input px)."""
    return keypoints * tf.stack([ratio[1], ratio[0], 1.0])


def crop_instances(instances: Instances, offset: tf.Tensor, size: tf.Tensor) -> Instances:
    """The instances of the window ``[offset, offset + size)`` of an image.

    Boxes are shifted and clipped to the window, and removed when nothing is left. Keypoints
    are shifted; those outside the window become unlabelled. The masks are not touched:
    ``mask_boxes`` keep the shifted, *unclipped* boxes the masks are cropped to (the model
    builds its mask targets from those), so a crop costs no mask accuracy.
    """
    shift = tf.cast(offset, tf.float32)
    offset = tf.tile(shift, [2])[None]
    limit = tf.tile(tf.cast(size, tf.float32), [2])[None]
    boxes = tf.clip_by_value(instances["boxes"] - offset, 0.0, limit)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    cropped = {"boxes": boxes, "mask_boxes": instances["mask_boxes"] - offset}
    cropped.update({k: instances[k] for k in ("classes", "masks")})
    if "keypoints" in instances:  # keypoints the window cuts off become unlabelled (Detectron2)
        kp = instances["keypoints"]
        x, y = kp[..., 0] - shift[1], kp[..., 1] - shift[0]
        h, w = tf.cast(size[0], tf.float32), tf.cast(size[1], tf.float32)
        inside = (kp[..., 2] > 0) & (x >= 0) & (y >= 0) & (x <= w) & (y <= h)
        cropped["keypoints"] = tf.where(inside[..., None], tf.stack([x, y, kp[..., 2]], -1), 0.0)
    return {k: tf.boolean_mask(v, keep) for k, v in cropped.items()}


def pad_instances(instances: Instances, max_instances: int, seed: tf.Tensor | None = None) -> Instances:
    """Pad (or cut) every instance tensor to exactly ``max_instances`` rows; padding is zeros.

    Padding rows have class 0, which marks them invalid. With more instances than that, a
    random subset is kept when ``seed`` is given (training), the first ones otherwise.
    """
    count = tf.shape(instances["classes"])[0]
    if seed is not None:
        order = tf.random.experimental.stateless_shuffle(tf.range(count), seed=seed)
        instances = {k: tf.gather(v, order) for k, v in instances.items()}
    n = tf.minimum(count, max_instances)
    padded = {}
    for key, value in instances.items():
        rank = value.shape.rank
        value = tf.pad(value[:n], [[0, max_instances - n]] + [[0, 0]] * (rank - 1))
        value.set_shape([max_instances, *instances[key].shape[1:]])
        padded[key] = value
    return padded


def pad_image(
    image: tf.Tensor, size_divisibility: int = 32, pad_size: Sequence[int] | None = None
) -> tf.Tensor:
    """Pad with zeros at the bottom/right to ``pad_size`` or to multiples of ``size_divisibility``.

    Raises (in the graph) when the image is larger than ``pad_size``.
    """
    shape = tf.shape(image)
    if pad_size is not None:
        target = tf.constant(list(pad_size), tf.int32)
        check = tf.debugging.assert_less_equal(
            shape[:2],
            target,
            message=f"image larger than pad_size {list(pad_size)}; raise pad_size or max_size",
        )
        with tf.control_dependencies([check]):
            image = tf.pad(image, [[0, target[0] - shape[0]], [0, target[1] - shape[1]], [0, 0]])
        image.set_shape([pad_size[0], pad_size[1], 3])
        return image
    d = size_divisibility
    target = (shape[:2] + d - 1) // d * d
    return tf.pad(image, [[0, target[0] - shape[0]], [0, target[1] - shape[1]], [0, 0]])
