"""Keras layers by role; each module registers its components on import."""
