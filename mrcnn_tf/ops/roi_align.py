"""RoIAlign (He et al., Mask R-CNN, 2017) with Detectron2's ``ROIAlignV2`` semantics.

Coordinates: pixel i of a feature map covers [i, i+1) and its value sits at i + 0.5. A box
``[y1, x1, y2, x2]`` in input-image pixels maps to the feature map by ``spatial_scale``
(1/stride). With ``aligned=True`` the box is shifted by −0.5 so that the bilinear samples land
where the pixels' values are (Detectron2 ``ROIAlignV2``; "Where are Pixels?", Wu 2021);
``aligned=False`` is the original Detectron/Caffe2 op (no shift, RoI sizes at least 1 pixel).

Each of the ``output_size × output_size`` bins averages (or takes the max of)
``sampling_ratio × sampling_ratio`` bilinear samples placed at the centres of a regular
sub-grid. A sample more than one pixel outside the map contributes 0; one within a pixel of
the border takes the border value.

``sampling_ratio=0`` is Detectron2's adaptive grid (``ROIAlignV2`` in its model zoo):
``ceil(roi_size / output_size)`` samples per bin and axis, different for every RoI. With static
shapes it is a bounded grid with masked samples: every RoI gets ``max_sampling_ratio`` sample
slots per bin and axis, placed so that its first ``g`` are exactly its ``g`` samples (evenly
spaced over the RoI), and the bins average only those (a pooling matrix per RoI). A RoI that
needs more than ``max_sampling_ratio`` per axis (taller than ``max_sampling_ratio × output_size``
feature pixels) gets ``max_sampling_ratio`` evenly spaced samples per bin instead: an
approximation, counted by :func:`adaptive_overflow`.

Backends, which agree to 1e-5:

* ``crop_and_resize``: ``tf.image.crop_and_resize`` on the map padded by one edge-replicated
  pixel (which reproduces the border rule above), then pooling of each bin's samples. Fast on
  GPU; ``CropAndResize`` has no XLA kernel. Its gradient to the map is ours
  (:mod:`mrcnn_tf.ops.crop_and_resize`, segment sums) on every device: TensorFlow's
  ``CropAndResizeGradImage`` CPU kernel shards boxes over threads that add into the same pixels
  without synchronisation, which loses updates (measured on TF 2.21, 2 threads, 512 boxes of
  14×14 on a 32×32 map: 1.6 % to 6 % relative error, different every call; exact with one
  thread; tensorflow#42033). Choosing TensorFlow's kernel on GPUs would make the graph depend on
  the machine that traces it (a SavedModel exported on a CPU would carry the other one).
* ``gather``: the four bilinear neighbours of every sample are gathered explicitly. Works with
  ``jit_compile=True`` and on TPUs.
"""

from __future__ import annotations

import tensorflow as tf

from mrcnn_tf.ops.crop_and_resize import crop_and_resize_race_free

BACKENDS = ("crop_and_resize", "gather")
LEVEL_RULES = ("detectron2", "torchvision")
POOLING = ("avg", "max")


def _sample_grid(
    boxes: tf.Tensor,
    output_size: int,
    spatial_scale,
    sampling_ratio: int,
    aligned: bool,
    max_sampling_ratio: int = 4,
):
    """Sample positions ``ys [K, S]``, ``xs [K, S]`` (S = size * ratio) in index units.

    Args:
        boxes: ``[K, 4]`` input-pixel boxes; spatial_scale: a float or ``[K]`` per box.
        sampling_ratio: >= 1, or 0 for the adaptive grid (then S = size * max_sampling_ratio
            and the third return value is each RoI's samples per bin ``(g_y, g_x)``, int32
            ``[K]`` each; slots past ``size * g`` lie beyond the RoI and are masked out).

    Index units: pixel i's value sits at position i (Detectron2's bilinear convention), which
    is why ``aligned`` subtracts half a pixel from the box.
    """
    scale = tf.cast(spatial_scale, tf.float32)
    if scale.shape.rank == 1:
        scale = scale[:, None]
    boxes = tf.cast(boxes, tf.float32) * scale
    offset = 0.5 if aligned else 0.0
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    h, w = y2 - y1, x2 - x1
    y1, x1 = y1 - offset, x1 - offset
    if not aligned:
        h, w = tf.maximum(h, 1.0), tf.maximum(w, 1.0)
    if sampling_ratio == 0:
        limit = float(max_sampling_ratio)
        g_y = tf.clip_by_value(tf.math.ceil(h / output_size), 0.0, limit)  # 0 for an empty RoI
        g_x = tf.clip_by_value(tf.math.ceil(w / output_size), 0.0, limit)
        slots = tf.range(output_size * max_sampling_ratio, dtype=tf.float32) + 0.5
        ys = y1[:, None] + h[:, None] * slots / (output_size * tf.maximum(g_y, 1.0))[:, None]
        xs = x1[:, None] + w[:, None] * slots / (output_size * tf.maximum(g_x, 1.0))[:, None]
        return ys, xs, (tf.cast(g_y, tf.int32), tf.cast(g_x, tf.int32))
    n = output_size * sampling_ratio
    steps = (tf.range(n, dtype=tf.float32) + 0.5) / float(n)  # [S] fractions of the RoI
    return y1[:, None] + h[:, None] * steps, x1[:, None] + w[:, None] * steps


def _adaptive_pooling_matrix(grid: tf.Tensor, output_size: int, max_sampling_ratio: int) -> tf.Tensor:
    """``[K, output_size, output_size * max_sampling_ratio]``: row b averages slots
    ``b * g .. (b + 1) * g - 1`` (weight ``1 / g``); all zero for ``g = 0``."""
    slots = tf.range(output_size * max_sampling_ratio)[None, None, :]
    bins = tf.range(output_size)[None, :, None]
    g = grid[:, None, None]
    inside = (slots >= bins * g) & (slots < (bins + 1) * g)
    return tf.cast(inside, tf.float32) / tf.cast(tf.maximum(g, 1), tf.float32)


def _pool_adaptive(samples: tf.Tensor, grids, output_size: int, max_sampling_ratio: int) -> tf.Tensor:
    """``[K, S, S, C]`` masked-grid samples -> ``[K, output_size, output_size, C]`` bin averages."""
    pool_y = _adaptive_pooling_matrix(grids[0], output_size, max_sampling_ratio)
    pool_x = _adaptive_pooling_matrix(grids[1], output_size, max_sampling_ratio)
    rows = tf.einsum("kbj,kjlc->kblc", pool_y, samples)
    return tf.einsum("kdl,kblc->kbdc", pool_x, rows)


def adaptive_overflow(
    boxes: tf.Tensor, output_size: int, spatial_scale, max_sampling_ratio: int
) -> tf.Tensor:
    """How many of ``boxes`` (``[..., 4]`` input pixels, on a map of ``spatial_scale``) need more
    adaptive samples per bin than ``max_sampling_ratio`` (and so are approximated)."""
    boxes = tf.cast(boxes, tf.float32) * tf.cast(spatial_scale, tf.float32)
    sides = tf.maximum(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1])
    return tf.reduce_sum(tf.cast(tf.math.ceil(sides / output_size) > max_sampling_ratio, tf.int32))


def _pool_bins(samples: tf.Tensor, output_size: int, sampling_ratio: int, pooling: str) -> tf.Tensor:
    """``[K, S, S, C]`` samples -> ``[K, output_size, output_size, C]`` bins.

    Pooling windows of ``sampling_ratio`` with the same stride: TF's average-pooling kernel is
    ~17x faster on CPU than a mean over a 6-D reshape (146 ms -> 8.5 ms for 1000 RoIs of
    14x14x256); max pooling uses the reshape (see below).
    """
    if sampling_ratio == 1:
        return samples
    if pooling == "max":
        # Not tf.nn.max_pool2d: its oneDNN CPU gradient aborts the process on an empty input
        # ("Check failed: dtype() == expected_dtype (1 vs. 3)" in MklMaxPoolingGradOp,
        # tensorflow/tensorflow#126128, TF 2.21), and a pyramid level that no RoI maps to gives
        # an empty crop. The max over a reshape is slower but safe everywhere.
        shape = tf.shape(samples)
        channels = samples.shape[-1] if samples.shape[-1] is not None else shape[3]
        bins = tf.reshape(
            samples, [shape[0], output_size, sampling_ratio, output_size, sampling_ratio, channels]
        )
        return tf.reduce_max(bins, axis=[2, 4])
    return tf.nn.avg_pool2d(samples, sampling_ratio, sampling_ratio, "VALID")


def crop_and_resize_samples(
    features: tf.Tensor, ys: tf.Tensor, xs: tf.Tensor, box_indices: tf.Tensor
) -> tf.Tensor:
    """Bilinear samples ``[K, S, S, C]`` of ``features [B, H, W, C]`` via ``tf.image.crop_and_resize``.

    Args:
        ys, xs: ``[K, S]`` evenly spaced sample positions in index units.
        box_indices: ``[K]`` int32 image of each box.
    """
    height = tf.cast(tf.shape(features)[1], tf.float32)
    width = tf.cast(tf.shape(features)[2], tf.float32)
    padded = tf.pad(tf.cast(features, tf.float32), [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    # Index i of the map is index i + 1 of the padded map. crop_and_resize samples n evenly
    # spaced points from y1n * (H_padded - 1) to y2n * (H_padded - 1), and H_padded - 1 = H + 1.
    norm_boxes = tf.stack(
        [
            (ys[:, 0] + 1.0) / (height + 1.0),
            (xs[:, 0] + 1.0) / (width + 1.0),
            (ys[:, -1] + 1.0) / (height + 1.0),
            (xs[:, -1] + 1.0) / (width + 1.0),
        ],
        axis=-1,
    )
    n = tf.shape(ys)[-1]
    return crop_and_resize_race_free(padded, norm_boxes, box_indices, tf.stack([n, n]))


def _axis_weights(coords: tf.Tensor, size: tf.Tensor):
    """Bilinear neighbours and weights along one axis with Detectron2's border rule.

    Args:
        coords: sample positions in index units, ``[K, S]``.
        size: the axis length per box, int32 ``[K, 1]`` (or a scalar).

    Returns:
        (low index, high index, low weight, high weight), each ``[K, S]``; weights are 0
        for samples more than one pixel outside.
    """
    limit = tf.cast(size, tf.float32)
    valid = tf.logical_and(coords >= -1.0, coords <= limit)
    c = tf.clip_by_value(coords, 0.0, limit - 1.0)
    low = tf.floor(c)
    high = tf.minimum(low + 1.0, limit - 1.0)
    frac = c - low
    mask = tf.cast(valid, tf.float32)
    return tf.cast(low, tf.int32), tf.cast(high, tf.int32), (1.0 - frac) * mask, frac * mask


def gather_samples(
    flat: tf.Tensor, offsets: tf.Tensor, heights: tf.Tensor, widths: tf.Tensor, ys: tf.Tensor, xs: tf.Tensor
) -> tf.Tensor:
    """Bilinear samples ``[K, S, S, C]`` by explicit gathers (XLA friendly).

    Args:
        flat: ``[T, C]`` every feature map of every image, flattened row-major and concatenated.
        offsets: ``[K]`` int32 row of ``flat`` where the map of each box starts.
        heights, widths: ``[K]`` int32 size of that map.
        ys, xs: ``[K, S]`` sample positions in index units.
    """
    y_lo, y_hi, wy_lo, wy_hi = _axis_weights(ys, heights[:, None])
    x_lo, x_hi, wx_lo, wx_hi = _axis_weights(xs, widths[:, None])
    base = offsets[:, None, None]
    row = widths[:, None, None]

    def corner(yi, xi, wy, wx):
        values = tf.gather(flat, base + yi[:, :, None] * row + xi[:, None, :])  # [K, S, S, C]
        return values * (wy[:, :, None] * wx[:, None, :])[..., None]

    return (
        corner(y_lo, x_lo, wy_lo, wx_lo)
        + corner(y_lo, x_hi, wy_lo, wx_hi)
        + corner(y_hi, x_lo, wy_hi, wx_lo)
        + corner(y_hi, x_hi, wy_hi, wx_hi)
    )


def pyramid_table(
    features: list[tf.Tensor] | tuple[tf.Tensor, ...], index: tf.Tensor, box_indices: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Flatten a pyramid into one gather table and locate each box's map in it.

    Args:
        features: maps ``[B, H_l, W_l, C]``, one per level.
        index: ``[K]`` int32 position in ``features`` of each box's level.
        box_indices: ``[K]`` int32 image of each box.

    Returns:
        ``(flat [T, C], offsets [K], heights [K], widths [K])`` for :func:`gather_samples`.
    """
    batch = tf.shape(features[0])[0]
    channels = tf.shape(features[0])[-1]
    shapes = tf.stack([tf.shape(f)[1:3] for f in features])  # [L, 2]
    sizes = shapes[:, 0] * shapes[:, 1]
    starts = tf.cumsum(sizes * batch, exclusive=True)  # where each level starts in ``flat``
    flat = tf.concat([tf.reshape(tf.cast(f, tf.float32), [-1, channels]) for f in features], axis=0)
    offsets = tf.gather(starts, index) + box_indices * tf.gather(sizes, index)
    return flat, offsets, tf.gather(shapes[:, 0], index), tf.gather(shapes[:, 1], index)


def check_roi_align_args(
    output_size: int, sampling_ratio: int, backend: str, pooling: str, max_sampling_ratio: int = 4
) -> None:
    """Raise ``ValueError`` naming the bad argument of :func:`roi_align`."""
    if backend not in BACKENDS:
        raise ValueError(f"roi_align backend must be one of {BACKENDS}, got '{backend}'")
    if pooling not in POOLING:
        raise ValueError(f"roi_align pooling must be one of {POOLING}, got '{pooling}'")
    if int(sampling_ratio) < 0:
        raise ValueError(
            f"roi_align sampling_ratio must be >= 1, or 0 (Detectron2's adaptive grid), got {sampling_ratio}"
        )
    if int(sampling_ratio) == 0 and pooling != "avg":
        raise ValueError("roi_align sampling_ratio 0 (adaptive) averages; pooling must be 'avg'")
    if int(max_sampling_ratio) < 1:
        raise ValueError(f"roi_align max_sampling_ratio must be >= 1, got {max_sampling_ratio}")
    if int(output_size) < 1:
        raise ValueError(f"roi_align output_size must be >= 1, got {output_size}")


def roi_align(
    features: tf.Tensor,
    boxes: tf.Tensor,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int = 2,
    aligned: bool = True,
    backend: str = "crop_and_resize",
    pooling: str = "avg",
    max_sampling_ratio: int = 4,
) -> tf.Tensor:
    """Cut fixed-size features out of a map for every box (RoIAlign).

    Args:
        features: ``[B, H, W, C]`` float feature map.
        boxes: ``[B, N, 4]`` float ``[y1, x1, y2, x2]`` in input-image pixels (padded boxes
            are fine: they give finite values the caller ignores).
        output_size: bins per side (7 for the box head, 14 for the mask head).
        spatial_scale: feature pixels per input pixel, i.e. ``1 / stride``.
        sampling_ratio: samples per bin and axis (>= 1; 2 is the paper's / Detectron's choice),
            or 0: Detectron2's adaptive ``ceil(roi / output_size)`` (see the module docstring).
        aligned: shift by −0.5 pixel (ROIAlignV2, default) or not (the original op).
        backend: ``crop_and_resize`` (GPU) or ``gather`` (XLA/TPU).
        pooling: ``avg`` (default) or ``max`` over each bin's samples (the paper's ablation).
        max_sampling_ratio: with ``sampling_ratio=0``, the sample slots per bin and axis.

    Returns:
        ``[B, N, output_size, output_size, C]`` float32.
    """
    check_roi_align_args(output_size, sampling_ratio, backend, pooling, max_sampling_ratio)
    output_size, sampling_ratio = int(output_size), int(sampling_ratio)
    shape = tf.shape(features)
    batch, num = tf.shape(boxes)[0], tf.shape(boxes)[1]
    grid = _sample_grid(
        tf.reshape(boxes, [-1, 4]),
        output_size,
        float(spatial_scale),
        sampling_ratio,
        aligned,
        max_sampling_ratio,
    )
    ys, xs = grid[0], grid[1]
    box_indices = tf.repeat(tf.range(batch), num)
    if backend == "crop_and_resize":
        samples = crop_and_resize_samples(features, ys, xs, box_indices)
    else:
        flat = tf.reshape(tf.cast(features, tf.float32), [-1, shape[3]])
        k = tf.shape(box_indices)[0]
        samples = gather_samples(
            flat, box_indices * shape[1] * shape[2], tf.fill([k], shape[1]), tf.fill([k], shape[2]), ys, xs
        )
    if sampling_ratio == 0:
        pooled = _pool_adaptive(samples, grid[2], output_size, max_sampling_ratio)
    else:
        pooled = _pool_bins(samples, output_size, sampling_ratio, pooling)
    return tf.reshape(pooled, [batch, num, output_size, output_size, shape[3]])


def assign_levels(
    boxes: tf.Tensor,
    min_level: int = 2,
    max_level: int = 5,
    canonical_size: float = 224.0,
    canonical_level: int = 4,
    level_rule: str = "detectron2",
) -> tf.Tensor:
    """FPN level of each box: ``floor(k0 + log2(sqrt(w * h) / 224))`` clamped (FPN paper eq. 1).

    Args:
        boxes: ``[..., 4]`` ``[y1, x1, y2, x2]`` input pixels; zero-area and padded boxes go to
            ``min_level``.
        level_rule: where the guard that keeps the log finite goes: ``detectron2``
            ``floor(k0 + log2(sqrt(wh) / 224 + 1e-8))`` or ``torchvision``
            ``floor(k0 + log2(sqrt(wh) / 224) + 1e-6)`` (a box of exactly 224·2^k differs).

    Returns:
        ``[...]`` int32 levels in ``[min_level, max_level]``.
    """
    if level_rule not in LEVEL_RULES:
        raise ValueError(f"level_rule must be one of {LEVEL_RULES}, got '{level_rule}'")
    y1, x1, y2, x2 = tf.unstack(tf.cast(boxes, tf.float32), axis=-1)
    size = tf.sqrt(tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0))
    if level_rule == "torchvision":
        log2 = tf.math.log(tf.maximum(size, 1e-30) / canonical_size) / tf.math.log(2.0)
        level = tf.floor(canonical_level + log2 + 1e-6)
    else:
        level = tf.floor(canonical_level + tf.math.log(size / canonical_size + 1e-8) / tf.math.log(2.0))
    return tf.cast(tf.clip_by_value(level, min_level, max_level), tf.int32)


def route_boxes(
    num_levels: int,
    boxes: tf.Tensor,
    min_level: int = 2,
    canonical_size: float = 224.0,
    canonical_level: int = 4,
    level_rule: str = "detectron2",
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Send every box of a batch to its pyramid level (shared by RoIAlign and RoIPool).

    Args:
        num_levels: maps in the pyramid, levels ``min_level .. min_level + num_levels - 1``.
        boxes: ``[B, N, 4]`` ``[y1, x1, y2, x2]`` in input-image pixels.

    Returns:
        ``(flat_boxes [K, 4], index [K], scales [K], box_indices [K])`` with K = B * N: the
        boxes flattened, the position of each box's level in the pyramid list, that level's
        ``1 / stride``, and the image each box belongs to.
    """
    max_level = min_level + num_levels - 1
    batch, num = tf.shape(boxes)[0], tf.shape(boxes)[1]
    flat_boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    levels = assign_levels(flat_boxes, min_level, max_level, canonical_size, canonical_level, level_rule)
    index = levels - min_level
    scales = tf.gather(tf.constant([2.0**-lv for lv in range(min_level, max_level + 1)]), index)
    return flat_boxes, index, scales, tf.repeat(tf.range(batch), num)


def multilevel_roi_align(
    features: list[tf.Tensor] | tuple[tf.Tensor, ...],
    boxes: tf.Tensor,
    output_size: int,
    min_level: int = 2,
    sampling_ratio: int = 2,
    aligned: bool = True,
    backend: str = "crop_and_resize",
    pooling: str = "avg",
    canonical_size: float = 224.0,
    canonical_level: int = 4,
    level_rule: str = "detectron2",
    max_sampling_ratio: int = 4,
    roi_chunk: int | None = 64,
) -> tf.Tensor:
    """RoIAlign on a feature pyramid, each box on the level :func:`assign_levels` picks.

    Args:
        features: maps ``[B, H_l, W_l, C]`` for levels ``min_level, min_level + 1, ...``
            (stride ``2**level``), all with the same C.
        boxes: ``[B, N, 4]`` ``[y1, x1, y2, x2]`` in input-image pixels.
        roi_chunk: with ``sampling_ratio=0``, RoIs are aligned this many at a time (one after
            the other), so that the masked grid's samples stay small; None: all at once.
        Others: as :func:`roi_align` and :func:`assign_levels`.

    Returns:
        ``[B, N, output_size, output_size, C]`` float32. Shapes are static, so the ``gather``
        backend compiles with XLA; ``crop_and_resize`` groups boxes by level with dynamic
        shapes inside (GPU path).
    """
    check_roi_align_args(output_size, sampling_ratio, backend, pooling, max_sampling_ratio)
    output_size, sampling_ratio = int(output_size), int(sampling_ratio)
    batch, num = tf.shape(boxes)[0], tf.shape(boxes)[1]
    flat_boxes, index, scales, box_indices = route_boxes(
        len(features), boxes, min_level, canonical_size, canonical_level, level_rule
    )
    channels = tf.shape(features[0])[-1]

    def align(flat_boxes, index, scales, box_indices):
        grid = _sample_grid(flat_boxes, output_size, scales, sampling_ratio, aligned, max_sampling_ratio)
        ys, xs = grid[0], grid[1]

        def pool(samples, picked=None):
            if sampling_ratio != 0:
                return _pool_bins(samples, output_size, sampling_ratio, pooling)
            grids = grid[2] if picked is None else tuple(tf.gather(g, picked) for g in grid[2])
            return _pool_adaptive(samples, grids, output_size, max_sampling_ratio)

        if backend == "gather":
            return pool(gather_samples(*pyramid_table(features, index, box_indices), ys, xs))
        # Each level crops and pools only its own boxes; one gather puts the bins back in box
        # order (no full-size buffer per level: memory and time scale with the boxes).
        pooled, order = [], []
        for position, feature in enumerate(features):
            picked = tf.cast(tf.where(tf.equal(index, position))[:, 0], tf.int32)  # [K_l]
            crops = crop_and_resize_samples(
                feature, tf.gather(ys, picked), tf.gather(xs, picked), tf.gather(box_indices, picked)
            )
            pooled.append(pool(crops, picked))
            order.append(picked)
        return tf.gather(tf.concat(pooled, 0), tf.math.invert_permutation(tf.concat(order, 0)))

    if sampling_ratio != 0 or not roi_chunk:
        pooled = align(flat_boxes, index, scales, box_indices)
    else:  # the adaptive grid's samples of all RoIs at once could take gigabytes: chunks, in turn
        total = tf.shape(flat_boxes)[0]
        padded = (total + roi_chunk - 1) // roi_chunk * roi_chunk

        def chunks(t):
            t = tf.pad(t, [[0, padded - total]] + [[0, 0]] * (t.shape.rank - 1))
            return tf.reshape(t, tf.concat([[-1, roi_chunk], tf.shape(t)[1:]], 0))

        pooled = tf.map_fn(
            lambda args: align(*args),
            (chunks(flat_boxes), chunks(index), chunks(scales), chunks(box_indices)),
            fn_output_signature=tf.TensorSpec([roi_chunk, output_size, output_size, None], tf.float32),
            parallel_iterations=1,
        )
        pooled = tf.reshape(pooled, tf.concat([[-1], tf.shape(pooled)[2:]], 0))[:total]
    return tf.reshape(pooled, [batch, num, output_size, output_size, channels])
