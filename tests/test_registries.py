"""Contract tests over every registered component: build, call, serialize, reload.

A new component is tested the moment it registers: it must build from its defaults (plus
the arguments its parent injects), return finite values on a sample input for its role, and
round-trip through Keras serialization without ``custom_objects``.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mrcnn_tf.registries import ALL, BACKBONES, load_builtins, registry_for_role

load_builtins()

INJECTED = {"num_classes": 3, "num_keypoints": 5}


def _image():
    return np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")


def _pyramid(prefix: str, channels: dict[int, int]):
    rng = np.random.default_rng(1)
    return {
        f"{prefix}{k}": rng.normal(size=(1, 64 // 2**k, 64 // 2**k, c)).astype("float32")
        for k, c in channels.items()
    }


def _boxes():
    return np.array([[[0, 0, 16, 16], [8, 4, 60, 50], [0, 0, 0, 0]]], "float32")


def _gt():
    """Padded ground truth for one image: two objects and a padding slot."""
    boxes = np.array([[[4, 4, 30, 40], [20, 16, 60, 60], [0, 0, 0, 0]]], "float32")
    classes = np.array([[1, 3, 0]], "int32")
    return boxes, classes


def _rpn_outputs():
    p = _pyramid("P", {2: 4, 3: 4})
    return (
        {k: np.zeros((1, v.shape[1] * v.shape[2] * 3), "float32") for k, v in p.items()},
        {k: np.zeros((1, v.shape[1] * v.shape[2] * 3, 4), "float32") for k, v in p.items()},
    )


def _anchors():
    from mrcnn_tf.modeling.anchors.anchor_generator import AnchorGenerator

    gen = AnchorGenerator(min_level=2, max_level=3, sizes=[32, 64])
    return {k: np.asarray(v) for k, v in gen(_pyramid("P", {2: 4, 3: 4})).items()}


def _detector_inputs():
    return ({"images": np.random.default_rng(2).uniform(0, 255, (1, 64, 64, 3)).astype("float32")},)


def _detection_generator_inputs():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(1, 3, 4)).astype("float32")  # K = 3 classes + background
    deltas = rng.normal(scale=0.1, size=(1, 3, 3, 4)).astype("float32")
    return logits, deltas, _boxes(), np.array([[True, True, False]]), np.array([[64.0, 64.0]], "float32")


def _optimizer_step(optimizer):
    """One update of a weight and a bias: finite, and the weight moved against its gradient."""
    weight = keras.Variable(np.ones((2, 2), "float32"), name="kernel")
    bias = keras.Variable(np.ones((2,), "float32"), name="bias")
    optimizer.apply_gradients([(np.ones((2, 2), "float32"), weight), (np.ones((2,), "float32"), bias)])
    assert np.all(np.asarray(weight) < 1.0), type(optimizer).__name__
    return [weight, bias]


def _schedule_values(schedule):
    """The rate at a few steps: positive (a schedule that gives 0 or NaN would stop training)."""
    values = [float(schedule(step)) for step in (0, 1, 100, 10_000)]
    assert all(v >= 0 for v in values) and any(v > 0 for v in values), values
    return values


SAMPLE_INPUTS = {
    "backbone": lambda: (_image(),),
    "neck": lambda: (_pyramid("C", {2: 8, 3: 16, 4: 32, 5: 64}),),
    "anchor_generator": lambda: (_pyramid("P", {2: 4, 3: 4, 4: 4, 5: 4, 6: 4}),),
    "rpn_head": lambda: (_pyramid("P", {2: 4, 3: 4}),),
    "proposal_generator": lambda: (*_rpn_outputs(), _anchors(), np.array([[64.0, 64.0]], "float32")),
    "anchor_labeler": lambda: (np.concatenate(list(_anchors().values())), _gt()[0], _gt()[1] > 0),
    "roi_sampler": lambda: (_boxes(), np.array([[True, True, False]]), *_gt()),
    "roi_aligner": lambda: (
        {**_pyramid("P", {k: 4 for k in range(2, 7)}), **_pyramid("C", {4: 4})},
        _boxes(),
    ),
    "box_head": lambda: (np.random.default_rng(3).normal(size=(1, 3, 14, 14, 8)).astype("float32"),),
    "mask_head": lambda: (np.random.default_rng(4).normal(size=(1, 3, 7, 7, 8)).astype("float32"),),
    "keypoint_head": lambda: (np.random.default_rng(5).normal(size=(1, 3, 7, 7, 8)).astype("float32"),),
    "loss": lambda: (np.zeros((2, 4), "float32"), np.full((2, 4), 0.5, "float32")),
    "detector": _detector_inputs,
    "detection_generator": _detection_generator_inputs,
}
#: Roles whose components are not called like layers: a function exercises them instead.
EXERCISE = {"optimizer": _optimizer_step, "schedule": _schedule_values}
#: Inputs for components whose call differs from the rest of their role.
SAMPLE_INPUTS_BY_NAME = {
    "SoftmaxCrossEntropyLoss": lambda: (np.array([0, 2], "int32"), np.zeros((2, 4), "float32")),
    "MultinomialMaskLoss": lambda: (np.full((2, 5), 0.2, "float32"), np.zeros((2, 4), "float32")),
}
#: Specs for components that need more than their defaults (small sizes keep the tests fast).
SPECS = {
    "MaskRCNN": {
        "backbone": {"type": "ResNet", "depth": 18, "out_features": ["C2", "C3", "C4", "C5"]},
        "neck": {"type": "FPN", "num_channels": 16},
        "anchor_generator": {"type": "AnchorGenerator"},
        "proposal_generator": {"type": "ProposalGenerator", "post_nms_topk_test": 50},
        "box_roi_aligner": {"type": "MultiLevelRoIAlign", "output_size": 7},
        "box_head": {"type": "FCBoxHead", "fc_dim": 32},
        "mask_roi_aligner": {"type": "MultiLevelRoIAlign", "output_size": 14},
        "mask_head": {"type": "FCNMaskHead", "num_convs": 1, "conv_dim": 8},
        "detection_generator": {"type": "DetectionGenerator", "max_detections": 10},
    },
    "KeypointRCNNHead": {"num_convs": 1, "conv_dim": 8},
}

#: Datasets are not layers; tests/data/test_datasets.py holds their contract test.
ENTRIES = [(role, name) for role, reg in ALL.items() for name in reg.names() if role != "dataset"]


def _build(role, name):
    if role == "detector":  # detectors are compositions of parts: the builder makes them
        from mrcnn_tf.modeling.builder import build_model

        return build_model(
            {"model": {"type": name, **SPECS.get(name, {})}}, num_classes=INJECTED["num_classes"]
        )
    entry = ALL[role].entry(name)
    kwargs = {k: v for k, v in INJECTED.items() if k in entry.injected}
    return ALL[role].build({"type": name, **SPECS.get(name, {})}, **kwargs)


def _flatten(value):
    if isinstance(value, dict):
        return [a for v in value.values() for a in _flatten(v)]
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _flatten(v)]
    return [np.asarray(value)]


def test_every_role_has_a_registry_and_builtins_are_registered():
    assert set(ALL) >= {
        "backbone",
        "neck",
        "anchor_generator",
        "rpn_head",
        "roi_aligner",
        "mask_head",
        "loss",
    }
    assert registry_for_role("backbones") is BACKBONES
    assert {("backbone", "ResNet"), ("neck", "FPN"), ("anchor_generator", "AnchorGenerator")} <= set(ENTRIES)


@pytest.mark.parametrize(("role", "name"), ENTRIES)
def test_component_builds_and_returns_finite_values(role, name):
    component = _build(role, name)
    if role in EXERCISE:
        outputs = EXERCISE[role](component)
    else:
        assert role in SAMPLE_INPUTS, f"add a sample input for the role '{role}' to this test"
        outputs = component(*SAMPLE_INPUTS_BY_NAME.get(name, SAMPLE_INPUTS[role])())
    for array in _flatten(outputs):
        assert array.size > 0 and np.all(np.isfinite(array)), f"{role} {name}"


@pytest.mark.parametrize(("role", "name"), ENTRIES)
def test_component_round_trips_through_keras_serialization_without_custom_objects(role, name):
    component = _build(role, name)
    serializable = (
        keras.layers.Layer,
        keras.losses.Loss,
        keras.optimizers.Optimizer,
        keras.optimizers.schedules.LearningRateSchedule,
    )
    if not isinstance(component, serializable):
        pytest.skip("not a Keras object")
    assert keras.saving.get_registered_name(type(component)) == f"mrcnn_tf.{role}>{name}"
    config = keras.saving.serialize_keras_object(component)
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(component)
    assert clone.get_config() == component.get_config()


def test_saved_model_file_reloads_without_custom_objects(tmp_path):
    inputs = keras.Input((64, 64, 3))
    features = BACKBONES.build({"type": "ResNet", "depth": 18, "freeze_at": 0})(inputs)
    outputs = ALL["neck"].build({"type": "FPN", "num_channels": 16})(features)
    model = keras.Model(inputs, outputs)
    image = _image()
    before = model(image)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)  # no custom_objects
    after = reloaded(image)
    for level in before:
        np.testing.assert_allclose(np.asarray(after[level]), np.asarray(before[level]), rtol=1e-5, atol=1e-5)
