"""Drawing never fails on the boxes a detector can produce."""

from __future__ import annotations

import numpy as np

from mrcnn_tf.visualization import draw_instances


def test_a_box_thinner_than_a_pixel_is_drawn_not_an_error():
    image = np.zeros((40, 60, 3), np.uint8)
    boxes = np.array([[10.0, 20.0, 30.0, 20.4], [5.0, 5.0, 5.2, 50.0]])  # 0.4 px wide, 0.2 px tall
    out = draw_instances(image, boxes, ["thin 0.9", "flat 0.8"])
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out[25, 20].any()  # the thin box's outline, below its label
    assert not out[35, 40].any()  # elsewhere the image is untouched
