"""Exactness against torchvision itself: its Mask R-CNN with seeded random weights, saved by
``torch.save``, converted by ``mrcnn-tf convert torchvision``, run on the same image; every stage
and the final detections agree.

torch and torchvision live in a separate environment (``python3 dev.py test-torch`` creates
``.venv-torch`` and runs these tests; ``MRCNN_TF_TORCH_PYTHON`` names another interpreter): the
reference script runs there in a subprocess and writes the checkpoint and its stage outputs;
everything here runs without torch. Marked ``torch``: not skipped, deselected from the default
suite and run by that target (in CI too).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from parity_helpers import ROOT, close, match_detections, torch_python, write_photo, yxyx
from PIL import Image

pytestmark = pytest.mark.torch

REFERENCE = ROOT / "tests" / "torch_reference" / "maskrcnn_reference.py"


def run_reference(out: Path, image: Path, *args: str) -> dict[str, np.ndarray]:
    cmd = [torch_python(), str(REFERENCE), "--image", str(image), "--out", str(out), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out / "stages.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module", params=["v1", "v2"])
def converted(request, tmp_path_factory):
    """The reference run and our converted run directory (v1 with the old key names, as
    torchvision's COCO file has them; v2 with today's)."""
    from mrcnn_tf.cli import main

    arch = request.param
    root = tmp_path_factory.mktemp(f"tv_{arch}")
    write_photo(root / "photo.png", 480, 608)
    old = ["--old-keys", "--legacy-format"] if arch == "v1" else []  # as torchvision's 2019 v1 file
    ref = run_reference(
        root / "ref", root / "photo.png", "--arch", arch, "--min-size", "480", "--max-size", "800", *old
    )
    run = root / "converted"
    overrides = ["--set", "data.pipeline.min_size=480", "data.pipeline.max_size=800"]
    assert (
        main(["convert", "torchvision", str(root / "ref" / "model.pth"), "--out", str(run), *overrides]) == 0
    )
    return root, ref, run, _model(run)  # built once for the tests of this architecture


def _model(run: Path):
    from mrcnn_tf.cli_common import config_for, model_with_weights

    cfg = config_for(None, str(run), [])
    model, _ = model_with_weights(cfg, str(run))
    return model


def test_every_stage_agrees_with_torchvision(converted):
    import tensorflow as tf

    root, ref, _, model = converted
    photo = np.asarray(Image.open(root / "photo.png"), np.float32)[None]
    assert ref["image"].shape[2:] == (480, 608)  # no resize, no padding: the same input
    _, _, pyramid, _, objectness, deltas, proposals = model._features({"images": tf.constant(photo)}, False)
    for level, name in enumerate(["0", "1", "2", "3", "pool"]):
        close(pyramid[f"P{level + 2}"][0], ref[f"fpn_{name}"][0].transpose(1, 2, 0), what=f"P{level + 2}")
    for level in range(5):
        logits = ref[f"rpn_logits_{level}"][0]  # [A, H, W]
        a, h, w = logits.shape
        close(
            objectness[f"P{level + 2}"][0],
            logits.transpose(1, 2, 0).reshape(-1),
            what=f"RPN logits P{level + 2}",
        )
        d = ref[f"rpn_deltas_{level}"][0].reshape(a, 4, h, w).transpose(2, 3, 0, 1).reshape(-1, 4)
        close(deltas[f"P{level + 2}"][0], d[:, [1, 0, 3, 2]], what=f"RPN deltas P{level + 2}")
    boxes, _, valid = proposals
    n = int(np.sum(valid[0]))
    assert n == len(ref["proposals"])
    # Proposals whose scores differ by ~1e-7 may come in either order: pair them by position.
    ours, theirs = boxes[0, :n].numpy(), yxyx(ref["proposals"])
    distance = np.abs(ours[:, None, :] - theirs[None, :, :]).max(-1)
    nearest = np.empty(n, int)
    for i in range(n):  # one to one, greedily (a box can be proposed from several levels)
        nearest[i] = int(np.argmin(distance[i]))
        distance[:, nearest[i]] = np.inf
    assert np.mean(nearest == np.arange(n)) > 0.95  # almost all in the same place
    close(ours, theirs[nearest], rtol=1e-4, what="proposals")
    # The box head on torchvision's proposals: RoI features, class logits, deltas.
    rois = tf.constant(yxyx(ref["proposals"])[None], tf.float32)
    roi_features = model.box_roi_aligner(pyramid, rois)
    close(roi_features[0], ref["box_roi_features"].transpose(0, 2, 3, 1), what="box RoI features")
    head = model.box_head(roi_features, training=False)
    close(head["logits"][0], ref["class_logits"], what="class logits")
    theirs = ref["box_deltas"].reshape(-1, 91, 4)[:, 1:, [1, 0, 3, 2]]
    close(head["deltas"][0], theirs, what="box deltas")
    # The mask head on torchvision's detections, for its labels.
    det = tf.constant(yxyx(ref["det_boxes"])[None], tf.float32)
    mask_features = model.mask_roi_aligner(pyramid, det)
    close(mask_features[0], ref["mask_roi_features"].transpose(0, 2, 3, 1), what="mask RoI features")
    labels = tf.constant(ref["det_labels"][None], tf.int32)
    logits = model.mask_head(mask_features, training=False, classes=labels)
    probs = model._mask_probabilities(logits, labels)
    close(probs[0], ref["mask_probs"], rtol=1e-4, what="28x28 mask probabilities")


def test_final_detections_agree_with_torchvision(converted):
    import tensorflow as tf

    root, ref, _, model = converted
    photo = np.asarray(Image.open(root / "photo.png"), np.float32)[None]
    out = model({"images": tf.constant(photo)}, training=False)
    n = int(out["num_detections"][0])
    assert n == len(ref["final_scores"]) > 10
    boxes, scores = out["boxes"][0, :n].numpy(), out["scores"][0, :n].numpy()
    classes = out["classes"][0, :n].numpy()
    ref_boxes = yxyx(ref["final_boxes"])
    pairs = match_detections(boxes, scores, classes, ref_boxes, ref["final_scores"], ref["final_labels"])
    ours, theirs = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    assert len(set(theirs)) == n  # the same detections, one to one
    np.testing.assert_array_equal(classes[ours], ref["final_labels"][theirs])
    np.testing.assert_allclose(scores[ours], ref["final_scores"][theirs], atol=1e-3)
    np.testing.assert_allclose(boxes[ours], ref_boxes[theirs], atol=0.5)


def test_convert_and_predict_on_a_photo_that_needs_resizing_match_torchvision(tmp_path):
    """End to end from the user's side: ``mrcnn-tf convert`` then ``mrcnn-tf predict`` on a
    700×500 photo (resized to 480 rows, torchvision's floor rounding, no antialiasing), against
    torchvision's own outputs in the photo's pixels."""
    import json

    import pycocotools.mask as mask_utils

    from mrcnn_tf.cli import main

    write_photo(tmp_path / "photo.png", 500, 700, seed=3)
    ref = run_reference(
        tmp_path / "ref", tmp_path / "photo.png", "--arch", "v1", "--min-size", "480", "--max-size", "800"
    )
    assert tuple(ref["image_size"]) == (480, 672)
    sizes = ["--set", "data.pipeline.min_size=480", "data.pipeline.max_size=800"]
    assert (
        main(
            [
                "convert",
                "torchvision",
                str(tmp_path / "ref" / "model.pth"),
                "--out",
                str(tmp_path / "run"),
                *sizes,
            ]
        )
        == 0
    )
    argv = [
        "predict",
        str(tmp_path / "photo.png"),
        "--weights",
        str(tmp_path / "run"),
        "--out",
        str(tmp_path / "pred"),
    ]
    assert main([*argv, "--score-threshold", "0.05"]) == 0
    results = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert len(results) == len(ref["final_scores"]) > 10
    boxes = np.array(
        [
            [r["bbox"][1], r["bbox"][0], r["bbox"][1] + r["bbox"][3], r["bbox"][0] + r["bbox"][2]]
            for r in results
        ]
    )
    scores = np.array([r["score"] for r in results])
    classes = np.array([r["category_id"] for r in results])  # class k = COCO id k = torchvision's label
    ref_boxes = yxyx(ref["final_boxes"])
    pairs = match_detections(boxes, scores, classes, ref_boxes, ref["final_scores"], ref["final_labels"])
    ours, theirs = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    assert len(set(theirs)) == len(results)
    np.testing.assert_allclose(scores[ours], ref["final_scores"][theirs], atol=1e-3)
    np.testing.assert_allclose(boxes[ours], ref_boxes[theirs], atol=0.5)
    ious = []
    for i, j in pairs:
        mask = mask_utils.decode(results[i]["segmentation"]).astype(bool)
        theirs_mask = ref["final_masks"][j] >= 0.5
        union = np.logical_or(mask, theirs_mask).sum()
        ious.append(np.logical_and(mask, theirs_mask).sum() / union if union else 1.0)
    assert np.min(ious) >= 0.95, sorted(ious)[:5]


def test_the_torchvision_paste_rule_is_torchvisions_pixel_for_pixel(tmp_path):
    """``paste_mask_crop(rule="torchvision")`` against ``paste_masks_in_image`` itself: random
    28×28 masks in boxes of every size (sub-pixel to the whole image), clipped to the image."""
    from mrcnn_tf.ops.masks import paste_mask_crop

    rng = np.random.default_rng(0)
    n, height, width = 60, 70, 90
    masks = rng.uniform(0, 1, (n, 28, 28)).astype(np.float32)
    x1, y1 = rng.uniform(0, width - 1, n), rng.uniform(0, height - 1, n)
    sizes = np.exp(rng.uniform(np.log(0.3), np.log(120), (n, 2)))
    # clipped to the image, as detections are (torchvision's paste fails on boxes outside it)
    x2, y2 = np.minimum(x1 + sizes[:, 0], width), np.minimum(y1 + sizes[:, 1], height)
    boxes = np.stack([x1, y1, x2, y2], 1).astype(np.float32)
    np.savez(tmp_path / "in.npz", masks=masks, boxes=boxes, image_size=np.array([height, width]))
    script = ROOT / "tests" / "torch_reference" / "paste_reference.py"
    cmd = [torch_python(), str(script), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = np.load(tmp_path / "out.npz")["pasted"]
    for i in range(n):
        ours = np.zeros((height, width), bool)
        crop, y0, x0 = paste_mask_crop(masks[i], yxyx(boxes[i]), (height, width), 0.5, rule="torchvision")
        ours[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
        np.testing.assert_array_equal(ours, theirs[i] >= 0.5, err_msg=f"mask {i}, box {boxes[i]}")


@pytest.mark.parametrize("aligned", [True, False])
def test_adaptive_roi_align_is_torchvisions_roi_align_with_sampling_ratio_0(tmp_path, aligned):
    """Detectron2's ``ROIAlignV2`` is ``torchvision.ops.roi_align(aligned=True, sampling_ratio=0)``:
    our masked-grid version against that op itself, on RoIs of 0 to 30 feature pixels."""
    import tensorflow as tf

    from mrcnn_tf.ops.roi_align import roi_align

    rng = np.random.default_rng(4)
    features = rng.normal(size=(2, 20, 26, 5)).astype(np.float32)  # NHWC
    n = 40
    y1, x1 = rng.uniform(-16, 150, n), rng.uniform(-16, 200, n)
    h, w = rng.uniform(0, 240, n), rng.uniform(0, 240, n)
    boxes = np.stack([y1, x1, y1 + h, x1 + w], 1).astype(np.float32).reshape(2, n // 2, 4)
    rois = np.concatenate([np.repeat([[0.0], [1.0]], n // 2, 0), yxyx(boxes.reshape(n, 4))], 1).astype(
        np.float32
    )
    np.savez(
        tmp_path / "in.npz", features=features.transpose(0, 3, 1, 2).copy(), rois=rois, output_size=7,
        spatial_scale=0.125, sampling_ratio=0, aligned=aligned,
    )  # fmt: skip
    script = ROOT / "tests" / "torch_reference" / "roi_align_reference.py"
    cmd = [torch_python(), str(script), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = np.load(tmp_path / "out.npz")["pooled"].transpose(0, 2, 3, 1).reshape(2, n // 2, 7, 7, 5)
    for backend in ("crop_and_resize", "gather"):
        ours = roi_align(
            tf.constant(features), tf.constant(boxes), 7, 0.125, sampling_ratio=0, aligned=aligned,
            backend=backend, max_sampling_ratio=5,
        )  # fmt: skip
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5, err_msg=backend)
