"""An example mrcnn_tf plugin package."""
