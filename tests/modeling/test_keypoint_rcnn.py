"""Keypoint R-CNN parts: the head vs a float64 NumPy reference, the detector with a keypoint head
(with and without a mask head), its config checks and serialization."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import mrcnn_tf
from mrcnn_tf.config import load_config
from mrcnn_tf.modeling.keypoint_heads.krcnn_head import KeypointRCNNHead
from registry import ConfigError

TINY = [
    "model.backbone.width=8",
    "model.neck.num_channels=16",
    "model.box_head.fc_dim=32",
    "model.mask_head.conv_dim=8",
    "model.mask_head.num_convs=1",
    "model.keypoint_head.conv_dim=8",
    "model.keypoint_head.num_convs=2",
    "model.roi_sampler.num_samples=32",
    "model.proposal_generator.post_nms_topk_test=32",
    "model.detection_generator.max_detections=12",
    "model.detection_generator.score_threshold=0.0",
]


def tiny(*extra):
    return load_config("keypoint_rcnn_r18_fpn_synthetic", [*TINY, *extra])


def ref_deconv_same(x, kernel):
    """Transposed conv, stride 2, 4x4, torch ``padding=1`` (= Keras ``same``), float64.

    x ``[H, W, C]``; kernel ``[4, 4, K, C]`` (Keras's layout) -> ``[2H, 2W, K]``.
    """
    h, w, _ = x.shape
    full = np.zeros((2 * h + 2, 2 * w + 2, kernel.shape[2]))
    for i in range(h):
        for j in range(w):
            full[2 * i : 2 * i + 4, 2 * j : 2 * j + 4] += np.einsum("uvkc,c->uvk", kernel, x[i, j])
    return full[1:-1, 1:-1]


def ref_upsample2(x):
    """Bilinear 2x with half-pixel centres (torch ``align_corners=False``), float64."""
    h, w, _ = x.shape

    def taps(n):
        src = (np.arange(2 * n) + 0.5) / 2 - 0.5
        src = np.clip(src, 0, n - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        return lo, hi, src - lo

    ylo, yhi, fy = taps(h)
    xlo, xhi, fx = taps(w)
    rows = x[ylo] * (1 - fy)[:, None, None] + x[yhi] * fy[:, None, None]
    return rows[:, xlo] * (1 - fx)[None, :, None] + rows[:, xhi] * fx[None, :, None]


def test_head_is_deconv_then_bilinear_as_the_paper_and_detectron2():
    rng = np.random.default_rng(0)
    head = KeypointRCNNHead(num_keypoints=5, num_convs=0)
    x = rng.normal(0, 1, (2, 3, 14, 14, 6)).astype(np.float32)
    out = head(tf.constant(x)).numpy()
    assert out.shape == (2, 3, 56, 56, 5)
    kernel = head.deconv.kernel.numpy().astype(np.float64)
    bias = head.deconv.bias.numpy().astype(np.float64)
    for b, n in ((0, 0), (1, 2)):
        want = ref_upsample2(ref_deconv_same(x[b, n].astype(np.float64), kernel) + bias)
        np.testing.assert_allclose(out[b, n], want, atol=1e-4)
    assert KeypointRCNNHead(3, num_convs=1, conv_dim=4, upsample_scale=1)(tf.constant(x)).shape == (
        2,
        3,
        28,
        28,
        3,
    )


def test_model_with_both_heads_and_keypoint_rcnn_without_a_mask_head():
    keras.utils.set_random_seed(0)
    model = mrcnn_tf.build_model(tiny())
    model.build()
    assert model.num_keypoints == 9 and model.loss_names[-2:] == ("mask", "keypoint")
    images = tf.constant(np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)), tf.float32)
    out = model({"images": images})
    assert out["keypoints"].shape == (2, 12, 9, 3) and out["masks"].shape[:2] == (2, 12)
    empty = out["classes"].numpy() == 0
    assert (out["keypoints"].numpy()[empty] == 0).all()
    full = out["keypoints"].numpy()[~empty]
    boxes = out["boxes"].numpy()[~empty]
    # keypoints lie in their boxes (the heatmap covers the box); scores are probabilities
    assert ((full[..., 0] >= boxes[:, None, 1] - 1e-3) & (full[..., 0] <= boxes[:, None, 3] + 1e-3)).all()
    assert ((full[..., 2] > 0) & (full[..., 2] <= 1)).all()
    krcnn = mrcnn_tf.build_model(tiny("model.mask_head=null"))
    krcnn.build()
    out = krcnn({"images": images})
    assert "masks" not in out and out["keypoints"].shape == (2, 12, 9, 3)
    assert krcnn.loss_names == ("rpn_objectness", "rpn_box", "box_cls", "box_reg", "keypoint")
    assert krcnn.mask_head is None and len(model.weights) - len(krcnn.weights) == len(model.mask_head.weights)


def test_keypoint_model_reloads_from_its_config_with_the_same_outputs(tmp_path):
    keras.utils.set_random_seed(0)
    model = mrcnn_tf.build_model(tiny("model.mask_head=null"))
    model.build()
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    images = tf.constant(np.random.default_rng(2).uniform(0, 255, (1, 64, 64, 3)), tf.float32)
    a, b = model({"images": images}), again({"images": images})
    np.testing.assert_allclose(a["keypoints"].numpy(), b["keypoints"].numpy(), atol=1e-5)
    assert again.mask_head is None and again.num_keypoints == 9


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        (["model.keypoint_roi_aligner=null"], "model.keypoint_roi_aligner", "needs its own RoI aligner"),
        (["model.num_keypoints=null"], "model.num_keypoints", "positive integer with a keypoint_head"),
        (
            ["model.mask_head=null", "model.keypoint_head=null"],
            "model.mask_head",
            "no keypoint_head: the model needs one of them",
        ),
        (
            ["model.keypoint_head.num_keypoints=4"],
            "model.keypoint_head",
            "num_keypoints 4, but the model has 9",
        ),
    ],
)
def test_keypoint_configs_that_do_not_fit_are_refused_naming_the_key(overrides, key, message):
    with pytest.raises(ConfigError, match=message) as info:
        mrcnn_tf.build_model(tiny(*overrides))
    assert key in str(info.value)


def test_num_keypoints_is_checked_against_the_dataset(tmp_path):
    from mrcnn_tf.data.builder import check_num_classes
    from mrcnn_tf.data.synthetic import SyntheticDataset
    from mrcnn_tf.data.synthetic_keypoints import SyntheticKeypointDataset

    kp = SyntheticKeypointDataset(num_images=2, root=tmp_path / "kp")
    assert check_num_classes(tiny(), kp) == 1
    with pytest.raises(ConfigError, match=r"model.num_keypoints.*is 17 but the dataset's instances have 9"):
        check_num_classes(tiny("model.num_keypoints=17"), kp)
    shapes = SyntheticDataset(num_images=2, root=tmp_path / "shapes")
    with pytest.raises(ConfigError, match="the dataset has no keypoints"):
        check_num_classes(tiny("model.num_classes=3", "data.num_classes=3"), shapes)
