"""FPN against a NumPy reference of lateral + top-down + output convs and P6 subsampling."""

from __future__ import annotations

import numpy as np
import pytest
from numpy_ref import conv2d

from mrcnn_tf.modeling.base import FeatureSpec
from mrcnn_tf.modeling.necks.fpn import FPN


def _upsample2(x):
    return x.repeat(2, axis=1).repeat(2, axis=2)


def test_fpn_matches_reference():
    rng = np.random.default_rng(5)
    size = 64
    feats = {
        f"C{k}": rng.normal(size=(1, size // 2**k, size // 2**k, 3 + k)).astype("float32")
        for k in range(2, 6)
    }
    fpn = FPN(num_channels=6)
    out = fpn(feats)
    fpn.set_weights([rng.normal(scale=0.2, size=w.shape) for w in fpn.get_weights()])
    out = {k: np.asarray(v) for k, v in fpn(feats).items()}
    weights = {v.path.split("/")[-2] + "/" + v.path.split("/")[-1]: np.asarray(v) for v in fpn.weights}

    expected = {}
    top = None
    for k in (5, 4, 3, 2):
        lat = conv2d(feats[f"C{k}"], weights[f"lateral{k}/kernel"], weights[f"lateral{k}/bias"])
        if top is not None:
            lat = lat + _upsample2(top)
        top = lat
        expected[f"P{k}"] = conv2d(lat, weights[f"output{k}/kernel"], weights[f"output{k}/bias"], pad=1)
    expected["P6"] = expected["P5"][:, ::2, ::2, :]
    assert list(out) == ["P2", "P3", "P4", "P5", "P6"]
    for name, ref in expected.items():
        np.testing.assert_allclose(out[name], ref, rtol=1e-4, atol=1e-4, err_msg=name)


def test_fpn_crops_the_upsampled_map_for_sizes_not_divisible_by_32():
    feats = {f"C{k}": np.ones((1, -(-50 // 2**k), -(-50 // 2**k), 2), "float32") for k in range(2, 6)}
    fpn = FPN(num_channels=4, max_level=7)
    out = fpn(feats)
    assert {k: v.shape[1] for k, v in out.items()} == {"P2": 13, "P3": 7, "P4": 4, "P5": 2, "P6": 1, "P7": 1}
    specs = fpn.output_specs({f"C{k}": FeatureSpec(2, 2**k) for k in range(2, 6)})
    assert {k: (s.stride, s.channels) for k, s in specs.items()} == {
        "P2": (4, 4),
        "P3": (8, 4),
        "P4": (16, 4),
        "P5": (32, 4),
        "P6": (64, 4),
        "P7": (128, 4),
    }
    with pytest.raises(ValueError, match=r"FPN needs backbone features \['C2'\]"):
        fpn.output_specs({f"C{k}": FeatureSpec(2, 2**k) for k in range(3, 6)})
    with pytest.raises(ValueError, match="stride 2\\*\\*k"):
        fpn.output_specs({f"C{k}": FeatureSpec(2, 2 ** (k + 1)) for k in range(2, 6)})


def test_fpn_rejects_missing_inputs_and_bad_levels():
    with pytest.raises(ValueError, match="2 <= min_level <= 5 <= max_level"):
        FPN(max_level=4)
    with pytest.raises(ValueError, match="needs backbone features"):
        FPN(num_channels=2)({"C5": np.ones((1, 2, 2, 2), "float32")})
