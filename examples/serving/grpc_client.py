"""Ask a TF Serving model server for detections over gRPC (``pip install tensorflow-serving-api``).

Serve an export of ``mrcnn-tf export`` first (see the README), then::

    python examples/serving/grpc_client.py photo.jpg --target localhost:8500 \
        --label-map models/mrcnn/1/assets/label_map.json

The images go as a string tensor of encoded bytes to the ``serving_bytes`` signature in a
``PredictRequest``; the answer holds the output tensors as ``TensorProto``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import grpc
import numpy as np
import tensorflow as tf
from detections import load_names, print_detections, read_files  # next to this file
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


def build_request(
    images: Sequence[bytes], model_name: str = "mrcnn", signature: str = "serving_bytes"
) -> predict_pb2.PredictRequest:
    """A ``PredictRequest`` with the encoded images as the ``image_bytes`` string tensor ``[B]``."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(list(images), dtype=tf.string))
    return request


def predict(target: str, request: predict_pb2.PredictRequest, timeout: float = 60.0) -> dict[str, np.ndarray]:
    """Send the request to ``target`` (host:port); the outputs as NumPy arrays.

    Raises:
        grpc.RpcError: e.g. ``INVALID_ARGUMENT`` for bytes that are not an image.
    """
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=timeout)
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="JPEG/PNG files")
    parser.add_argument("--target", default="localhost:8500", help="host:port of TF Serving's gRPC API")
    parser.add_argument("--model", default="mrcnn", help="the served model's name")
    parser.add_argument("--label-map", help="assets/label_map.json of the export, for class names")
    parser.add_argument("--score-threshold", type=float, default=0.5)
    args = parser.parse_args(argv)
    images = read_files(args.images)
    try:
        outputs = predict(args.target, build_request(images, args.model))
    except grpc.RpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    count = len(outputs["num_detections"])
    per_image = [{name: value[b] for name, value in outputs.items()} for b in range(count)]
    print_detections(args.images, per_image, load_names(args.label_map), args.score_threshold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
