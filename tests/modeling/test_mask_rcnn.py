"""The assembled detector: training steps, gradients, frozen weights, XLA, empty images."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import mrcnn_tf
from mrcnn_tf.config import load_config
from mrcnn_tf.export.targets import XLA_OVERRIDES

#: Small sample counts keep CPU steps fast; the architecture is the config's.
FAST = [
    "model.roi_sampler.num_samples=32",
    "model.proposal_generator.pre_nms_topk_train=300",
    "model.proposal_generator.post_nms_topk_train=64",
    "model.proposal_generator.post_nms_topk_test=32",
    "model.detection_generator.max_detections=10",
]


def batch(size=64, seed=0):
    """Two images with three and one objects (padded to 4), rectangle masks cropped to boxes."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    boxes = np.zeros((2, 4, 4), np.float32)
    boxes[0, :3] = [[4, 6, 30, 40], [20, 20, 60, 50], [40, 2, 62, 20]]
    boxes[1, 0] = [10, 10, 50, 56]
    classes = np.array([[1, 2, 3, 0], [2, 0, 0, 0]], np.int32)
    masks = np.zeros((2, 4, 16, 16), np.float32)
    masks[:, :, 2:14, 3:13] = 1.0
    return {"images": images, "gt_boxes": boxes, "gt_classes": classes, "gt_masks": masks}


def build(config: str, *overrides: str):
    keras.utils.set_random_seed(0)
    return mrcnn_tf.build_model(load_config(config, [*FAST, *overrides]))


def losses_and_grads(model, x):
    with tf.GradientTape() as tape:
        outputs = model(x, training=True)
        total = model.compute_loss(x, None, outputs)
    terms = model.loss_terms(outputs)
    return total, terms, tape.gradient(total, model.trainable_variables)


@pytest.mark.parametrize(
    "config",
    [
        "mask_rcnn_r18_fpn_synthetic.yaml",
        "mask_rcnn_r50_fpn_1x_coco.yaml",
        "mask_rcnn_r50_c4_1x_coco.yaml",
    ],
)
def test_training_step_gives_finite_losses_and_a_gradient_for_every_trainable_weight(config):
    model = build(config)
    total, terms, grads = losses_and_grads(model, batch())
    assert set(terms) == {"rpn_objectness", "rpn_box", "box_cls", "box_reg", "mask"}
    for name, value in terms.items():
        assert np.isfinite(float(value)) and float(value) >= 0.0, name
    # untrained: mask BCE near log 2 (predictor std 0.001), positives present so box losses > 0
    assert 0.3 < float(terms["rpn_objectness"]) < 2.0  # random backbone: logits not tiny
    assert 0.5 < float(terms["mask"]) < 0.9
    assert float(terms["rpn_box"]) > 0.0 and float(terms["box_reg"]) > 0.0
    assert float(total) == pytest.approx(sum(float(v) for v in terms.values()), rel=1e-5)
    missing = [v.path for v, g in zip(model.trainable_variables, grads, strict=True) if g is None]
    assert not missing, f"no gradient for {missing}"


def test_frozen_parts_are_not_trainable_and_do_not_change_in_fit():
    model = build(
        "mask_rcnn_r18_fpn_synthetic.yaml", "model.backbone.freeze_at=2", "model.backbone.norm=frozen_bn"
    )
    x = batch()
    model(x, training=True)
    trainable = {id(v) for v in model.trainable_variables}
    frozen = [v for v in model.backbone.weights if "stem" in v.path or "res2_" in v.path]
    assert frozen and not any(id(v) in trainable for v in frozen)  # freeze_at=2: stem + res2
    assert any("res3_" in v.path for v in model.trainable_variables)
    before_frozen = [v.numpy().copy() for v in frozen]
    head = model.box_head.predictor.cls_score.kernel
    before_head = head.numpy().copy()
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    history = model.fit(tf.data.Dataset.from_tensors(x), epochs=1, verbose=0)
    for value, old in zip(frozen, before_frozen, strict=True):
        np.testing.assert_array_equal(value.numpy(), old)
    assert not np.array_equal(head.numpy(), before_head)
    assert {"loss", "rpn_objectness_loss", "mask_loss"} <= set(history.history)
    assert history.history["loss"][0] > 0.0


GATHER = ["model.box_roi_aligner.backend=gather", "model.mask_roi_aligner.backend=gather"]


def _twins(*overrides):
    """The same detector (same weights) with ``mask_slots: used`` and ``mask_slots: all``."""
    used = build("mask_rcnn_r18_fpn_synthetic.yaml", "model.mask_slots=used", *overrides)
    full = build("mask_rcnn_r18_fpn_synthetic.yaml", "model.mask_slots=all", *overrides)
    used.build()
    full.build()
    full.set_weights(used.get_weights())
    return used, full


def test_mask_head_on_used_slots_gives_the_losses_and_gradients_of_all_slots():
    # gather RoIAlign: TensorFlow's CPU crop_and_resize image gradient races between threads
    # (tests/ops/test_roi_align.py), which made this comparison flaky through the FPN/backbone
    used, full = _twins("model.roi_sampler.num_samples=64", *GATHER)  # 16 positive slots per image
    x = dict(batch(), sample_seed=np.array([[1, 2], [3, 4]], np.int32))
    out = used(x, training=True)
    positives = out["box_positive"].numpy().sum(axis=1)  # from the sampler, over all 64 slots
    assert out["mask_logits"].shape[1] == positives.max() < 16
    _, terms_u, grads_u = losses_and_grads(used, x)
    _, terms_f, grads_f = losses_and_grads(full, x)
    assert full(x, training=True)["mask_logits"].shape[1] == 16
    for name in terms_f:
        np.testing.assert_allclose(terms_u[name].numpy(), terms_f[name].numpy(), rtol=1e-5, err_msg=name)
    for w, gu, gf in zip(used.trainable_variables, grads_u, grads_f, strict=True):
        scale = float(np.abs(gf.numpy()).max())
        np.testing.assert_allclose(gu.numpy(), gf.numpy(), rtol=1e-3, atol=1e-4 * scale, err_msg=w.path)


def test_mask_head_on_used_slots_gives_the_masks_of_all_slots():
    used, full = _twins()
    images = batch()["images"]
    scores = np.sort(full({"images": images})["scores"].numpy()[0])[::-1]
    for model in (used, full):  # image 0 keeps its top 4 scores; image 1 whatever passes
        model.detection_generator.score_threshold = float(scores[3]) - 1e-6
    a, b = used({"images": images}), full({"images": images})
    counts = b["num_detections"].numpy()
    assert counts[0] < 10 and counts.max() < 10
    np.testing.assert_array_equal(a["num_detections"].numpy(), counts)
    assert a["masks"].shape == b["masks"].shape == (2, 10, 28, 28)
    np.testing.assert_allclose(a["masks"].numpy(), b["masks"].numpy(), atol=1e-6)
    for i, n in enumerate(counts):
        assert np.all(a["masks"].numpy()[i, n:] == 0.0) and np.all(a["masks"].numpy()[i, :n] > 0.0)


def test_image_with_nothing_in_it_gives_zero_detections():
    model = build("mask_rcnn_r18_fpn_synthetic.yaml")
    images = np.zeros((1, 64, 64, 3), np.float32)
    model({"images": images})
    # A model that has learned "background everywhere": the background logit dominates.
    predictor = model.box_head.predictor.cls_score
    bias = np.zeros(predictor.bias.shape, np.float32)
    bias[0] = 20.0
    predictor.bias.assign(bias)
    out = model({"images": images})
    assert out["num_detections"].numpy().tolist() == [0]
    assert out["boxes"].shape == (1, 10, 4) and out["masks"].shape == (1, 10, 28, 28)
    np.testing.assert_array_equal(out["classes"].numpy(), 0)
    np.testing.assert_array_equal(out["scores"].numpy(), 0.0)
    np.testing.assert_array_equal(out["masks"].numpy(), 0.0)


def test_inference_outputs_are_consistent():
    model = build("mask_rcnn_r18_fpn_synthetic.yaml")
    out = model({"images": batch()["images"]})
    n = out["num_detections"].numpy()
    classes, scores, boxes = out["classes"].numpy(), out["scores"].numpy(), out["boxes"].numpy()
    masks = out["masks"].numpy()
    for b in range(2):
        k = n[b]
        assert ((classes[b, :k] >= 1) & (classes[b, :k] <= 3)).all() and (classes[b, k:] == 0).all()
        assert (scores[b, :k] >= 0.05).all() and np.all(np.diff(scores[b, :k]) <= 1e-6)
        assert (boxes[b, :k, 2] >= boxes[b, :k, 0]).all() and boxes[b].min() >= 0 and boxes[b].max() <= 64
        assert ((masks[b] >= 0) & (masks[b] <= 1)).all()


def test_training_without_ground_truth_is_a_clear_error():
    model = build("mask_rcnn_r18_fpn_synthetic.yaml")
    with pytest.raises(ValueError, match="gt_boxes"):
        model({"images": batch()["images"]}, training=True)


def test_image_without_objects_trains_with_finite_losses():
    model = build("mask_rcnn_r18_fpn_synthetic.yaml")
    x = batch()
    x["gt_classes"] = np.zeros_like(x["gt_classes"])
    _, terms, _ = losses_and_grads(model, x)
    assert all(np.isfinite(float(v)) for v in terms.values())
    assert float(terms["rpn_box"]) == 0.0 and float(terms["box_reg"]) == 0.0 and float(terms["mask"]) == 0.0


def zoo_configs():
    from mrcnn_tf.config import list_configs

    # the ablation variants have their own test (below)
    return [p.name for p in list_configs() if p.parent.name != "ablations"]


@pytest.mark.parametrize("config", zoo_configs())
def test_every_zoo_config_builds_trains_one_step_and_detects(config):
    """At 64×64 with small sample counts; the architecture and losses are the config's."""
    backbone = load_config(config)["model"]["backbone"]
    offline = ["model.backbone.weights=null"] if backbone.get("weights") == "imagenet" else []  # no downloads
    model = build(config, *offline)
    x = batch()
    x["gt_classes"] = np.minimum(x["gt_classes"], model.num_classes)
    if model.keypoint_head is not None:  # keypoints inside each box, all visible
        frac = np.random.default_rng(1).uniform(0.1, 0.9, (2, 4, model.num_keypoints, 2))
        y1, x1, y2, x2 = (x["gt_boxes"][..., k, None] for k in range(4))
        xy = np.stack([x1 + frac[..., 0] * (x2 - x1), y1 + frac[..., 1] * (y2 - y1)], -1)
        x["gt_keypoints"] = np.concatenate([xy, np.full((*xy.shape[:-1], 1), 2.0)], -1).astype(np.float32)
    _, terms, grads = losses_and_grads(model, x)
    assert all(np.isfinite(float(v)) for v in terms.values())
    assert all(float(terms[name]) > 0.0 for name in ("mask", "keypoint") if name in terms)
    assert all(g is not None for g in grads)
    heads = [h for h in (model.mask_head, model.keypoint_head) if h is not None]
    before = [h.trainable_variables[-1].numpy().copy() for h in heads]
    keras.optimizers.SGD(0.1).apply_gradients(zip(grads, model.trainable_variables, strict=True))
    assert all(
        not np.array_equal(h.trainable_variables[-1].numpy(), b) for h, b in zip(heads, before, strict=True)
    )
    out = model({"images": x["images"][:1]})
    assert out["boxes"].shape == (1, 10, 4)
    if model.mask_head is not None:
        assert out["masks"].shape[:2] == (1, 10) and np.all(np.isfinite(out["masks"].numpy()))
    if model.keypoint_head is not None:
        assert out["keypoints"].shape == (1, 10, model.num_keypoints, 3)
        assert np.all(np.isfinite(out["keypoints"].numpy()))


@pytest.mark.slow
def test_fresh_model_fits_and_reloads_from_a_keras_file_with_identical_detections(tmp_path):
    model = build("mask_rcnn_r18_fpn_synthetic.yaml")
    x = batch()
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    history = model.fit(tf.data.Dataset.from_tensors(x), epochs=1, verbose=0)  # never called before
    assert np.isfinite(history.history["loss"][0])
    before = model({"images": x["images"]})
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")  # no custom_objects
    after = reloaded({"images": x["images"]})
    for key in before:
        np.testing.assert_array_equal(np.asarray(after[key]), np.asarray(before[key]), err_msg=key)
    assert reloaded.roi_sampler.get_config() == model.roi_sampler.get_config()


def test_inference_compiles_with_xla_with_gather_aligners_and_padded_nms():
    model = build("mask_rcnn_r18_fpn_synthetic.yaml", *XLA_OVERRIDES)
    images = batch()["images"]
    eager = model({"images": images})
    compiled = tf.function(lambda x: model({"images": x}), jit_compile=True)(images)
    np.testing.assert_array_equal(compiled["num_detections"].numpy(), eager["num_detections"].numpy())
    np.testing.assert_allclose(compiled["scores"].numpy(), eager["scores"].numpy(), atol=1e-4)


def test_padding_beyond_image_size_does_not_change_the_detections():
    """What lies outside ``image_size`` is replaced by the mean colour before the backbone."""
    model = build("mask_rcnn_r18_fpn_synthetic.yaml")
    rng = np.random.default_rng(5)
    images = rng.uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    noisy = images.copy()
    noisy[:, 48:] = rng.uniform(0, 255, (1, 16, 64, 3))
    noisy[:, :, 40:] = 255.0
    size = np.array([[48.0, 40.0]], "float32")
    a = model({"images": images, "image_size": size})
    b = model({"images": noisy, "image_size": size})
    np.testing.assert_allclose(np.asarray(a["scores"]), np.asarray(b["scores"]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(a["boxes"]), np.asarray(b["boxes"]), atol=1e-3)


ABLATIONS = {
    "roipool.yaml": ("MultiLevelRoIPool", "FCNMaskHead", 3, 0.5),
    "roialign_max.yaml": ("MultiLevelRoIAlign", "FCNMaskHead", 3, 0.5),
    "mask_softmax.yaml": ("MultiLevelRoIAlign", "FCNMaskHead", 3, 0.5),  # class vs its rival: 0.25 vs 0.25
    "mask_head_mlp.yaml": ("MultiLevelRoIAlign", "MLPMaskHead", 3, 0.5),
    "mask_class_agnostic.yaml": ("MultiLevelRoIAlign", "FCNMaskHead", 1, 0.5),
}


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(ABLATIONS))
def test_ablation_variant_trains_with_gradients_everywhere_and_detects(config):
    """Each Table-2 variant is the demo config with one registry name swapped."""
    aligner, head, channels, untrained_mask = ABLATIONS[config]
    model = build(f"ablations/{config}")
    assert type(model.box_roi_aligner).__name__ == aligner
    assert type(model.mask_head).__name__ == head
    x = batch()
    _, terms, grads = losses_and_grads(model, x)
    missing = [v.path for v, g in zip(model.trainable_variables, grads, strict=True) if g is None]
    assert not missing, f"no gradient for {missing}"
    # untrained mask logits are ~0: sigmoid BCE = log 2, softmax over 3 classes + bg = log 4
    expected_loss = np.log(4.0) if config == "mask_softmax.yaml" else np.log(2.0)
    assert float(terms["mask"]) == pytest.approx(expected_loss, abs=0.15)
    out = model({"images": x["images"]})
    s = model.mask_roi_aligner.output_size
    head_out = model.mask_head(np.zeros((1, 2, s, s, 64), "float32"))
    assert head_out.shape[-1] == channels
    present = np.asarray(out["masks"])[:, : int(out["num_detections"][0])]
    assert present.size and np.allclose(present, untrained_mask, atol=0.05)
    if config in ("roialign_max.yaml", "roipool.yaml"):
        # model.fit runs the gradient in a graph, where TF 2.21's oneDNN MaxPoolGrad aborted
        # the process (tf.nn.max_pool2d in RoIAlign's max pooling; now a reduce_max)
        model.compile(optimizer=keras.optimizers.SGD(0.01))
        history = model.fit(tf.data.Dataset.from_tensors(x), epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])


def test_r50_fpn_has_torchvisions_published_parameter_count():
    """torchvision lists 44,401,393 parameters for maskrcnn_resnet50_fpn (91 classes with
    background). Its frozen-BN values are buffers, not parameters, and its box regressor and
    mask predictor also have a background slot (4 × 1025 + 257 values) that ours does not."""
    model = build("mask_rcnn_r50_fpn_1x_coco.yaml", "data.num_classes=90")
    model.build()
    bn = ("gamma", "beta", "moving_mean", "moving_variance")
    ours = sum(int(np.prod(v.shape)) for v in model.weights if v.path.rsplit("/", 1)[-1] not in bn)
    assert ours + 4 * 1025 + 257 == 44_401_393


def test_winograd_convs_give_the_detections_of_direct_convs():
    parts = ("neck", "rpn_head", "mask_head")
    direct = build("mask_rcnn_r18_fpn_synthetic.yaml", *[f"model.{p}.conv_algorithm=direct" for p in parts])
    winograd = build(
        "mask_rcnn_r18_fpn_synthetic.yaml", *[f"model.{p}.conv_algorithm=winograd" for p in parts]
    )
    direct.build()
    winograd.build()
    winograd.set_weights(direct.get_weights())
    images = batch(size=128)["images"]
    a, b = direct({"images": images}), winograd({"images": images})
    np.testing.assert_array_equal(a["classes"].numpy(), b["classes"].numpy())
    np.testing.assert_allclose(a["scores"].numpy(), b["scores"].numpy(), atol=1e-4)
    np.testing.assert_allclose(a["boxes"].numpy(), b["boxes"].numpy(), atol=1e-2)  # pixels of 128
    np.testing.assert_allclose(a["masks"].numpy(), b["masks"].numpy(), atol=1e-4)
    assert not np.array_equal(a["masks"].numpy(), b["masks"].numpy())  # other arithmetic ran
    with pytest.raises(ValueError, match="unknown conv_algorithm 'fast'"):
        build("mask_rcnn_r18_fpn_synthetic.yaml", "model.neck.conv_algorithm=fast")
