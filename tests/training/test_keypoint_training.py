"""A Keypoint R-CNN trained end to end: it learns (loss and keypoint AP), and a flipped image's
keypoints are the original's mirrored with left and right swapped (the flip map end to end)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from training_fixtures import evaluation_pass

from mrcnn_tf import build_model
from mrcnn_tf.config import load_config
from mrcnn_tf.data.builder import build_dataset, build_input_pipeline
from mrcnn_tf.training.trainer import train

SETUP = [
    "model.mask_head=null",
    "model.loss_weights={keypoint: 1.0}",  # the loss history is then the unweighted loss
    "model.mask_roi_aligner=null",
    "model.backbone.width=16",
    "model.neck.num_channels=32",
    "model.box_head.fc_dim=64",
    "model.keypoint_head.conv_dim=32",
    "model.keypoint_head.num_convs=2",
    "model.roi_sampler.num_samples=64",
    "data.train.num_images=2",
    "data.train.max_instances=2",
    "data.val={type: SyntheticKeypointDataset, split: train, num_images: 2, max_instances: 2}",
    "data.pipeline.batch_size=2",
    "optimizer={type: AdamW, weight_decay: 0.0}",
    "schedule={type: WarmupCosineDecay, base_learning_rate: 0.003, warmup_steps: 20}",
    "train.max_steps=300",
    "train.steps_per_loop=100",
    "runtime.deterministic=true",
]


def keypoints_of(model, pipeline, image):
    """Detections (boxes, scores, keypoints) of the model on the evaluation resize of ``image``."""
    out, _ = evaluation_pass(model, pipeline, image)
    n = int(out["num_detections"][0])
    return out["boxes"][0, :n].numpy(), out["scores"][0, :n].numpy(), out["keypoints"][0, :n].numpy()


@pytest.mark.slow
def test_keypoint_rcnn_learns_and_is_flip_equivariant_with_left_and_right_swapped(tmp_path):
    cfg = load_config("keypoint_rcnn_r18_fpn_synthetic", SETUP)
    result = train(cfg, tmp_path / "run", verbose=0)
    losses = result["loss_history"]["keypoint_loss"]
    # per-loop means; an untrained head's loss is ln(56^2) = 8.05 (no cell preferred)
    assert losses[-1] < 0.25 * np.log(56 * 56) and losses[-1] < losses[0], losses
    metrics = json.loads((tmp_path / "run" / "eval" / "step_300" / "metrics.json").read_text())
    assert metrics["keypoints"]["AP"] > 0.5, metrics["keypoints"]  # an untrained head scores ~0

    from mrcnn_tf.cli import main  # mrcnn-tf evaluate scores keypoints too, with the run's own files

    assert main(["evaluate", "--weights", str(tmp_path / "run"), "--out", str(tmp_path / "eval")]) == 0
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["keypoints"]["AP"] == pytest.approx(metrics["keypoints"]["AP"], abs=0.02)

    model = build_model(cfg)
    model.build()
    model.load_weights(tmp_path / "run" / "model.weights.h5")
    pipeline = build_input_pipeline(cfg)
    dataset = build_dataset(cfg, "train")
    perm = list(dataset.keypoints.flip_map)
    assert perm != list(range(len(perm)))
    errors, unswapped = [], []
    for index in range(len(dataset)):
        image = dataset.load_example(index, 8)["image"]
        width = image.shape[1]
        boxes, scores, kps = keypoints_of(model, pipeline, image)
        fboxes, fscores, fkps = keypoints_of(model, pipeline, np.ascontiguousarray(image[:, ::-1]))
        scale = pipeline.min_size / min(image.shape[:2])
        for i in np.nonzero(scores > 0.5)[0]:
            mirrored = boxes[i].copy()
            mirrored[[1, 3]] = width * scale - boxes[i, [3, 1]]
            j = int(np.argmin(np.abs(fboxes - mirrored).sum(1)))
            if np.abs(fboxes[j] - mirrored).max() > 3 or fscores[j] < 0.5:
                continue
            expected = kps[i].copy()
            expected[:, 0] = width * scale - expected[:, 0]
            errors.append(np.linalg.norm(fkps[j][:, :2] - expected[perm, :2], axis=1).mean())
            unswapped.append(np.linalg.norm(fkps[j][:, :2] - expected[:, :2], axis=1).mean())
    assert len(errors) >= 2, "the trained model found too few figures in both orientations"
    # with the swap the flipped prediction is the mirrored one; without it, hands and feet trade places
    assert np.mean(errors) < 2.5 and np.mean(unswapped) > 3 * np.mean(errors), (errors, unswapped)
