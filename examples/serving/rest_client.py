"""Ask a TF Serving model server for detections over its REST API (standard library only).

Serve an export of ``mrcnn-tf export`` first (see the README), then::

    python examples/serving/rest_client.py photo.jpg --url http://localhost:8501/v1/models/mrcnn \
        --label-map models/mrcnn/1/assets/label_map.json

The images are sent as encoded bytes to the ``serving_bytes`` signature, base64 in JSON
(``{"b64": ...}``), TF Serving's convention for binary data; decoding, resizing and mapping
boxes back to the image's pixels happen inside the served graph.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from detections import load_names, print_detections, read_files  # next to this file


def build_body(images: Sequence[bytes], signature: str = "serving_bytes") -> dict:
    """The JSON body of a ``:predict`` request (row format, one instance per image)."""
    return {
        "signature_name": signature,
        "instances": [{"image_bytes": {"b64": base64.b64encode(data).decode("ascii")}} for data in images],
    }


def predict(url: str, images: Sequence[bytes], timeout: float = 60.0) -> list[dict]:
    """POST the images to ``<url>:predict``; one dict of outputs per image.

    Raises:
        RuntimeError: the server answered with an error (its message included).
    """
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--url must be an http(s) URL, got {url!r}")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        url.rstrip("/") + ":predict",
        data=json.dumps(build_body(images)).encode("utf-8"),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read())["predictions"]
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail)["error"]
        except (ValueError, KeyError):
            pass
        raise RuntimeError(f"the server refused the request (HTTP {exc.code}): {detail}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="JPEG/PNG files")
    parser.add_argument("--url", default="http://localhost:8501/v1/models/mrcnn", help="model URL")
    parser.add_argument("--label-map", help="assets/label_map.json of the export, for class names")
    parser.add_argument("--score-threshold", type=float, default=0.5)
    args = parser.parse_args(argv)
    images = read_files(args.images)
    try:
        predictions = predict(args.url, images)
    except (RuntimeError, urllib.error.URLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_detections(args.images, predictions, load_names(args.label_map), args.score_threshold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
