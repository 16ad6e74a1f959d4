"""RoI feature extraction and the box and mask heads."""
