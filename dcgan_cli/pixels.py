"""Pixel scaling, in one place: the generator's [-1, 1] floats <-> uint8 pixels.

The generator ends in tanh, so its images live in [-1, 1]; files, shards and
the SavedModel serve uint8. 0 maps to -1 and 255 to +1 (x / 127.5 - 1); the way
back rounds half to even and clips, so a float exactly between two pixel values
always lands on the same one (the same bytes from the same seed, on any path).
Style transfer optimises pixels in [0, 1] and has its own pair below.

No TensorFlow at import: the numpy functions serve the CLI and tests; the
tensor ones import it when called (they run inside traced steps, where the
extra Python call costs nothing after tracing).
"""

from __future__ import annotations

import numpy as np

SCALE = 127.5  # uint8 255 / 2: pixel p <-> p / SCALE - 1


def to_signed(x):
    """uint8 pixels already cast to float (numpy or a tensor) -> [-1, 1]."""
    return x / SCALE - 1.0


def to_uint8(images) -> np.ndarray:
    """(N, H, W, C) floats in [-1, 1] -> uint8, rounded half to even, clipped."""
    x = np.asarray(images, dtype=np.float32)
    return np.clip(np.rint((x + 1.0) * SCALE), 0, 255).astype(np.uint8)


def to_uint8_tensor(x):
    """The tensor twin of `to_uint8` (tf.round also rounds half to even): what a SavedModel serves."""
    import tensorflow as tf

    return tf.cast(tf.clip_by_value(tf.round((x + 1.0) * SCALE), 0.0, 255.0), tf.uint8)


def scaling_layer(name: str | None = None):
    """A Keras layer taking uint8-valued input to [-1, 1], for models that take raw pixels."""
    from keras import layers

    return layers.Rescaling(1 / SCALE, offset=-1.0, name=name)


def unit_to_uint8(x) -> np.ndarray:
    """Pixels in [0, 1] (style transfer's) -> uint8, rounded half to even, clipped."""
    return np.clip(np.rint(np.asarray(x, np.float32) * 255.0), 0, 255).astype(np.uint8)
