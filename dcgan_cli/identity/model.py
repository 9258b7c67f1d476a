"""The embedding network: a small ResNet-style CNN at the data's resolution, face -> 128 numbers on the unit sphere.

Input: float pixels in [0, 255] of shape (S, S, C), as the shards hold them;
the network scales them itself, so a user of the saved file feeds plain pixels.
Stem conv, then one residual stage per halving down to 4x4 (64 px: 32, 16, 8, 4;
at most 4 stages), each a basic block (two 3x3 convs, batch norm, ReLU, a 1x1
projection on the shortcut), then ArcFace's output block (batch norm, flatten,
dropout, a linear layer to `dim`, batch norm) and L2 normalisation. Only stock Keras layers: the .keras file
loads with `keras.saving.load_model` without this package.
"""

from __future__ import annotations

from dcgan_cli.pixels import scaling_layer


def stages_for(size: int) -> int:
    """Halvings down to 4x4 (28 stops at 7x7), at most 4: 16 -> 2, 28 -> 2, 32 -> 3, 64 and up -> 4."""
    n, s = 0, size
    while s > 4 and s % 2 == 0 and n < 4:
        s //= 2
        n += 1
    return n


def build_embedder(image_size: int, channels: int, dim: int = 128, width: int = 32, seed: int = 0,
                   dropout: float = 0.2):
    import keras
    from keras import layers

    init = keras.initializers.HeNormal(seed=seed)

    def conv(x, filters, k, stride, name):
        return layers.Conv2D(filters, k, strides=stride, padding="same", use_bias=False, kernel_initializer=init,
                             name=name)(x)

    def bn(x, name):
        return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)(x)

    inp = keras.Input((image_size, image_size, channels), name="image")
    x = scaling_layer(name="scale")(inp)
    x = layers.ReLU(name="stem_relu")(bn(conv(x, width, 3, 1, "stem_conv"), "stem_bn"))
    filters = width
    for i in range(stages_for(image_size)):
        filters = width * 2 ** i
        y = layers.ReLU(name=f"s{i}_relu1")(bn(conv(x, filters, 3, 2, f"s{i}_conv1"), f"s{i}_bn1"))
        y = bn(conv(y, filters, 3, 1, f"s{i}_conv2"), f"s{i}_bn2")
        shortcut = bn(conv(x, filters, 1, 2, f"s{i}_proj"), f"s{i}_proj_bn")
        x = layers.ReLU(name=f"s{i}_out")(layers.Add(name=f"s{i}_add")([y, shortcut]))
    # ArcFace's output block "E": batch norm, dropout, a linear layer on the *flattened* last map.
    # Average pooling would throw away where each feature is, which aligned faces (and digits) need.
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="pre_flatten_bn")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, seed=seed, name="dropout")(x)
    x = layers.Dense(dim, kernel_initializer=keras.initializers.GlorotUniform(seed=seed), name="project")(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="project_bn")(x)
    out = layers.UnitNormalization(name="embedding")(x)
    return keras.Model(inp, out, name="embedder")
