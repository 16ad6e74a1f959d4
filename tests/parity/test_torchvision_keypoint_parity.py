"""Exactness against torchvision's Keypoint R-CNN: seeded random weights saved by ``torch.save``,
converted by ``mrcnn-tf convert torchvision``, run on the same photo: the keypoint head's
heatmaps, and the final boxes, scores, keypoints (within 0.5 px) and keypoint scores (within
1e-3) agree. Runs in the torch tier (``python3 dev.py test-torch``), like the Mask R-CNN parity."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from parity_helpers import ROOT, close, match_detections, torch_python, write_photo, yxyx
from PIL import Image

pytestmark = pytest.mark.torch

REFERENCE = ROOT / "tests" / "torch_reference" / "keypointrcnn_reference.py"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from mrcnn_tf.cli import main
    from mrcnn_tf.cli_common import config_for, model_with_weights

    root = tmp_path_factory.mktemp("tv_kp")
    write_photo(root / "photo.png", 480, 608, seed=5)
    cmd = [torch_python(), str(REFERENCE), "--image", str(root / "photo.png"), "--out", str(root / "ref")]
    done = subprocess.run(
        [*cmd, "--min-size", "480", "--max-size", "800"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(root / "ref" / "stages.npz") as data:
        ref = {k: data[k] for k in data.files}
    run = root / "converted"
    sizes = ["--set", "data.pipeline.min_size=480", "data.pipeline.max_size=800"]
    assert main(["convert", "torchvision", str(root / "ref" / "model.pth"), "--out", str(run), *sizes]) == 0
    model, _ = model_with_weights(config_for(None, str(run), []), str(run))
    return root, ref, model


def test_keypoint_head_gives_torchvisions_heatmaps(converted):
    import tensorflow as tf

    _, ref, model = converted
    features = tf.constant(ref["keypoint_roi_features"].transpose(0, 2, 3, 1)[None])
    heatmaps = model.keypoint_head(features, training=False)  # [1, N, 56, 56, 17]
    close(heatmaps[0], ref["keypoint_logits"].transpose(0, 2, 3, 1), rtol=1e-4, what="56x56 heatmap logits")


def test_final_keypoints_agree_with_torchvision(converted):
    import tensorflow as tf

    root, ref, model = converted
    photo = np.asarray(Image.open(root / "photo.png"), np.float32)[None]
    out = model({"images": tf.constant(photo)}, training=False)
    n = int(out["num_detections"][0])
    assert n == len(ref["final_scores"]) > 5
    boxes, scores = out["boxes"][0, :n].numpy(), out["scores"][0, :n].numpy()
    classes = out["classes"][0, :n].numpy()
    pairs = match_detections(
        boxes, scores, classes, yxyx(ref["final_boxes"]), ref["final_scores"], ref["final_labels"]
    )
    ours, theirs = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    np.testing.assert_allclose(scores[ours], ref["final_scores"][theirs], atol=1e-3)
    np.testing.assert_allclose(boxes[ours], yxyx(ref["final_boxes"])[theirs], atol=0.5)
    keypoints = out["keypoints"][0, :n].numpy()
    np.testing.assert_allclose(keypoints[ours, :, :2], ref["final_keypoints"][theirs, :, :2], atol=0.5)
    np.testing.assert_allclose(keypoints[ours, :, 2], ref["final_keypoint_scores"][theirs], atol=1e-3)
