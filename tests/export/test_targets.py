"""The graph depends on the export's ``--target``, never on the machine that traces it."""

from __future__ import annotations

import collections

import pytest
import tensorflow as tf
from training_fixtures import tiny_config

from mrcnn_tf import build_model
from mrcnn_tf.export.targets import apply_target


def _op_types(cfg) -> collections.Counter:
    """Every op type in the traced inference graph and the functions it calls."""
    model = build_model(cfg)
    model.build()
    fn = tf.function(lambda x: model({"images": x}, training=False))
    graph = fn.get_concrete_function(tf.TensorSpec([1, None, None, 3], tf.float32)).graph.as_graph_def()
    ops = collections.Counter(node.op for node in graph.node)
    for function in graph.library.function:
        ops.update(node.op for node in function.node_def)
    return ops


def test_tracing_with_a_visible_gpu_builds_the_same_graph(monkeypatch):
    """Traced on this CPU twice, the second time with a fake GPU in the device list that the
    model code could ask for: the same ops (before this, Winograd convs and the RoIAlign's
    race-free gradient were chosen by looking for a GPU)."""
    # 256 channels: the FPN's 3x3 convs are Winograd-eligible under conv_algorithm: auto
    cfg = tiny_config("model.neck.num_channels=256", "model.neck.conv_algorithm=auto")
    plain = _op_types(cfg)
    real = tf.config.list_logical_devices

    def with_a_gpu(device_type=None):
        devices = real(device_type)
        if device_type in (None, "GPU"):
            devices = [*devices, tf.config.LogicalDevice(name="/device:GPU:0", device_type="GPU")]
        return devices

    monkeypatch.setattr(tf.config, "list_logical_devices", with_a_gpu)
    assert tf.config.list_logical_devices("GPU")
    assert _op_types(cfg) == plain


@pytest.mark.parametrize("target", ["any", "cpu", "gpu", "litert"])
def test_targets_set_direct_convolutions_and_the_gpu_roi_align(target):
    import copy

    cfg = tiny_config(
        "model.box_roi_aligner.backend=crop_and_resize"
        if target == "litert"
        else "model.box_roi_aligner.backend=gather",
        "model.mask_roi_aligner.backend=gather",
        "model.detection_generator.nms_backend=combined",
    )
    before = copy.deepcopy(cfg)
    out = apply_target(cfg, target)
    model = out["model"]
    assert model["neck"]["conv_algorithm"] == "direct" and model["mask_head"]["conv_algorithm"] == "direct"
    assert model["rpn_head"]["conv_algorithm"] == "direct"
    backend = "crop_and_resize" if target == "gpu" else "gather"
    assert model["box_roi_aligner"]["backend"] == backend and model["mask_roi_aligner"]["backend"] == backend
    assert cfg == before  # the input is not changed
    # litert: every op a TFLite builtin (padded NMS instead of TF's fused CombinedNonMaxSuppression)
    assert model["detection_generator"]["nms_backend"] == ("padded" if target == "litert" else "combined")
    build_model(out).build()  # still a valid model config
    with pytest.raises(ValueError, match="target must be one of"):
        apply_target(cfg, "tpu")


def test_on_a_gpu_machine_an_xla_run_keeps_its_gather_roi_align(monkeypatch):
    """In-process runs on a GPU machine get the gpu target (crop_and_resize RoIAlign), except a
    run that compiles its training step with XLA: crop_and_resize has no XLA kernel."""
    from mrcnn_tf.export.targets import for_this_machine

    real = tf.config.list_logical_devices
    gpu = tf.config.LogicalDevice(name="/device:GPU:0", device_type="GPU")
    monkeypatch.setattr(
        tf.config,
        "list_logical_devices",
        lambda kind=None: [*real(kind), gpu] if kind in (None, "GPU") else real(kind),
    )
    aligners = ("model.box_roi_aligner.backend=gather", "model.mask_roi_aligner.backend=gather")
    plain = for_this_machine(tiny_config(*aligners))
    assert plain["model"]["box_roi_aligner"]["backend"] == "crop_and_resize"
    xla = for_this_machine(tiny_config(*aligners, "train.jit_compile=true", "model.mask_slots=all"))
    assert (
        xla["model"]["box_roi_aligner"]["backend"] == xla["model"]["mask_roi_aligner"]["backend"] == "gather"
    )
    assert xla["model"]["neck"]["conv_algorithm"] == "direct"
