"""mrcnn_tf: Mask R-CNN instance segmentation for TensorFlow 2 / Keras 3, built from plugins.

Importing this package is cheap (no TensorFlow). The registries live in
:mod:`mrcnn_tf.registries`; :func:`mrcnn_tf.registries.load_builtins` imports the built-in
components, and :func:`mrcnn_tf.config.load_config` reads a YAML config and :func:`build_model` turns it
into a ``MaskRCNN`` Keras model.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__", "build_model"]


def build_model(config):
    """Build the detector a loaded config describes (imports TensorFlow); see
    :func:`mrcnn_tf.modeling.builder.build_model`."""
    from mrcnn_tf.modeling.builder import build_model as _build_model

    return _build_model(config)
