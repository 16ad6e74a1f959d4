"""Mask heads."""
