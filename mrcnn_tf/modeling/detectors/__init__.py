"""Detectors: meta-architectures assembled from registered components."""
