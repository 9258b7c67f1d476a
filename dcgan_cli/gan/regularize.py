"""The GAN loss and D's regularisers, each off by default (TrainConfig; docs/quality.md's ablation).

- `loss`: the paper's non-saturating BCE on logits, or the hinge loss of SNGAN / SAGAN:
  D minimises relu(1 - D(x)) + relu(1 + D(G(z))), G minimises -D(G(z)).
- `spectral_norm`: every kernel and embedding of D divided by its largest singular value
  (Miyato et al. 2018), estimated by one power iteration per call; the gradient flows through
  sigma as in PyTorch's `spectral_norm`. `with_spectral_norm` wraps every such layer of a built D,
  whatever layers D has (a head added later included), so no layer can be forgotten.
  Not `keras.layers.SpectralNormalization`: it assigns W / sigma into the kernel on each call, so no
  gradient flows through sigma and the weights change between D's calls of one step (tensorflow/addons
  #1244, #2411), and that assignment failed under mixed precision there (#2398).
- lazy R1 (Mescheder et al. 2018; StyleGAN2's lazy regularisation): gamma / 2 * |grad_x D(x)|^2 on the
  real images D sees, every `r1_interval` steps, scaled by the interval; its gradient is added to D's.
- bCR (Zhang et al. 2020): bcr * ((D(x) - D(T(x)))^2 + (D(G(z)) - D(T(G(z))))^2) in D's loss, T being
  the paper's translation by up to 1/8 of the side (augment.py's, on every image), drawn stateless from
  (seed, step) like every other draw of the step. All five of augment.py's ops at p = 1 (colour, cutout)
  were tried first: at bcr 10 they left D nothing to tell and G never learnt (docs/quality.md).

Losses are per-example and averaged over the global batch, as the step's are.
"""

from __future__ import annotations

import keras
from keras import layers

# The weights spectral normalisation divides: a layer holding one of these is wrapped.
NORMALISED = ("kernel", "embeddings")


# ----------------------------------------------------------------------------
# losses


def d_hinge(real_logits, fake_logits):
    """(b, 1), (b, 1) -> (b,): relu(1 - D(x)) + relu(1 + D(G(z)))."""
    import tensorflow as tf

    return tf.reshape(tf.nn.relu(1.0 - real_logits) + tf.nn.relu(1.0 + fake_logits), [-1])


def g_hinge(fake_logits):
    """(b, 1) -> (b,): -D(G(z))."""
    import tensorflow as tf

    return tf.reshape(-fake_logits, [-1])


# ----------------------------------------------------------------------------
# spectral normalisation


@keras.saving.register_keras_serializable(package="dcgan")
class SpectralNorm(layers.Wrapper):
    """`layer` with its kernel (or embeddings) W replaced by W / sigma(W) in every call.

    sigma is u^T W v from one power iteration on the stored u (float32, not trained; updated in
    training mode, kept in checkpoints). The layer reads W / sigma through a Keras StatelessScope,
    so any layer type works unchanged and the gradient reaches W through sigma.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer, autocast=False, **kwargs)  # W is read in float32 here; the layer casts itself

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        name = next((n for n in NORMALISED if hasattr(self.layer, n)), None)
        if name is None:
            raise ValueError(f"{type(self.layer).__name__} has no {' or '.join(NORMALISED)} to normalise")
        self.weight_name = name
        w = getattr(self.layer, name)
        self.u = self.add_weight(shape=(1, w.shape[-1]), initializer=keras.initializers.RandomNormal(0.0, 1.0),
                                 trainable=False, name="sn_u", dtype="float32", autocast=False)
        self.built = True

    def normalised(self, training):
        """W / sigma(W) (float32, W's shape); in training mode u moves one power iteration."""
        import tensorflow as tf
        from keras.src.backend.common.variables import AutocastScope

        var = getattr(self.layer, self.weight_name)
        with AutocastScope(None):  # W in its own float32, not cast to a mixed policy's compute dtype
            w = tf.convert_to_tensor(var.value)
        mat = tf.reshape(w, [-1, w.shape[-1]])  # (fan_in, out)
        u = tf.convert_to_tensor(self.u.value)
        v = tf.stop_gradient(tf.math.l2_normalize(tf.matmul(u, mat, transpose_b=True)))  # (1, fan_in)
        u = tf.stop_gradient(tf.math.l2_normalize(tf.matmul(v, mat)))  # (1, out)
        sigma = tf.reduce_sum(tf.matmul(v, mat) * u)
        if training:
            self.u.assign(u)
        return var, w / sigma

    def call(self, inputs, training=False):
        from keras.src.backend.common.stateless_scope import StatelessScope

        var, w_sn = self.normalised(training)
        with StatelessScope(state_mapping=[(var, w_sn)], initialize_variables=False):
            return self.layer(inputs, training=training)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


def normalisable(layer) -> bool:
    """Whether `layer` holds a weight that spectral normalisation divides (a kernel or embeddings)."""
    return any(getattr(w, "name", "").split("/")[-1] in NORMALISED for w in layer.weights) and not isinstance(
        layer, SpectralNorm)


def with_spectral_norm(model: keras.Model) -> keras.Model:
    """`model` rebuilt (fresh weights) with every layer holding a kernel or embeddings wrapped in SpectralNorm."""

    def wrap(layer):
        clone = layer.__class__.from_config(layer.get_config())
        if not normalisable(layer):
            return clone
        return SpectralNorm(clone, name=layer.name, dtype=layer.dtype_policy)  # same name: get_layer finds it

    return keras.models.clone_model(model, clone_function=wrap)


# ----------------------------------------------------------------------------
# R1 and bCR


def r1_gradients(d_call, variables, real, gamma: float, interval: int, global_batch: int, scale):
    """The gradient of gamma / 2 * |grad_x D(x)|^2 * interval, averaged over the global batch, w.r.t.
    D's trainable `variables` (`d_call(images)`: D's logits, its labels held fixed when conditional;
    `scale`: the optimizer's loss scaling, identity but under fp16)."""
    import tensorflow as tf

    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            real = tf.identity(real)  # a tensor of this graph (inside tf.cond, `real` is a capture)
            inner.watch(real)
            total = tf.reduce_sum(tf.cast(d_call(real), tf.float32))
        g = tf.cast(inner.gradient(total, real), tf.float32)
        per_example = tf.reduce_sum(tf.square(g), axis=[1, 2, 3]) * (0.5 * gamma * interval)
        penalty = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        scaled = scale(penalty)
    return outer.gradient(scaled, variables), penalty


def lazy_r1(cfg, d_call, variables, real, step, scale):
    """(gradients to add to D's, the penalty): R1's on every r1_interval-th step, zeros on the others."""
    import tensorflow as tf

    def due():
        grads, penalty = r1_gradients(d_call, variables, real, cfg.r1_gamma, cfg.r1_interval, cfg.batch_size,
                                      scale)
        return [tf.zeros_like(v) if g is None else tf.cast(g, v.dtype) for g, v in zip(grads, variables)], penalty

    def idle():
        return [tf.zeros_like(v) for v in variables], tf.constant(0.0)

    if cfg.r1_interval == 1:  # every step: no condition (a synchronised batch norm cannot all-reduce inside one)
        return due()
    return tf.cond(tf.equal(tf.math.floormod(step, cfg.r1_interval), 0), due, idle)


BCR_FOLD = 0xBC4  # folded into the real augmentation's seed: bCR's own stream, no new stream id taken


def bcr_uniform(shape, seed):
    """stateless_uniform on bCR's stream: `seed` (the step's real-augmentation seed) folded with BCR_FOLD."""
    import tensorflow as tf

    return tf.random.stateless_uniform(shape, seed=tf.random.experimental.stateless_fold_in(seed, BCR_FOLD))


def translation_only(u):
    """augment.py's draws (b, DRAWS) with every op but translation switched off (its "on" draw set to 1, never < p)."""
    import tensorflow as tf

    from dcgan_cli.gan.augment import OPS, TRANSLATE

    on = tf.one_hot(TRANSLATE, OPS, on_value=0.0, off_value=1.0, dtype=u.dtype)[None, :]  # (1, OPS)
    return tf.concat([tf.where(on > 0, tf.ones_like(u[:, :OPS]), u[:, :OPS]), u[:, OPS:]], axis=1)


def bcr_loss(cfg, d_real, d_fake, real, fake, real_logits, fake_logits, u):
    """bCR's D loss term: bcr * ((D(x) - D(T(x)))^2 + (D(G(z)) - D(T(G(z))))^2), averaged over the global batch.

    `d_real`, `d_fake`: D's logits of images, with the real or the fake images' labels when conditional;
    `real`, `fake`: the images D just scored (`real_logits`, `fake_logits`); `u`: (b, 2 * DRAWS) uniform
    draws, the first DRAWS columns augmenting the real images and the rest the fakes (augment.py, p = 1).
    """
    import tensorflow as tf

    from dcgan_cli.gan.augment import DRAWS, diff_augment

    t_real = d_real(diff_augment(real, translation_only(u[:, :DRAWS]), 1.0))
    t_fake = d_fake(diff_augment(fake, translation_only(u[:, DRAWS:]), 1.0))
    per_example = tf.reshape(tf.square(tf.cast(real_logits - t_real, tf.float32))
                             + tf.square(tf.cast(fake_logits - t_fake, tf.float32)), [-1])
    return cfg.bcr * tf.nn.compute_average_loss(per_example, global_batch_size=cfg.batch_size)
