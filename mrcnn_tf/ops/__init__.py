"""Pure TensorFlow functions without state: boxes, RoIAlign, anchors matching, masks."""
