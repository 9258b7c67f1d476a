"""Differentiable augmentation of everything the discriminator sees (DiffAugment, Zhao et al. 2020),
with a per-sample probability p that ADA (Karras et al. 2020) adapts during training.

On a few hundred images D memorises the training set; showing it only randomly
translated, cut-out and re-coloured images (real and generated alike, in both
the D and the G update, G's gradient flowing through the same ops) keeps it from
doing so without the generator learning the augmentations: each one is applied
to each sample with probability p < 1, so the clean images still dominate.

The augmentations are the DiffAugment reference's (`DiffAugment_tf.py`) for images
in [-1, 1]: colour (brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x
U(0.5, 1.5)), translation by up to 1/8 of the side with zero padding, and a cutout
of half the side. Each of the five is on for a sample when its uniform draw is
under p; a sample whose draw says off is passed through unchanged (`tf.where`, so
p = 0 is exactly the identity).

The randomness is one stateless uniform draw of (global batch, DRAWS) numbers
per step and per kind (gan/step.py keys it by (seed, kind, step) and slices this
replica's rows), so the augmentations of step k do not depend on the number of
replicas or on a resume.

ADA: p moves every `interval` steps by sign(r_t - target) * batch * interval /
(kimg * 1000), r_t = E[sign(D(x_real))] over those steps (`ada_adjust`), clipped
to [0, 1]; gan/step.py keeps p and the running sums in the checkpoint.
"""

from __future__ import annotations

TRANSLATION = 1 / 8  # the largest shift, as a share of the side
CUTOUT = 1 / 2  # the cut-out square's side, as a share of the image's
# Columns of the per-sample draw: on/off for brightness, saturation, contrast, translation, cutout;
# then the three colour magnitudes, the shift (x, y) and the cut-out centre (x, y).
OPS, TRANSLATE = 5, 3  # u[:, :OPS] switch the ops on; translation is the fourth
_BRIGHT, _SAT, _CONTRAST, _TX, _TY, _CX, _CY = range(OPS, 12)
DRAWS = 12


def diff_augment(x, u, p):
    """x (b, H, W, C) float images in [-1, 1]; u (b, DRAWS) uniform in [0, 1); p a scalar probability.

    Returns the augmented images (same shape and dtype); differentiable with respect to x.
    """
    import tensorflow as tf

    u = tf.cast(u, tf.float32)
    on = u[:, :OPS] < tf.cast(p, tf.float32)  # (b, OPS): which augmentations each sample gets

    def where(k, new, old):
        return tf.where(on[:, k, None, None, None], new, old)

    def mag(col, lo, width):
        return tf.cast(lo + width * u[:, col], x.dtype)[:, None, None, None]

    x = where(0, x + mag(_BRIGHT, -0.5, 1.0), x)
    grey = tf.reduce_mean(x, axis=3, keepdims=True)
    x = where(1, (x - grey) * mag(_SAT, 0.0, 2.0) + grey, x)
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    x = where(2, (x - mean) * mag(_CONTRAST, 0.5, 1.0) + mean, x)
    x = _translate(x, u, on[:, TRANSLATE])
    return _cutout(x, u, on[:, OPS - 1])


def _ints(u, n):
    """Uniform [0, 1) -> integers 0 .. n - 1."""
    import tensorflow as tf

    return tf.minimum(tf.cast(tf.floor(u * n), tf.int32), n - 1)


def _translate(x, u, on):
    """Shift each sample by up to TRANSLATION of the side (0 where `on` is False); zeros come in."""
    import tensorflow as tf

    h, w = x.shape[1], x.shape[2]
    s = int(h * TRANSLATION + 0.5)
    if s == 0:
        return x
    keep = tf.cast(on, tf.int32)
    ty = (_ints(u[:, _TY], 2 * s + 1) - s) * keep
    tx = (_ints(u[:, _TX], 2 * s + 1) - s) * keep
    padded = tf.pad(x, [[0, 0], [s, s], [s, s], [0, 0]])
    rows = tf.range(h)[None, :] + s - ty[:, None]  # (b, H): output row i reads input row i - ty
    cols = tf.range(w)[None, :] + s - tx[:, None]
    x = tf.gather(padded, rows, axis=1, batch_dims=1)  # (b, H, W + 2s, C)
    return tf.gather(x, cols, axis=2, batch_dims=1)  # (b, H, W, C)


def _cutout(x, u, on):
    """Zero a square of CUTOUT of the side at a random centre of each sample (none where `on` is False)."""
    import tensorflow as tf

    h, w = x.shape[1], x.shape[2]
    ch, cw = int(h * CUTOUT + 0.5), int(w * CUTOUT + 0.5)
    oy = _ints(u[:, _CY], h + (1 - ch % 2)) - ch // 2  # the square's first row, as the reference places it
    ox = _ints(u[:, _CX], w + (1 - cw % 2)) - cw // 2
    r, c = tf.range(h)[None, :], tf.range(w)[None, :]
    in_rows = (r >= oy[:, None]) & (r < oy[:, None] + ch)  # (b, H)
    in_cols = (c >= ox[:, None]) & (c < ox[:, None] + cw)  # (b, W)
    cut = in_rows[:, :, None] & in_cols[:, None, :] & on[:, None, None]  # (b, H, W)
    return x * tf.cast(~cut, x.dtype)[:, :, :, None]


def ada_adjust(p, r_t, target: float, batch_size: int, interval: int, kimg: float):
    """ADA's step: p + sign(r_t - target) * batch * interval / (kimg * 1000), clipped to [0, 1]."""
    import tensorflow as tf

    rate = batch_size * interval / (kimg * 1000.0)
    return tf.clip_by_value(p + tf.sign(r_t - target) * rate, 0.0, 1.0)
