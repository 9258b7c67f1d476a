"""The DCGAN of Radford et al. (2015) as two Keras models.

Generator: z -> (transposed conv, batch norm, ReLU) x n -> transposed conv -> tanh.
Discriminator: (strided conv, [batch norm], LeakyReLU 0.2) x n -> conv -> one logit.
Every size from 16 to 256 adds one up/down block per doubling; 28 (MNIST-like)
starts from 7x7 instead of 4x4. Weights start from N(0, init_std).

Only built-in Keras layers are used, so `generator.keras` loads anywhere with
plain `keras.saving.load_model`, without this package.
"""

from __future__ import annotations

import math

import keras
from keras import layers

# PyTorch's BatchNorm2d defaults, which the paper's reference code used.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def _base_and_blocks(image_size: int) -> tuple[int, int]:
    """(side of the first feature map, number of 2x resamplings) for a size."""
    base = 7 if image_size == 28 else 4
    n = math.log2(image_size / base)
    if n < 1 or n != int(n):
        raise ValueError(f"unsupported image size {image_size}: use 28 or a power of two from 16 to 256")
    return base, int(n)


def build_generator(
    image_size: int = 64,
    channels: int = 3,
    latent_dim: int = 100,
    filters: int = 64,
    init_std: float = 0.02,
    dtype: str | None = None,
    sync_bn: bool = False,
) -> keras.Model:
    base, n_up = _base_and_blocks(image_size)
    init = keras.initializers.RandomNormal(0.0, init_std)
    bn_init = keras.initializers.RandomNormal(1.0, init_std)

    def bn(name):
        return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, gamma_initializer=bn_init,
                                         synchronized=sync_bn, dtype=dtype, name=name)

    z = keras.Input((latent_dim,), name="z")
    x = layers.Reshape((1, 1, latent_dim), dtype=dtype, name="z_as_map")(z)
    f = filters * 2 ** (n_up - 1)
    # (B, 1, 1, nz) -> (B, base, base, f)
    x = layers.Conv2DTranspose(f, base, 1, "valid", use_bias=False, kernel_initializer=init,
                               dtype=dtype, name="project")(x)
    x = bn("project_bn")(x)
    x = layers.ReLU(dtype=dtype, name="project_relu")(x)
    for i in range(n_up - 1):
        f //= 2
        # (B, s, s, 2f) -> (B, 2s, 2s, f)
        x = layers.Conv2DTranspose(f, 4, 2, "same", use_bias=False, kernel_initializer=init,
                                   dtype=dtype, name=f"up{i + 1}")(x)
        x = bn(f"up{i + 1}_bn")(x)
        x = layers.ReLU(dtype=dtype, name=f"up{i + 1}_relu")(x)
    x = layers.Conv2DTranspose(channels, 4, 2, "same", use_bias=False, kernel_initializer=init,
                               dtype=dtype, name="to_image")(x)
    # Images leave the model in float32 whatever the compute precision.
    img = layers.Activation("tanh", dtype="float32", name="tanh")(x)
    return keras.Model(z, img, name="generator")


def build_discriminator(
    image_size: int = 64,
    channels: int = 3,
    filters: int = 64,
    init_std: float = 0.02,
    dtype: str | None = None,
    sync_bn: bool = False,
) -> keras.Model:
    base, n_down = _base_and_blocks(image_size)
    init = keras.initializers.RandomNormal(0.0, init_std)
    bn_init = keras.initializers.RandomNormal(1.0, init_std)

    img = keras.Input((image_size, image_size, channels), name="image")
    f = filters
    # No batch norm on the first layer (the paper: it destabilises training).
    x = layers.Conv2D(f, 4, 2, "same", use_bias=False, kernel_initializer=init, dtype=dtype, name="down0")(img)
    x = layers.LeakyReLU(0.2, dtype=dtype, name="down0_lrelu")(x)
    for i in range(1, n_down):
        f *= 2
        # (B, s, s, f/2) -> (B, s/2, s/2, f)
        x = layers.Conv2D(f, 4, 2, "same", use_bias=False, kernel_initializer=init, dtype=dtype, name=f"down{i}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, gamma_initializer=bn_init,
                                      synchronized=sync_bn, dtype=dtype, name=f"down{i}_bn")(x)
        x = layers.LeakyReLU(0.2, dtype=dtype, name=f"down{i}_lrelu")(x)
    # (B, base, base, f) -> (B, 1, 1, 1) -> (B, 1): a logit, in float32.
    x = layers.Conv2D(1, base, 1, "valid", use_bias=False, kernel_initializer=init, dtype=dtype, name="logit")(x)
    logit = layers.Flatten(dtype="float32", name="flatten")(x)
    return keras.Model(img, logit, name="discriminator")
