"""Contract of every registered dataset: raw examples of the documented dtypes and shapes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from coco_fixtures import write_solid_shapes

from mrcnn_tf.data.base import raw_example_spec
from mrcnn_tf.data.coco import CocoDataset
from mrcnn_tf.data.tfrecord import TFRecordDataset, write_tfrecords
from mrcnn_tf.registries import DATASETS, load_builtins

load_builtins()


def _coco(tmp_path):
    return CocoDataset(*write_solid_shapes(tmp_path), strict=True)


def _synthetic(tmp_path):
    return DATASETS.build(
        {"type": "SyntheticDataset", "num_images": 3, "image_size": 48, "root": str(tmp_path)}
    )


def _tfrecord(tmp_path):
    (tmp_path / "coco").mkdir()
    write_tfrecords(_coco(tmp_path / "coco"), tmp_path / "r", num_shards=2)
    return TFRecordDataset(str(tmp_path / "r-*.tfrecord"))


def _synthetic_keypoints(tmp_path):
    return DATASETS.build(
        {"type": "SyntheticKeypointDataset", "num_images": 3, "image_size": 64, "root": str(tmp_path)}
    )


BUILDERS = {
    "CocoDataset": _coco,
    "SyntheticDataset": _synthetic,
    "SyntheticKeypointDataset": _synthetic_keypoints,
    "TFRecordDataset": _tfrecord,
}


def test_every_builtin_dataset_has_a_contract_case():
    assert set(DATASETS.names()) == set(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_raw_examples_follow_the_contract(name, tmp_path):
    dataset = BUILDERS[name](tmp_path)
    spec = raw_example_spec(8, dataset.num_keypoints)
    examples = list(dataset.tf_dataset(mask_size=8).as_numpy_iterator())
    assert len(examples) == len(dataset) == 3
    for ex in examples:
        assert set(ex) == set(spec)
        for key, value in ex.items():
            assert value.dtype == spec[key].dtype.as_numpy_dtype, key
            assert tf.TensorShape(value.shape).is_compatible_with(spec[key].shape), key
        g = len(ex["classes"])
        assert ex["boxes"].shape == (g, 4) and ex["masks"].shape == (g, 8, 8)
        assert (ex["classes"] >= 1).all() and (ex["classes"] <= dataset.num_classes).all()
        h, w = ex["image"].shape[:2]
        assert (ex["boxes"] >= 0).all() and (ex["boxes"][:, 2] <= h).all() and (ex["boxes"][:, 3] <= w).all()
        assert set(np.unique(ex["masks"])) <= {0, 1} and ex["masks"].any(axis=(1, 2)).all()
        if dataset.num_keypoints:  # labelled keypoints lie in the image
            kp = ex["keypoints"][ex["keypoints"][..., 2] > 0]
            assert ((kp[:, 0] >= 0) & (kp[:, 0] <= w) & (kp[:, 1] >= 0) & (kp[:, 1] <= h)).all()
    assert sorted(int(e["image_id"]) for e in examples) == [0, 1, 2]


def test_mirrored_strategy_gives_each_replica_its_own_images(tmp_path):
    """Two logical CPU replicas under MirroredStrategy (needs a fresh process to split the CPU)."""
    ann, images = write_solid_shapes(tmp_path)
    script = textwrap.dedent(
        f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from mrcnn_tf.data.coco import CocoDataset
        from mrcnn_tf.data.pipeline import InputPipeline
        dataset = CocoDataset({str(ann)!r}, {str(images)!r})
        pipe = InputPipeline(batch_size=2, min_size=32, max_size=64, mask_size=4, max_instances=4)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        def make(ctx):
            return pipe(dataset, training=True, input_context=ctx)
        dist = strategy.distribute_datasets_from_function(make)
        batch = next(iter(dist))
        shapes = [v.shape[0] for v in strategy.experimental_local_results(batch["images"])]
        print("replica batch sizes", shapes)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "replica batch sizes [1, 1]" in out.stdout
