"""The built-in synthetic keypoint dataset: stick figures with nine named keypoints.

Each figure is a person-like stick figure seen from the front (head, neck, hands, pelvis,
knees, feet) in a random pose, drawn with thick limbs on the textured ground of the shapes
dataset. Its *left* keypoints are on the image's right (the figure faces the viewer), so left
and right are told apart by geometry, not colour, and a mirrored image is a mirrored figure
with left and right swapped, as for people. Figures overlap and grey occluders cover parts of
them: a keypoint under another figure or an occluder is labelled hidden (``v = 1``); one
outside the image, or outside the box of the figure's visible pixels, is unlabelled
(``v = 0``). The mask is the visible pixels (compressed RLE). Written as a COCO
``person_keypoints``-style file (the category has ``keypoints``, ``skeleton`` and the
mrcnn_tf extension ``keypoint_sigmas``), so it goes through :class:`CocoDataset` like users'
data. Deterministic in ``seed`` and ``split``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image, ImageDraw

from mrcnn_tf.data.coco import CocoDataset
from mrcnn_tf.data.synthetic import default_cache_dir, drop_hidden, paint, write_coco_split
from mrcnn_tf.registries import DATASETS

__all__ = ["KEYPOINT_NAMES", "SKELETON", "SyntheticKeypointDataset", "generate_keypoint_coco"]

KEYPOINT_NAMES = (
    "head",
    "neck",
    "left_hand",
    "right_hand",
    "pelvis",
    "left_knee",
    "right_knee",
    "left_foot",
    "right_foot",
)
#: Limbs, as 1-based keypoint pairs (COCO's convention).
SKELETON = ((1, 2), (2, 3), (2, 4), (2, 5), (5, 6), (5, 7), (6, 8), (7, 9))
#: OKS sigmas: COCO's mean person sigma (0.089) for the joints, its wrist/ankle ones for the ends.
SIGMAS = (0.079, 0.079, 0.072, 0.072, 0.107, 0.087, 0.087, 0.089, 0.089)


def _figure(rng: np.random.Generator, size: int, crowding: float) -> tuple[np.ndarray, float]:
    """Nine keypoints ``[9, 2]`` (x, y, continuous pixels) of a random pose, and the limb width."""
    height = rng.uniform(size * 0.35, size * 0.75) / np.sqrt(max(crowding, 1.0))
    deg = np.deg2rad
    a, b = rng.uniform(deg(-70), deg(80), 2)  # arm angles from the horizontal (y down)
    c, d = rng.uniform(deg(5), deg(35), 2)  # thigh angles from the vertical
    e, f = rng.uniform(deg(-10), deg(30), 2)  # shin angles
    neck, pelvis = np.array([0.0, -0.27]), np.array([0.0, 0.08])
    left_hand = neck + 0.32 * np.array([np.cos(a), np.sin(a)])
    right_hand = neck + 0.32 * np.array([-np.cos(b), np.sin(b)])
    left_knee = pelvis + 0.22 * np.array([np.sin(c), np.cos(c)])
    right_knee = pelvis + 0.22 * np.array([-np.sin(d), np.cos(d)])
    left_foot = left_knee + 0.22 * np.array([np.sin(e), np.cos(e)])
    right_foot = right_knee + 0.22 * np.array([-np.sin(f), np.cos(f)])
    head = np.array([0.0, -0.4])
    points = np.stack(
        [head, neck, left_hand, right_hand, pelvis, left_knee, right_knee, left_foot, right_foot]
    )
    # "left" is the figure's left: on the viewer's right (x grows to the right)
    tilt = rng.uniform(deg(-20), deg(20))
    rot = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
    points = points @ rot.T * height
    centre = rng.uniform(size * 0.15, size * 0.85, 2)
    return points + centre, max(2.0, 0.09 * height)


def _draw(points: np.ndarray, width: float, size: int) -> np.ndarray:
    """The figure's pixels (bool ``[size, size]``): thick limbs and a round head."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for i, j in SKELETON:
        p, q = points[i - 1], points[j - 1]
        draw.line([tuple(p), tuple(q)], fill=255, width=round(float(width)))
    for p in points[[2, 3, 7, 8]]:  # round ends at hands and feet
        r = width / 2
        draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=255)
    r = 1.3 * width
    draw.ellipse([points[0, 0] - r, points[0, 1] - r, points[0, 0] + r, points[0, 1] + r], fill=255)
    return np.asarray(canvas) > 127


def _image_and_annotations(rng, image_id, size, min_instances, max_instances, next_ann_id):
    figures = []
    for _ in range(int(rng.integers(min_instances, max_instances + 1))):
        points, width = _figure(rng, size, max_instances / 3)
        figures.append((points, _draw(points, width, size), rng.uniform(0, 255, 3)))
    occluders = np.zeros((size, size), bool)
    for _ in range(int(rng.integers(0, 3))):
        h, w = rng.uniform(size * 0.08, size * 0.25, 2)
        y, x = rng.uniform(0, size - h), rng.uniform(0, size - w)
        occluders[int(y) : int(y + h), int(x) : int(x + w)] = True
    kept, visible = drop_hidden([f[1] for f in figures], occluders)
    figures = [figures[i] for i in kept]
    image, shade = paint(rng, size, [(f[1], f[2]) for f in figures])
    grey = rng.uniform(60, 200)
    image[occluders] = grey + shade[occluders]
    annotations = []
    for (points, mask, _), vis in zip(figures, visible, strict=True):
        rle = mask_utils.encode(np.asfortranarray(vis.astype(np.uint8)))
        x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
        flat, labelled = [], 0
        for px, py in points:
            inside_box = x + 0.01 <= px <= x + w - 0.01 and y + 0.01 <= py <= y + h - 0.01
            if not (0 <= px < size and 0 <= py < size and inside_box):
                flat += [0, 0, 0]
                continue
            seen = vis[int(py), int(px)] or not mask[int(py), int(px)]  # on its own visible pixels
            # COCO stores integer pixel indices; continuous x is index + 0.5 (kept to 0.01 px)
            flat += [round(float(px) - 0.5, 2), round(float(py) - 0.5, 2), 2 if seen else 1]
            labelled += 1
        annotations.append(
            {
                "id": next_ann_id + len(annotations),
                "image_id": image_id,
                "category_id": 1,
                "segmentation": {"size": [size, size], "counts": rle["counts"].decode("ascii")},
                "bbox": [x, y, w, h],
                "area": float(mask_utils.area(rle)),
                "iscrowd": 0,
                "keypoints": flat,
                "num_keypoints": labelled,
            }
        )
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), annotations


def generate_keypoint_coco(
    root: str | os.PathLike,
    split: str = "train",
    num_images: int = 64,
    image_size: int = 128,
    min_instances: int = 1,
    max_instances: int = 3,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write (or reuse) one split of the stick-figure dataset under ``root`` (see
    :func:`mrcnn_tf.data.synthetic.write_coco_split`); returns ``(annotations_file, images_dir)``."""
    params = {
        "kind": "keypoints",
        "num_images": num_images,
        "image_size": image_size,
        "min_instances": min_instances,
        "max_instances": max_instances,
        "seed": seed,
        "split": split,
    }
    category = {
        "id": 1,
        "name": "figure",
        "supercategory": "figure",
        "keypoints": list(KEYPOINT_NAMES),
        "skeleton": [list(p) for p in SKELETON],
        "keypoint_sigmas": list(SIGMAS),
    }

    def make(rng, image_id, next_ann_id):
        return _image_and_annotations(rng, image_id, image_size, min_instances, max_instances, next_ann_id)

    return write_coco_split(Path(root), split, params, make, [category], "mrcnn_tf synthetic stick figures")


@DATASETS.register()
class SyntheticKeypointDataset(CocoDataset):
    """The built-in stick-figure keypoint dataset (1 class, 9 keypoints), generated on first use.

    Args:
        split: ``train``, ``val`` or ``test``.
        num_images, image_size, min_instances, max_instances, seed: what to generate.
        root: where to write it; by default a folder under
            :func:`~mrcnn_tf.data.synthetic.default_cache_dir` named after the arguments.
    """

    def __init__(
        self,
        split: str = "train",
        num_images: int = 64,
        image_size: int = 128,
        min_instances: int = 1,
        max_instances: int = 3,
        seed: int = 0,
        root: str | os.PathLike | None = None,
    ):
        params = (num_images, image_size, min_instances, max_instances, seed)
        if root is None:
            digest = hashlib.sha256(repr(("keypoints", *params)).encode()).hexdigest()[:10]
            root = default_cache_dir() / f"synthetic-keypoints-{digest}"
        self.split = split
        self.root = Path(root)
        ann, images = generate_keypoint_coco(self.root, split, *params)
        super().__init__(ann, images, strict=True)
