"""Keypoint heads (role ``keypoint_head``): RoI features -> per-keypoint heatmap logits."""
