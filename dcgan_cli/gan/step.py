"""The training step: one D and one G update per batch, written for tf.distribute from the start.

Read `make_train_step` top to bottom: the plain DCGAN update (two GradientTapes: D on real and fake,
then G through D), then what is layered on it, each visibly: mixed precision (the loss scaled for
fp16), augmentation (what D sees of real and fake images, with ADA moving its p), and the EMA of G's
weights. Also here: the state a checkpoint holds (`GAN`, `build_gan`) and the precision a run uses.

Randomness is stateless and keyed by (seed, kind, step): the noise z, label smoothing, instance
noise, flips and augmentations of step k are the same whether the run was resumed or not, and
whatever the number of replicas. The step counter in the checkpoint is therefore the whole RNG
state (with ADA, p and its running sums are in the checkpoint too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dcgan_cli.config import TrainConfig
from dcgan_cli.pixels import to_signed
from dcgan_cli.runs.checkpoints import DISCRIMINATOR_SLOT, EMA_SLOT, GENERATOR_SLOT

# Stream ids folded into the per-step seed, one per kind of randomness (at most 8: seed * 8 + kind).
_Z, _LABELS, _NOISE_STD, _NOISE, _FLIP, _AUG_REAL, _AUG_FAKE, _Y_FAKE = range(8)


# ----------------------------------------------------------------------------
# precision


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def resolve_precision(name: str) -> str:
    """auto -> fp16 on a GPU with tensor cores, bf16 on a CPU with BF16 units, else fp32."""
    if name != "auto":
        return name
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        cc = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
        return "fp16" if tuple(cc) >= (7, 0) else "fp32"
    if tf.config.list_logical_devices("TPU"):
        return "bf16"
    return "bf16" if cpu_has_bf16() else "fp32"


DTYPE_POLICY = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


# ----------------------------------------------------------------------------
# models and state


@dataclass
class GAN:
    """Everything a checkpoint holds."""

    generator: object
    discriminator: object
    g_ema: object | None
    g_opt: object
    d_opt: object
    step: object  # tf.Variable int64: optimizer steps taken; also the RNG state
    epoch: object  # tf.Variable int64: completed epochs
    fixed_z: object  # tf.Variable: the noise of the per-epoch grids
    augment_p: object | None = None  # ADA: tf.Variable float32, the augmentations' probability
    ada_sums: object | None = None  # ADA: tf.Variable (2,): sum of r_t over the steps since p last moved, steps
    labels: object | None = None  # a conditional run's LabelTable (data/conditions.py; kept in RUN/condition.json)

    @property
    def output_generator(self):
        """The generator the run's outputs (grids, scores, generator.keras) come from: the EMA one when on."""
        return self.g_ema if self.g_ema is not None else self.generator

    def checkpoint(self):
        import tensorflow as tf

        # The inner Adam of a fp16 LossScaleOptimizer is saved, not the wrapper, so a run
        # can resume under another precision (the loss scale re-adapts in a few steps).
        def adam(opt):
            return getattr(opt, "inner_optimizer", opt)

        parts = {GENERATOR_SLOT: self.generator, DISCRIMINATOR_SLOT: self.discriminator, "g_opt": adam(self.g_opt),
                 "d_opt": adam(self.d_opt), "step": self.step, "epoch": self.epoch, "fixed_z": self.fixed_z}
        if self.g_ema is not None:
            parts[EMA_SLOT] = self.g_ema
        if self.augment_p is not None:
            parts.update(augment_p=self.augment_p, ada_sums=self.ada_sums)
        return tf.train.Checkpoint(**parts)


def augmenting(cfg: TrainConfig) -> bool:
    """Whether the step augments what D sees; `auto` must have been resolved (TrainConfig.with_augment)."""
    if cfg.augment == "auto":
        raise ValueError("augment 'auto' depends on the data's size: resolve it with TrainConfig.with_augment")
    return cfg.augment in ("diffaug", "ada")


def build_gan(cfg: TrainConfig, precision: str = "fp32", labels=None) -> GAN:
    """Models, optimizers and counters; call inside `strategy.scope()`. `labels`: a conditional run's LabelTable."""
    import keras
    import tensorflow as tf

    from dcgan_cli.gan.model import build_discriminator, build_generator

    keras.utils.set_random_seed(cfg.seed)  # the initial weights
    policy = DTYPE_POLICY[precision]
    g_kw = dict(image_size=cfg.image_size, channels=cfg.channels, latent_dim=cfg.latent_dim,
                filters=cfg.g_filters, init_std=cfg.init_std, dtype=policy, sync_bn=cfg.sync_bn,
                activation=cfg.g_activation, labels=labels.condition.dim if labels else 0)
    generator = build_generator(**g_kw)
    discriminator = build_discriminator(image_size=cfg.image_size, channels=cfg.channels, filters=cfg.d_filters,
                                        init_std=cfg.init_std, dtype=policy, sync_bn=cfg.sync_bn,
                                        labels=g_kw["labels"], norm=cfg.d_norm)
    if cfg.spectral_norm:  # every kernel and embedding of D, its projection head included (regularize.py)
        from dcgan_cli.gan.regularize import with_spectral_norm

        discriminator = with_spectral_norm(discriminator)
    g_ema = None
    if cfg.ema > 0:
        g_ema = build_generator(**g_kw)
        g_ema.set_weights(generator.get_weights())

    def adam(lr):
        opt = keras.optimizers.Adam(lr, beta_1=cfg.beta1, beta_2=cfg.beta2)
        return keras.optimizers.LossScaleOptimizer(opt) if precision == "fp16" else opt

    g_opt, d_opt = adam(cfg.lr_g), adam(cfg.lr_d)
    # Build the slots now so a checkpoint restores into them (not lazily later).
    g_opt.build(generator.trainable_variables)
    d_opt.build(discriminator.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    fixed_z = tf.Variable(
        tf.random.stateless_normal([cfg.num_samples, cfg.latent_dim], seed=[cfg.seed, 0x5EED]),
        trainable=False, name="fixed_z")
    gan = GAN(generator, discriminator, g_ema, g_opt, d_opt, step, epoch, fixed_z, labels=labels)
    if augmenting(cfg) and cfg.augment == "ada":
        gan.augment_p = tf.Variable(cfg.augment_p, dtype=tf.float32, trainable=False, name="augment_p")
        gan.ada_sums = tf.Variable(tf.zeros([2]), trainable=False, name="ada_sums")
    return gan


# ----------------------------------------------------------------------------
# the step


def _losses(cfg: TrainConfig) -> tuple[Callable, Callable]:
    """(d_loss_of(real_labels, real_logits, fake_logits), g_loss_of(fake_logits)): the paper's non-saturating
    BCE on logits, or the hinge loss (regularize.py), per example and averaged over the *global* batch."""
    import tensorflow as tf

    B = cfg.batch_size
    if cfg.loss == "hinge":
        from dcgan_cli.gan.regularize import d_hinge, g_hinge

        return (lambda real_labels, real_logits, fake_logits: tf.nn.compute_average_loss(
                    d_hinge(real_logits, fake_logits), global_batch_size=B),
                lambda fake_logits: tf.nn.compute_average_loss(g_hinge(fake_logits), global_batch_size=B))

    def bce(labels, logits):  # (b, 1) -> (b,)
        return tf.reshape(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), [-1])

    def d_loss_of(real_labels, real_logits, fake_logits):
        per_example = bce(real_labels, real_logits) + bce(tf.zeros_like(fake_logits), fake_logits)
        return tf.nn.compute_average_loss(per_example, global_batch_size=B)

    def g_loss_of(fake_logits):  # non-saturating: -log D(G(z))
        return tf.nn.compute_average_loss(bce(tf.ones_like(fake_logits), fake_logits), global_batch_size=B)

    return d_loss_of, g_loss_of


def make_update(cfg: TrainConfig, gan: GAN, precision: str) -> Callable:
    """The GAN update of one replica: update(z, real, real_labels, seen, y) -> (d_loss, g_loss, real_logits,
    fake_logits), one D and one G optimizer step. `seen(fake)` is what D sees of G's images (augmentation);
    `y` is None, or a conditional run's (real images' y, fakes' y): then G(z, y) and D(x, y).

    Losses are per example, averaged over the *global* batch (`_losses`), so gradients summed
    over replicas equal the single-device ones.
    """
    import tensorflow as tf

    B = cfg.batch_size
    G, D, g_opt, d_opt = gan.generator, gan.discriminator, gan.g_opt, gan.d_opt

    d_loss_of, g_loss_of = _losses(cfg)
    # -- the models, conditioned on y or not: D is called through `disc` only
    def gen(z, y):
        return G(z, training=True) if y is None else G([z, y], training=True)

    def disc(images, y):
        return D(images, training=True) if y is None else D([images, y], training=True)

    def d_regularised(d_loss, real, fake, real_logits, fake_logits, draw, y_real, y_fake):  # + bCR, if asked
        if cfg.bcr <= 0:
            return d_loss
        from dcgan_cli.gan.augment import DRAWS
        from dcgan_cli.gan.regularize import bcr_loss, bcr_uniform

        u = draw(_AUG_REAL, [B, 2 * DRAWS], bcr_uniform)
        return d_loss + bcr_loss(cfg, lambda x: disc(x, y_real), lambda x: disc(x, y_fake),
                                 real, tf.stop_gradient(fake), real_logits, fake_logits, u)

    def d_gradients(d_tape, d_scaled, real, step, y_real):  # + lazy R1 on the real images D saw, if asked
        grads = d_tape.gradient(d_scaled, D.trainable_variables)
        if cfg.r1_gamma <= 0:
            return grads
        from dcgan_cli.gan.regularize import lazy_r1

        r1, _ = lazy_r1(cfg, lambda x: disc(x, y_real), D.trainable_variables, real, step, lambda l: scaled(d_opt, l))
        return [g + r for g, r in zip(grads, r1)]

    # -- mixed precision: under fp16 each loss is scaled before its gradient (the optimizer unscales) ----
    def scaled(opt, loss):
        return opt.scale_loss(loss) if precision == "fp16" else loss

    # -- the DCGAN update (the dcgan preset): D first, then G's loss through the D just updated on this
    # batch (the PyTorch example's order). One G forward serves both; `seen` is what D sees of G's images.
    def dcgan_update(z, real, real_labels, seen, step=None, draw=None, y=None):
        y_real, y_fake = y or (None, None)
        with tf.GradientTape() as g_tape:
            fake = seen(gen(z, y_fake))
            with g_tape.stop_recording():
                with tf.GradientTape() as d_tape:
                    real_logits = disc(real, y_real)
                    fake_logits = disc(tf.stop_gradient(fake), y_fake)
                    d_loss = d_loss_of(real_labels, real_logits, fake_logits)
                    d_loss = d_regularised(d_loss, real, fake, real_logits, fake_logits, draw, y_real, y_fake)
                    d_scaled = scaled(d_opt, d_loss)
                d_opt.apply(d_gradients(d_tape, d_scaled, real, step, y_real), D.trainable_variables)
            g_loss = g_loss_of(disc(fake, y_fake))
            g_scaled = scaled(g_opt, g_loss)
        g_opt.apply(g_tape.gradient(g_scaled, G.trainable_variables), G.trainable_variables)
        return d_loss, g_loss, real_logits, fake_logits

    # -- the shared step (--shared-step): both losses from one forward pass of G and D, about 10% faster
    def shared_update(z, real, real_labels, seen, step=None, draw=None, y=None):
        y_real, y_fake = y or (None, None)
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = seen(gen(z, y_fake))
            real_logits = disc(real, y_real)
            fake_logits = disc(fake, y_fake)
            d_loss, g_loss = d_loss_of(real_labels, real_logits, fake_logits), g_loss_of(fake_logits)
            d_loss = d_regularised(d_loss, real, fake, real_logits, fake_logits, draw, y_real, y_fake)
            d_scaled, g_scaled = scaled(d_opt, d_loss), scaled(g_opt, g_loss)
        d_grads = d_gradients(d_tape, d_scaled, real, step, y_real)
        g_grads = g_tape.gradient(g_scaled, G.trainable_variables)
        d_opt.apply(d_grads, D.trainable_variables)
        g_opt.apply(g_grads, G.trainable_variables)
        return d_loss, g_loss, real_logits, fake_logits

    return dcgan_update if cfg.alternate else shared_update


def make_train_step(cfg: TrainConfig, gan: GAN, strategy, precision: str) -> Callable:
    """The step: a tf.function from a (distributed) uint8 batch to a dict of float32 scalars.

    Each replica draws its inputs and updates D, then G, on its share of the batch (`make_update`);
    then, once per step for all replicas: ADA's p, the EMA of G's weights, the step counter.
    """
    import tensorflow as tf

    B = cfg.batch_size
    update = make_update(cfg, gan, precision)

    def replica_step(batch, step, p=None):
        real_u8, raw = batch if gan.labels is not None else (batch, None)
        draw = _replica_draws(cfg, real_u8, step)
        z, real, real_labels = _replica_inputs(cfg, real_u8, draw)
        # -- conditional: the real images' y, and the fakes' drawn from the training labels' joint distribution
        y = None if raw is None else (gan.labels.condition.encode(raw), gan.labels.draw_tf(
            draw(_Y_FAKE, [B], tf.random.stateless_uniform, minval=0, maxval=gan.labels.total, dtype=tf.int64)))
        seen = _unchanged
        # -- augmentation (p given): D sees real and fake images through the same kind of augmentation,
        # drawn apart; G's gradient flows through the fakes' (augment.py)
        if p is not None:
            from dcgan_cli.gan.augment import DRAWS, diff_augment

            real = diff_augment(real, draw(_AUG_REAL, [B, DRAWS], tf.random.stateless_uniform), p)
            u_fake = draw(_AUG_FAKE, [B, DRAWS], tf.random.stateless_uniform)

            def seen(fake):
                return diff_augment(fake, u_fake, p)
        d_loss, g_loss, real_logits, fake_logits = update(z, real, real_labels, seen, step, draw, y)
        return _step_scalars(B, d_loss, g_loss, real_logits, fake_logits, augmented=p is not None)

    replica_fn = tf.function(replica_step, jit_compile=cfg.xla) if cfg.xla else replica_step
    read_p = _p_reader(cfg, gan)
    # The EMA averages the weights only; its batch-norm statistics are its own,
    # recomputed before every use (`standing_statistics`), not the live model's.
    G = gan.generator
    ema_pairs = list(zip(gan.g_ema.trainable_variables, G.trainable_variables)) if gan.g_ema is not None else []

    @tf.function
    def train_step(batch):
        step = gan.step.read_value()
        if read_p is None:  # no augmentation: the replicas get no p (no argument, no ops)
            out = strategy.run(replica_fn, args=(batch, step))
        else:
            out = strategy.run(replica_fn, args=(batch, step, read_p()))
        out = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}
        # -- augmentation's p: ADA moves it from r_t (D's overfitting); diffaug's stays
        if gan.augment_p is not None:
            out["augment_p"] = _ada_update(cfg, gan, out["r_t"])
        elif read_p is not None:
            out["augment_p"] = read_p()
        # -- the EMA of G's weights
        if ema_pairs:
            decay = ema_decay(cfg.ema, gan.step)
            for e, w in ema_pairs:
                e.assign(decay * e + (1.0 - decay) * tf.cast(w, e.dtype))
        gan.step.assign_add(1)
        return out

    return train_step


def _unchanged(fake):
    return fake


def _replica_draws(cfg: TrainConfig, real_u8, step) -> Callable:
    """draw(kind, shape, fn=normal, **kw): step `step`'s random draw of `kind`, made for the global batch
    and cut to this replica's rows (a scalar is not cut). Keyed by (seed, kind, step), so identical
    whatever the number of replicas."""
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    b = tf.shape(real_u8)[0]
    lo = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * b  # this replica's rows of the global batch

    def draw(kind, shape, fn=tf.random.stateless_normal, **kw):
        seed = tf.stack([tf.cast(cfg.seed, tf.int64) * 8 + kind, step])
        drawn = fn(shape, seed=seed, **kw)
        return drawn[lo:lo + b] if shape else drawn

    return draw


def _replica_inputs(cfg: TrainConfig, real_u8, draw):
    """This replica's share of the step: (z, the real images in [-1, 1] flipped and noised, the real labels)."""
    import tensorflow as tf

    z = draw(_Z, [cfg.batch_size, cfg.latent_dim])
    real = to_signed(tf.cast(real_u8, tf.float32))  # uint8 -> [-1, 1]
    if cfg.flip:
        flip = draw(_FLIP, [cfg.batch_size], tf.random.stateless_uniform) < 0.5
        real = tf.where(flip[:, None, None, None], tf.reverse(real, axis=[2]), real)
    if cfg.instance_noise > 0:
        std = draw(_NOISE_STD, [], tf.random.stateless_uniform, minval=0.0, maxval=cfg.instance_noise)
        real = real + std * draw(_NOISE, [cfg.batch_size, cfg.image_size, cfg.image_size, cfg.channels])
    real_labels = 1.0 - draw(_LABELS, [cfg.batch_size, 1], tf.random.stateless_uniform,
                             minval=0.0, maxval=cfg.label_smoothing)
    return z, real, real_labels


def _step_scalars(B: int, d_loss, g_loss, real_logits, fake_logits, augmented: bool) -> dict:
    """What a replica's step returns, each a share of the global batch's mean (summed over replicas)."""
    import tensorflow as tf

    inv_b = 1.0 / B
    out = {
        "d_loss": d_loss,
        "g_loss": g_loss,
        "d_real": tf.reduce_sum(tf.sigmoid(real_logits)) * inv_b,  # mean D(x) over the global batch
        "d_fake": tf.reduce_sum(tf.sigmoid(fake_logits)) * inv_b,  # mean D(G(z))
    }
    if augmented:  # ADA's overfitting heuristic r_t = E[sign(D(x_real))], logged in every augmenting mode
        out["r_t"] = tf.reduce_sum(tf.sign(tf.cast(real_logits, tf.float32))) * inv_b
    return out


def _p_reader(cfg: TrainConfig, gan: GAN) -> Callable | None:
    """How the step reads augmentation's p: None without augmentation, ADA's variable, or diffaug's constant."""
    import tensorflow as tf

    if not augmenting(cfg):
        return None
    return gan.augment_p.read_value if gan.augment_p is not None else (lambda: tf.constant(cfg.augment_p))


def _ada_update(cfg: TrainConfig, gan: GAN, r_t):
    """ADA, once per step in the cross-replica context (as the EMA): add r_t to the running sums; every
    `ada_interval` steps move p from their mean (augment.ada_adjust) and clear them. Returns p used this step."""
    import tensorflow as tf

    from dcgan_cli.gan.augment import ada_adjust

    used = gan.augment_p.read_value()
    sums = gan.ada_sums.assign_add(tf.stack([r_t, 1.0]))
    due = tf.equal(tf.math.floormod(gan.step + 1, cfg.ada_interval), 0)  # gan.step + 1 steps done after this one
    moved = ada_adjust(used, sums[0] / sums[1], cfg.ada_target, cfg.batch_size, cfg.ada_interval, cfg.ada_kimg)
    gan.augment_p.assign(tf.where(due, moved, used))
    gan.ada_sums.assign(tf.where(due, tf.zeros_like(sums), sums))
    return used


# ----------------------------------------------------------------------------
# the averaged generator

# Latents whose forward passes give the EMA generator its batch-norm statistics.
STANDING_STATS_SAMPLES = 4096
STANDING_STATS_BATCH = 256
_STANDING_SEED = 0x57A7


def ema_decay(decay: float, step):
    """The EMA decay at `step`, ramped up: min(decay, (1 + t) / (10 + t)).

    TensorFlow's ExponentialMovingAverage(num_updates=t) rule: early on the
    average forgets its random start within a few steps instead of holding
    on to it for ~1/(1 - decay) steps, so a 0.999 average is useful after
    1,000 steps too, not only after 10,000 (it then averages about the last
    tenth of training).
    """
    import tensorflow as tf

    t = tf.cast(step, tf.float32)
    return tf.minimum(tf.constant(decay, tf.float32), (1.0 + t) / (10.0 + t))


def standing_statistics(generator, seed: int, samples: int = STANDING_STATS_SAMPLES,
                        batch_size: int = STANDING_STATS_BATCH, labels=None) -> None:
    """Set the batch-norm moving statistics of `generator` from its own forward passes.

    Averaged weights never ran forward during training, so the live model's
    moving statistics do not fit them: an EMA generator with copied statistics
    draws washed-out, low-contrast images (docs/quality.md). Here every batch-norm
    layer's moving mean and variance become the plain average of its batch
    statistics over ceil(samples / batch_size) training-mode batches
    ("standing statistics", BigGAN); a batch norm of a conv layer averages over
    batch x height x width values, so the batch size barely matters and larger
    batches keep this to a few forward passes. The latents come from `seed`
    alone, so the same weights always get the same statistics.
    """
    import keras
    import tensorflow as tf

    norms = [x for x in generator.layers if isinstance(x, keras.layers.BatchNormalization)]
    if not norms:
        return
    latent_dim = generator.inputs[0].shape[-1]
    momenta = [x.momentum for x in norms]
    try:
        for i in range(max(1, -(-samples // batch_size))):
            for x in norms:  # moving = (i * moving + batch) / (i + 1): a running mean, not an EMA
                x.momentum = i / (i + 1)
            z = tf.random.stateless_normal([batch_size, latent_dim], seed=[seed, _STANDING_SEED + i])
            if labels is None:
                generator(z, training=True)
            else:
                generator([z, tf.constant(labels.draw(batch_size, [seed, _STANDING_SEED + i]))], training=True)
    finally:
        for x, m in zip(norms, momenta):
            x.momentum = m


@dataclass
class EmaStatistics:
    """The EMA generator's batch-norm statistics, made to fit its weights once per step, before anything reads them."""

    gan: GAN
    seed: int
    at: int = -1  # the step whose statistics are current

    def refresh(self) -> None:
        if self.gan.g_ema is not None and self.at != int(self.gan.step.numpy()):
            standing_statistics(self.gan.g_ema, self.seed, labels=self.gan.labels)
            self.at = int(self.gan.step.numpy())
