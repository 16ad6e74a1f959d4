"""mrcnn_tf: Mask R-CNN instance segmentation for TensorFlow 2 / Keras 3, built from plugins.

Importing this package is cheap (no TensorFlow). The registries live in
:mod:`mrcnn_tf.registries`; :func:`mrcnn_tf.registries.load_builtins` imports the built-in
components, and :func:`mrcnn_tf.config.load_config` reads a YAML config and :func:`build_model` turns it
into a ``MaskRCNN`` Keras model.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__", "build_model"]


def build_model(config, num_classes=None):
    """Build the detector a loaded config describes (imports TensorFlow).

    ``num_classes`` defaults to ``model.num_classes``, else the config's declared
    ``data.num_classes``; see :func:`mrcnn_tf.modeling.builder.build_model`, which reads the
    model section only.
    """
    from mrcnn_tf.modeling.builder import build_model as _build_model

    if num_classes is None and (config.get("model") or {}).get("num_classes") is None:
        num_classes = (config.get("data") or {}).get("num_classes")
    return _build_model(config, num_classes=num_classes)
