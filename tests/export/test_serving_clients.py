"""The TF Serving client examples, end to end against stand-in servers over localhost.

``serving_fakes`` decodes requests as TF Serving documents it (see its docstring) and runs the
exported signature; the assertions compare with the signature called directly.
"""

from __future__ import annotations

import base64
import importlib
import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from serving_fakes import grpc_server, rest_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "serving"


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported[2]))


@pytest.fixture
def clients(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module("rest_client"), importlib.import_module("detections")


def _encoded(h, w, mode="RGB", fmt="PNG", seed=0):
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _direct(loaded, data):
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant(data))
    return {k: v.numpy() for k, v in out.items()}


def test_rest_body_is_tf_serving_row_format_with_base64(clients):
    rest_client, _ = clients
    body = rest_client.build_body([b"\x89PNG...", b"\xff\xd8jpeg"])
    assert body["signature_name"] == "serving_bytes"
    assert [base64.b64decode(i["image_bytes"]["b64"]) for i in body["instances"]] == [
        b"\x89PNG...",
        b"\xff\xd8jpeg",
    ]


def test_rest_client_round_trip_matches_the_signature(exported, loaded, clients, tmp_path, capsys):
    rest_client, _ = clients
    images = [_encoded(50, 70), _encoded(40, 30, mode="L", fmt="JPEG", seed=1)]  # RGB PNG, gray JPEG
    direct = _direct(loaded, images)
    with rest_server(loaded) as url:
        predictions = rest_client.predict(url, images)
        (tmp_path / "a.png").write_bytes(images[0])
        label_map = str(exported[2] / "assets" / "label_map.json")
        argv = [str(tmp_path / "a.png"), "--url", url, "--score-threshold", "0", "--label-map", label_map]
        code = rest_client.main(argv)
    assert len(predictions) == 2
    for b, prediction in enumerate(predictions):
        assert prediction["num_detections"] == direct["num_detections"][b]
        np.testing.assert_allclose(prediction["detection_boxes"], direct["detection_boxes"][b], atol=1e-4)
        np.testing.assert_array_equal(prediction["detection_classes"], direct["detection_classes"][b])
        np.testing.assert_allclose(prediction["detection_masks"], direct["detection_masks"][b], atol=1e-6)
    assert code == 0
    printed = capsys.readouterr().out
    n = int(direct["num_detections"][0])
    assert f"a.png: {n} detections" in printed
    first_class = ("circle", "square", "triangle")[int(direct["detection_classes"][0, 0]) - 1]
    assert printed.splitlines()[1].split()[0] == first_class


def test_rest_bad_inputs_are_http_400_and_the_server_keeps_serving(loaded, clients):
    rest_client, _ = clients
    rgba = _encoded(20, 20, mode="RGBA")
    with rest_server(loaded) as url:
        for bad in (b"not an image", b""):
            with pytest.raises(RuntimeError, match="HTTP 400"):
                rest_client.predict(url, [bad])
        (prediction,) = rest_client.predict(url, [rgba])  # RGBA: converted to RGB in the graph
    assert np.all(np.asarray(prediction["detection_boxes"]) <= 20)


@pytest.fixture
def grpc_client(monkeypatch):
    pytest.importorskip("grpc")
    pytest.importorskip("tensorflow_serving.apis")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module("grpc_client")


def test_grpc_predict_request_holds_a_string_tensor_of_the_encoded_images(grpc_client):
    request = grpc_client.build_request([b"abc", b"de"], model_name="m")
    assert request.model_spec.name == "m" and request.model_spec.signature_name == "serving_bytes"
    proto = request.inputs["image_bytes"]
    assert proto.dtype == tf.string.as_datatype_enum
    assert [d.size for d in proto.tensor_shape.dim] == [2]
    assert list(tf.make_ndarray(proto)) == [b"abc", b"de"]


def test_grpc_client_round_trip_matches_the_signature(loaded, grpc_client, tmp_path, capsys):
    images = [_encoded(60, 45, seed=2), _encoded(33, 90, fmt="JPEG", seed=3)]
    direct = _direct(loaded, images)
    with grpc_server(loaded) as target:
        outputs = grpc_client.predict(target, grpc_client.build_request(images))
        (tmp_path / "b.jpg").write_bytes(images[1])
        code = grpc_client.main([str(tmp_path / "b.jpg"), "--target", target, "--score-threshold", "0"])
    assert set(outputs) == set(direct)
    for key, value in direct.items():
        np.testing.assert_array_equal(outputs[key], value)  # the proto carries the exact values
    assert code == 0
    assert f"b.jpg: {int(direct['num_detections'][1])} detections" in capsys.readouterr().out


def test_grpc_bad_inputs_are_invalid_argument_and_the_server_keeps_serving(loaded, grpc_client):
    import grpc

    with grpc_server(loaded) as target:
        for bad in (b"not an image", b""):
            with pytest.raises(grpc.RpcError) as info:
                grpc_client.predict(target, grpc_client.build_request([bad]))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        outputs = grpc_client.predict(target, grpc_client.build_request([_encoded(8, 8, mode="L")]))
    assert outputs["detection_boxes"].shape[0] == 1
