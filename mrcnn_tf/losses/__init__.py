"""Registered ``keras.losses.Loss`` subclasses."""
