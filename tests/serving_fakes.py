"""Stand-ins for TF Serving's REST and gRPC front ends over a loaded SavedModel.

TF Serving cannot run on the CI machines; these servers decode requests the way its
documentation says ModelServer does (REST: row format ``instances``, ``{"b64": ...}`` for
binary strings, ``{"error": ...}`` with HTTP 400; gRPC: ``PredictRequest`` tensors through
``tf.make_ndarray``, ``INVALID_ARGUMENT`` on a bad input) and run the signature the request
names. The example clients talk to them over real localhost sockets.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import tensorflow as tf


def _decode_value(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    return value


def rest_inputs(body: dict, signature) -> dict[str, tf.Tensor]:
    """Row-format ``instances`` -> one batched tensor per named input of ``signature``."""
    specs = signature.structured_input_signature[1]
    names = list(specs)
    instances = body["instances"]
    if not all(isinstance(i, dict) and set(i) != {"b64"} for i in instances):
        if len(names) != 1:
            raise ValueError("instances without input names need a signature with one input")
        instances = [{names[0]: i} for i in instances]
    return {n: tf.constant([_decode_value(i[n]) for i in instances], specs[n].dtype) for n in names}


def rest_predictions(outputs: dict[str, tf.Tensor]) -> list[dict]:
    """Outputs ``[B, ...]`` -> row format: one dict of output name -> list per instance."""
    arrays = {k: v.numpy() for k, v in outputs.items()}
    count = len(next(iter(arrays.values())))
    return [{k: v[b].tolist() for k, v in arrays.items()} for b in range(count)]


@contextlib.contextmanager
def rest_server(loaded, model_name: str = "mrcnn") -> Iterator[str]:
    """Serve ``POST /v1/models/<model_name>:predict`` on localhost; yields the model URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def _reply(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            if self.path != f"/v1/models/{model_name}:predict":
                self._reply(404, {"error": f"no such model or verb: {self.path}"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                signature = loaded.signatures[body.get("signature_name", "serving_default")]
                outputs = signature(**rest_inputs(body, signature))
            except (tf.errors.InvalidArgumentError, ValueError, KeyError) as exc:
                message = getattr(exc, "message", None) or str(exc)
                self._reply(400, {"error": message})
                return
            self._reply(200, {"predictions": rest_predictions(outputs)})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/models/{model_name}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def grpc_server(loaded) -> Iterator[str]:
    """A ``PredictionService`` on localhost; yields ``host:port``."""
    from concurrent import futures

    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    class Service(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            name = request.model_spec.signature_name or "serving_default"
            if name not in loaded.signatures:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"no signature '{name}'")
            signature = loaded.signatures[name]
            inputs = {k: tf.constant(np.asarray(tf.make_ndarray(v))) for k, v in request.inputs.items()}
            try:
                outputs = signature(**inputs)
            except tf.errors.InvalidArgumentError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
            response = predict_pb2.PredictResponse()
            response.model_spec.CopyFrom(request.model_spec)
            for key, value in outputs.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
