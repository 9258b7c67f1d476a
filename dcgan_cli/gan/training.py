"""The DCGAN training loop: GradientTape steps, checkpoints, per-epoch outputs.

Reads top to bottom: `train()` checks everything and places the run, then
`_train_locked()` runs the phases: `_restore_or_init`, the epochs (`_train_epoch`,
the step loop; `_end_of_epoch`), `_export`. The step itself is `make_train_step()`.
What the identity trainer does alike (the run's lock, signals, checkpoints and
last-good/, the resume rule and bookkeeping, metrics lines) is in lifecycle.py.

Randomness is stateless and keyed by (seed, step): the noise z, label
smoothing, instance noise, flips and augmentations of step k are the same whether
the run was resumed or not, and whatever the number of replicas. The step counter
in the checkpoint is therefore the whole RNG state (with ADA, p and its running
sums are in the checkpoint too).
"""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.gan import health

from dcgan_cli.runs import lifecycle

from dcgan_cli.runs import rundir
from dcgan_cli.config import TrainConfig
from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import atomic_path, describe_os_error
from dcgan_cli.runs.lifecycle import NonFiniteLoss
from dcgan_cli.pixels import to_signed

# Stream ids folded into the per-step seed, one per kind of randomness (at most 8: seed * 8 + kind).
_Z, _LABELS, _NOISE_STD, _NOISE, _FLIP, _AUG_REAL, _AUG_FAKE = range(7)


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

        parts = {rundir.GENERATOR_SLOT: self.generator, rundir.DISCRIMINATOR_SLOT: self.discriminator, "g_opt": adam(self.g_opt),
                 "d_opt": adam(self.d_opt), "step": self.step, "epoch": self.epoch, "fixed_z": self.fixed_z}
        if self.g_ema is not None:
            parts[rundir.EMA_SLOT] = self.g_ema
        if self.augment_p is not None:
            parts.update(augment_p=self.augment_p, ada_sums=self.ada_sums)
        return tf.train.Checkpoint(**parts)


def augmenting(cfg: TrainConfig) -> bool:
    """Whether the step augments what D sees; `auto` must have been resolved (TrainConfig.with_augment)."""
    if cfg.augment == "auto":
        raise ValueError("augment 'auto' depends on the data's size: resolve it with TrainConfig.with_augment")
    return cfg.augment in ("diffaug", "ada")


def build_gan(cfg: TrainConfig, precision: str = "fp32") -> GAN:
    """Models, optimizers and counters; call inside `strategy.scope()`."""
    import keras
    import tensorflow as tf

    from dcgan_cli.gan.model import build_discriminator, build_generator

    keras.utils.set_random_seed(cfg.seed)  # the initial weights
    policy = DTYPE_POLICY[precision]
    g_kw = dict(image_size=cfg.image_size, channels=cfg.channels, latent_dim=cfg.latent_dim,
                filters=cfg.g_filters, init_std=cfg.init_std, dtype=policy, sync_bn=cfg.sync_bn,
                activation=cfg.g_activation)
    generator = build_generator(**g_kw)
    discriminator = build_discriminator(image_size=cfg.image_size, channels=cfg.channels, filters=cfg.d_filters,
                                        init_std=cfg.init_std, dtype=policy, sync_bn=cfg.sync_bn)
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
    gan = GAN(generator, discriminator, g_ema, g_opt, d_opt, step, epoch, fixed_z)
    if augmenting(cfg) and cfg.augment == "ada":
        gan.augment_p = tf.Variable(cfg.augment_p, dtype=tf.float32, trainable=False, name="augment_p")
        gan.ada_sums = tf.Variable(tf.zeros([2]), trainable=False, name="ada_sums")
    return gan


# ----------------------------------------------------------------------------
# the step


def _replica_inputs(cfg: TrainConfig, real_u8, step, p=None):
    """This replica's share of step `step`: (z, the real images in [-1, 1] flipped, noised and augmented,
    the real labels, the function that augments this replica's fakes or None).

    `p` (augmentation on): each augmentation's per-sample probability (augment.py). Every random draw is keyed by (seed, kind, step), made for the global batch and then
    sliced to this replica's rows: identical whatever the number of replicas.
    """
    import tensorflow as tf

    B, nz = cfg.batch_size, cfg.latent_dim
    ctx = tf.distribute.get_replica_context()
    b = tf.shape(real_u8)[0]
    lo = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * b  # this replica's rows of the global batch

    def rand(kind, shape, fn=tf.random.stateless_normal, **kw):
        seed = tf.stack([tf.cast(cfg.seed, tf.int64) * 8 + kind, step])
        return fn(shape, seed=seed, **kw)

    z = rand(_Z, [B, nz])[lo:lo + b]
    real = to_signed(tf.cast(real_u8, tf.float32))  # uint8 -> [-1, 1]
    if cfg.flip:
        flip = rand(_FLIP, [B], tf.random.stateless_uniform)[lo:lo + b] < 0.5
        real = tf.where(flip[:, None, None, None], tf.reverse(real, axis=[2]), real)
    if cfg.instance_noise > 0:
        std = rand(_NOISE_STD, [], tf.random.stateless_uniform, minval=0.0, maxval=cfg.instance_noise)
        real = real + std * rand(_NOISE, [B, cfg.image_size, cfg.image_size, cfg.channels])[lo:lo + b]
    real_labels = 1.0 - rand(_LABELS, [B, 1], tf.random.stateless_uniform,
                             minval=0.0, maxval=cfg.label_smoothing)[lo:lo + b]
    augment_fake = None
    if p is not None:  # D sees real and fake images through the same kind of augmentation, drawn apart
        from dcgan_cli.gan.augment import DRAWS, diff_augment

        real = diff_augment(real, rand(_AUG_REAL, [B, DRAWS], tf.random.stateless_uniform)[lo:lo + b], p)
        u_fake = rand(_AUG_FAKE, [B, DRAWS], tf.random.stateless_uniform)[lo:lo + b]

        def augment_fake(fake):
            return diff_augment(fake, u_fake, p)
    return z, real, real_labels, augment_fake


def make_train_step(cfg: TrainConfig, gan: GAN, strategy, precision: str) -> Callable:
    """One D and one G update per call, sharing the generator's forward pass.

    Returns a tf.function: uint8 batch (distributed) -> dict of float32 scalars.
    Losses are per-example BCE on logits averaged over the *global* batch, so
    gradients summed over replicas equal the single-device ones.
    """
    import tensorflow as tf

    B = cfg.batch_size
    G, D, g_opt, d_opt = gan.generator, gan.discriminator, gan.g_opt, gan.d_opt
    fp16 = precision == "fp16"

    def bce(labels, logits):  # (b, 1) -> (b,)
        return tf.reshape(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), [-1])

    def replica_step(real_u8, step, *p):
        z, real, real_labels, augment_fake = _replica_inputs(cfg, real_u8, step, *p)
        seen = augment_fake or (lambda fake: fake)  # what D sees of G's images; G's gradient flows through it

        def d_loss_of(real_logits, fake_logits):
            per_example = bce(real_labels, real_logits) + bce(tf.zeros_like(fake_logits), fake_logits)
            return tf.nn.compute_average_loss(per_example, global_batch_size=B)

        def g_loss_of(fake_logits):  # non-saturating: -log D(G(z))
            return tf.nn.compute_average_loss(bce(tf.ones_like(fake_logits), fake_logits), global_batch_size=B)

        if cfg.alternate:
            # D first; then G's loss through the D just updated on this batch (the
            # PyTorch example's order): one more D forward than the shared step.
            with tf.GradientTape() as g_tape:
                fake = seen(G(z, training=True))
                with g_tape.stop_recording():
                    with tf.GradientTape() as d_tape:
                        real_logits = D(real, training=True)
                        fake_logits = D(tf.stop_gradient(fake), training=True)
                        d_loss = d_loss_of(real_logits, fake_logits)
                        d_scaled = d_opt.scale_loss(d_loss) if fp16 else d_loss
                    d_opt.apply(d_tape.gradient(d_scaled, D.trainable_variables), D.trainable_variables)
                g_loss = g_loss_of(D(fake, training=True))
                g_scaled = g_opt.scale_loss(g_loss) if fp16 else g_loss
            g_opt.apply(g_tape.gradient(g_scaled, G.trainable_variables), G.trainable_variables)
        else:
            with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
                fake = seen(G(z, training=True))  # one generator forward serves both losses
                real_logits = D(real, training=True)
                fake_logits = D(fake, training=True)
                d_loss, g_loss = d_loss_of(real_logits, fake_logits), g_loss_of(fake_logits)
                if fp16:
                    d_scaled, g_scaled = d_opt.scale_loss(d_loss), g_opt.scale_loss(g_loss)
            d_grads = d_tape.gradient(d_scaled if fp16 else d_loss, D.trainable_variables)
            g_grads = g_tape.gradient(g_scaled if fp16 else g_loss, G.trainable_variables)
            d_opt.apply(d_grads, D.trainable_variables)
            g_opt.apply(g_grads, G.trainable_variables)
        return _step_scalars(B, d_loss, g_loss, real_logits, fake_logits, augmented=bool(p))

    # The EMA averages the weights only; its batch-norm statistics are its own,
    # recomputed before every use (`standing_statistics`), not the live model's.
    ema_pairs = list(zip(gan.g_ema.trainable_variables, G.trainable_variables)) if gan.g_ema is not None else []
    replica_fn = tf.function(replica_step, jit_compile=cfg.xla) if cfg.xla else replica_step

    read_p = _p_reader(cfg, gan)

    @tf.function
    def train_step(batch):
        out = strategy.run(replica_fn, args=(batch, gan.step.read_value(), *(read() for read in read_p)))
        out = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}
        if read_p:
            out["augment_p"] = _ada_update(cfg, gan, out["r_t"]) if gan.augment_p is not None else read_p[0]()
        if ema_pairs:
            decay = ema_decay(cfg.ema, gan.step)
            for e, w in ema_pairs:
                e.assign(decay * e + (1.0 - decay) * tf.cast(w, e.dtype))
        gan.step.assign_add(1)
        return out

    return train_step


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


def _p_reader(cfg: TrainConfig, gan: GAN) -> tuple:
    """How the step gets p: () without augmentation (no argument, no ops), ADA's variable, or diffaug's constant."""
    import tensorflow as tf

    if not augmenting(cfg):
        return ()
    return (gan.augment_p.read_value,) if gan.augment_p is not None else (lambda: tf.constant(cfg.augment_p),)


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
                        batch_size: int = STANDING_STATS_BATCH) -> None:
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
    latent_dim = generator.input_shape[-1]
    momenta = [x.momentum for x in norms]
    try:
        for i in range(max(1, -(-samples // batch_size))):
            for x in norms:  # moving = (i * moving + batch) / (i + 1): a running mean, not an EMA
                x.momentum = i / (i + 1)
            z = tf.random.stateless_normal([batch_size, latent_dim], seed=[seed, _STANDING_SEED + i])
            generator(z, training=True)
    finally:
        for x, m in zip(norms, momenta):
            x.momentum = m


# ----------------------------------------------------------------------------
# after a NaN


def _lower(lr: float) -> str:
    """The rate to suggest after a NaN: a tenth, and never above the paper's 2e-4."""
    return f"{min(lr / 10, 2e-4):.3g}"


def recovery_advice(cfg: TrainConfig, run_dir: Path, last: str | None) -> str:
    """What to run after a NaN: resume the last good checkpoint with lower rates, or start again with them."""
    rates = f"--lr-d {_lower(cfg.lr_d)} --lr-g {_lower(cfg.lr_g)}"
    if last is None:
        return (f"no checkpoint was written before it, so there is nothing to resume: start a new run with "
                f"lower learning rates (your `dcgan train` command plus {rates})")
    return (f"the last good checkpoint, {Path(last).name}, is kept; continue from it with lower learning rates: "
            f"dcgan train --resume {run_dir} {rates}")


# ----------------------------------------------------------------------------
# per-epoch outputs


def plot_losses(metrics_path: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "d_loss" in r]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    epochs = [r["epoch"] for r in rows]
    ax.plot(epochs, [r["d_loss"] for r in rows], "o-", label="D loss")
    ax.plot(epochs, [r["g_loss"] for r in rows], "o-", label="G loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (BCE on logits)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


# ----------------------------------------------------------------------------
# the loop: train() checks and places the run, then restore-or-init, the epochs of steps, the export


def train(
    cfg: TrainConfig,
    run_dir: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    log: Callable[[str], None] = print,
    quiet: bool = False,
    max_steps: int | None = None,
    verify_data: bool = False,
) -> Path:
    """Train `cfg` into a new run, or continue the run `resume`; returns the run dir.

    A new run goes into a new numbered folder under `cfg.runs_dir` (or into
    `run_dir` when given). `resume` names a run directory holding a checkpoint;
    `cfg` may differ from its saved config only in `TrainConfig.RESUMABLE`
    fields (and the data's place); training continues at its exact step and
    epoch, and what changed goes into config.json's history. With
    `cfg.eval_every_epochs`, what evaluation needs is checked before any
    training. The shards are checked against their manifest first (hashes too
    with `verify_data`, or when they changed since the last check), and the
    run directory is locked while training. `max_steps` stops early
    (benchmarks, tests).
    """
    from dcgan_cli.runs import distribute
    from dcgan_cli.metrics.evaluate import preflight_training
    from dcgan_cli.resources import check_training_memory
    from dcgan_cli.data.shards import check_shape, load_manifest, verify_shards

    lifecycle.check_call(run_dir, resume)
    # -- setup: every rule checked before anything is written ---------------
    saved = rundir.load_config(resume) if resume is not None else None  # refuses a non-run before locking it
    manifest = load_manifest(cfg.data)
    check_shape(manifest, cfg.image_size, cfg.channels)
    verify_shards(cfg.data, manifest, full=verify_data, log=log)
    check_training_memory(cfg, log=log)
    # auto checkpoint/sample cadence -> epochs, augment auto -> a mode, saved in config.json
    cfg = cfg.with_cadence(manifest["count"]).with_augment(manifest["count"])
    preflight_training(cfg, log=log)
    strategy = distribute.make_strategy(cfg.strategy)
    chief = distribute.is_chief(strategy)
    precision = resolve_precision(cfg.precision)
    n_rep = strategy.num_replicas_in_sync
    if cfg.batch_size % n_rep:
        raise DcganError(f"batch size {cfg.batch_size} does not split over {n_rep} replicas; use a multiple of {n_rep}")

    # -- the run directory: the chief numbers it, the other workers learn its path (distribute.py)
    run_dir, new = lifecycle.place_run(cfg, lifecycle.run_name(cfg.data, cfg.preset, cfg.run_name), run_dir, resume,
                                       chief=chief, share=lambda make: distribute.shared_run_dir(strategy, make))
    with lifecycle.hold(run_dir, cfg, new=new, chief=chief):
        if saved is not None:
            lifecycle.reopen(run_dir, cfg, log, chief=chief)
        return _train_locked(cfg, run_dir, saved, manifest, log, quiet, max_steps, strategy, precision)


@dataclass
class EmaStatistics:
    """The EMA generator's batch-norm statistics, made to fit its weights once per step, before anything reads them."""

    gan: GAN
    seed: int
    at: int = -1  # the step whose statistics are current

    def refresh(self) -> None:
        if self.gan.g_ema is not None and self.at != int(self.gan.step.numpy()):
            standing_statistics(self.gan.g_ema, self.seed)
            self.at = int(self.gan.step.numpy())


@dataclass
class Training:
    """What the loop works with: the config, the models, the run, and the per-step machinery."""

    cfg: TrainConfig
    gan: GAN
    run: lifecycle.Run
    ema: EmaStatistics
    train_step: Callable
    share: Callable[[bool], bool] | None  # several workers: one signal stops them all (distribute.any_worker)
    tb: object  # the TensorBoard writer
    grid_runner: object  # one trace for every epoch's grid
    log: Callable[[str], None]
    quiet: bool
    monitor: health.Monitor  # the training-health detectors' state

    @property
    def step(self) -> int:
        return int(self.gan.step.numpy())

    @property
    def scalars(self) -> tuple[str, ...]:
        """What a step returns, logged every epoch (with augmentation also its p and ADA's r_t)."""
        return _SCALARS + (_AUGMENT_SCALARS if augmenting(self.cfg) else ())


def _train_locked(cfg: TrainConfig, run_dir: Path, saved: TrainConfig | None, manifest: dict, log, quiet: bool,
                  max_steps: int | None, strategy, precision: str) -> Path:
    """The training itself, holding the run's lock; `saved` is the run's config before a resume (None: new run)."""
    from dcgan_cli.runs import distribute
    from dcgan_cli.progress import Bars

    # Non-chief workers write to a scratch dir (the multi-worker guide's rule).
    out_dir = distribute.output_dir(strategy, run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        t = _restore_or_init(cfg, run_dir, out_dir, saved, manifest, log, quiet, max_steps, strategy, precision)
        with t.run.signals, Bars(not quiet) as progress, _loop_errors(strategy, run_dir):
            data = _batches(cfg, strategy, t.run, t.step) if not t.run.finished(t.step) else None
            epoch = t.run.epochs_from(t.step).start
            while epoch < t.run.epochs:
                try:
                    meter = _train_epoch(t, epoch, data, progress)
                except NonFiniteLoss as e:  # --on-collapse rollback: back to a healthy step; else it stands
                    if not _roll_back_after_nan(t, e, progress):
                        raise
                    data, epoch = _batches(t.cfg, strategy, t.run, t.step), t.run.epochs_from(t.step).start
                    continue
                if not t.run.epoch_ended(t.step):  # max_steps reached mid-epoch (checkpointed)
                    break
                if _end_of_epoch(t, epoch, meter, progress):  # --on-collapse rollback: back to a healthy step
                    data, epoch = _batches(t.cfg, strategy, t.run, t.step), t.run.epochs_from(t.step).start
                    continue
                if t.run.reached_max(t.step):
                    break
                epoch += 1
    finally:
        distribute.remove_scratch(out_dir, run_dir)
    _export(t)
    return run_dir


def _restore_or_init(cfg: TrainConfig, run_dir: Path, out_dir: Path, saved: TrainConfig | None, manifest: dict, log,
                     quiet: bool, max_steps: int | None, strategy, precision: str) -> Training:
    """The models built (and restored on resume), the run's bookkeeping written, the step and its writers made."""
    import tensorflow as tf

    from dcgan_cli.runs import distribute
    from dcgan_cli.generate.sampling import Sampler
    from dcgan_cli.data.shards import data_id

    chief = distribute.is_chief(strategy)
    this_data = data_id(manifest)
    with strategy.scope():
        gan = build_gan(cfg, precision)
    ema = EmaStatistics(gan, cfg.seed)
    resume = lifecycle.resume_command(cfg, run_dir)
    # Every checkpoint holds EMA statistics that fit the EMA weights, so generator.keras, best/,
    # `sample`, `evaluate` and `export` all see them.
    checkpoints = lifecycle.Checkpoints(
        gan.checkpoint(), out_dir / rundir.CKPT_DIR, run_dir, keep=checkpoints_to_keep(cfg), resume=resume,
        models=[m for m in (gan.generator, gan.discriminator, gan.g_ema) if m is not None],
        advice=lambda last: recovery_advice(cfg, run_dir, last), before_save=ema.refresh)
    run = lifecycle.Run(run_dir, resume, cfg.epoch_steps(manifest["count"]), cfg.epochs, checkpoints, max_steps,
                        chief, cfg.checkpoint_every_steps, cfg.checkpoint_every_epochs)
    if saved is None:
        lifecycle.record(run, cfg, {"event": "start", "data": cfg.data, "data_id": this_data})
        if chief:
            (run_dir / rundir.SAMPLES_DIR).mkdir(exist_ok=True)
    else:  # every worker resumes from the chief's checkpoints (the others only save to scratch)
        source = checkpoints.directory if chief else distribute.checkpoint_dir_to_restore(run_dir, rundir.CKPT_DIR)
        restored = checkpoints.restore(source, log)
    # The config is the truth: a checkpoint restores the optimizers' learning rates too.
    for opt, lr in ((gan.g_opt, cfg.lr_g), (gan.d_opt, cfg.lr_d)):
        opt.learning_rate.assign(lr)
    if saved is not None:
        event = lifecycle.announce_resume(run, saved, cfg, restored, int(gan.step.numpy()), log)
        lifecycle.record(run, cfg, {**event, **_data_change(cfg, run_dir, this_data, log)})
    several_workers = distribute.num_workers(strategy) > 1  # decided once, not per step
    return Training(cfg, gan, run, ema, make_train_step(cfg, gan, strategy, precision),
                    (lambda flag: distribute.any_worker(strategy, flag)) if several_workers else None,
                    tf.summary.create_file_writer(str(out_dir / rundir.TENSORBOARD_DIR)),
                    Sampler(gan.output_generator, batch_size=cfg.num_samples), log, quiet, _monitor(cfg, gan, run_dir))


def _data_change(cfg: TrainConfig, run_dir: Path, this_data: str, log) -> dict:
    """The resume's data facts for config.json's history; a warning when the images are not the ones trained on."""
    before = rundir.recorded_data_id(run_dir)
    if before is None or before == this_data:
        return {"data_id": this_data}
    log(f"Warning: {cfg.data} is not the data this run trained on so far (same shape, other images: "
        f"data id {this_data}, was {before}); training goes on with it, and config.json's history says so")
    return {"data_id": this_data, "data_changed_from": before}


def _batches(cfg: TrainConfig, strategy, run: lifecycle.Run, step: int):
    """The batches of the rest of the run, from `step` on, distributed over the replicas.

    One pipeline: epoch e shuffled by (seed, e), the steps already taken skipped, so
    a resumed run sees the same batches as an uninterrupted one; batches flow on
    across epoch ends.
    """
    from dcgan_cli.data.pipeline import make_dataset

    first_epoch = step // run.steps_per_epoch
    skip = step - first_epoch * run.steps_per_epoch

    def per_pipeline(ctx):
        local = ctx.num_replicas_in_sync // ctx.num_input_pipelines  # a step takes a batch per local replica
        ds = make_dataset(cfg.data, cfg.batch_size, seed=cfg.seed * 100_003, cache=cfg.cache, input_context=ctx,
                          epochs=(first_epoch, cfg.epochs), batches_per_epoch=run.steps_per_epoch * local)
        return ds.skip(skip * local)

    return iter(strategy.distribute_datasets_from_function(per_pipeline))


_SCALARS = ("d_loss", "g_loss", "d_real", "d_fake")  # what a step returns, logged every epoch
_AUGMENT_SCALARS = ("augment_p", "r_t")  # and with augmentation: the epoch's mean p and r_t


def _train_epoch(t: Training, epoch: int, data, progress) -> lifecycle.EpochMeter:
    """The step loop of one epoch, until its end, a signal, or max_steps."""
    cfg, run = t.cfg, t.run
    meter = lifecycle.EpochMeter(t.scalars, cfg.batch_size)
    steps = run.steps_left(epoch, t.step)
    bar = progress.task(f"epoch {epoch + 1}/{cfg.epochs}", run.steps_per_epoch, steps.start)
    for _ in steps:
        out = {k: float(v) for k, v in t.train_step(next(data)).items()}
        step = t.step
        if not (np.isfinite(out["d_loss"]) and np.isfinite(out["g_loss"])):
            raise NonFiniteLoss(
                f"loss became {'NaN' if np.isnan(out['d_loss'] + out['g_loss']) else 'Inf'} at step {step} "
                f"(epoch {epoch + 1}); stopped without checkpointing: {run.checkpoints.recovery()}")
        meter.add(out)
        bar.advance(1, f"d {out['d_loss']:.3f} g {out['g_loss']:.3f} D(x) {out['d_real']:.2f} "
                       f"D(G(z)) {out['d_fake']:.2f} {meter.img_per_s():.0f} img/s")
        if run.after_step(step, t.share):  # a periodic checkpoint; a signal on any worker stops every worker
            break
    bar.remove()  # the epoch's summary line replaces its bar
    meter.stop()
    return meter


def _end_of_epoch(t: Training, epoch: int, meter: lifecycle.EpochMeter, progress) -> bool:
    """Metrics and TensorBoard scalars every epoch; checkpoint, grid and loss plot at their cadence and at the end;
    the health monitor's verdict in the row, and its action. True when it rolled the run back."""
    import tensorflow as tf

    from dcgan_cli.images import make_grid, save_image

    cfg, gan, run = t.cfg, t.gan, t.run
    step = t.step
    gan.epoch.assign(epoch + 1)
    saved = run.checkpoint_epoch(epoch, step)
    row = meter.row(epoch + 1, step)
    images = None
    if run.last_epoch(epoch, step) or (epoch + 1) % cfg.sample_every_epochs == 0:
        t.ema.refresh()  # a grid may fall between two checkpoints
        images = t.grid_runner(gan.fixed_z.numpy())  # every worker: the monitor's decision must be the same
    findings = _examine(t, row, images, saved)
    run.log_epoch(row)
    if run.chief:
        grid = None
        if images is not None:
            grid = make_grid(images)
            save_image(rundir.sample_grid_path(run.run_dir, epoch + 1), grid)
            plot_losses(run.run_dir / rundir.METRICS_FILE, run.run_dir / rundir.LOSSES_FILE)
        with t.tb.as_default(step=step):
            for k in t.scalars + ("img_per_s",):
                tf.summary.scalar(k, row[k])
            for k in _HEALTH_SCALARS:
                if row.get(k) is not None:
                    tf.summary.scalar(f"health/{k}", float(row[k]))
            if grid is not None:
                tf.summary.image("samples", grid[None], max_outputs=1)
        t.tb.flush()
    progress.print(
        f"epoch {epoch + 1}/{cfg.epochs} step {step} d_loss {row['d_loss']:.4f} "
        f"g_loss {row['g_loss']:.4f} D(x) {row['d_real']:.3f} D(G(z)) {row['d_fake']:.3f} "
        + (f"p {row['augment_p']:.3f} r_t {row['r_t']:.2f} " if "augment_p" in row else "")
        + f"{row['img_per_s']:.1f} img/s {meter.seconds:.1f}s", fallback=t.log)
    if run.chief and cfg.eval_every_epochs and (epoch + 1) % cfg.eval_every_epochs == 0:
        t.ema.refresh()
        evaluate_epoch(cfg, gan, run.checkpoints.ckpt, run.run_dir, epoch + 1, step, t.log, tb=t.tb, quiet=t.quiet)
    return _act_on_health(t, row, findings, progress) if findings else False


# ----------------------------------------------------------------------------
# the health monitor's hook (the detectors are health.py's): findings, records, --on-collapse

# The monitor's numbers in an epoch's row, also TensorBoard scalars (health/NAME).
_HEALTH_SCALARS = ("healthy", "pixel_diversity", "feature_diversity", "largest_weight")


def _monitor(cfg: TrainConfig, gan: GAN, run_dir: Path) -> health.Monitor:
    """The run's monitor: the real reference (the data's first num_samples images, in shard order) and D's
    penultimate features (the input of its logit layer, in inference mode)."""
    import keras
    import tensorflow as tf

    from dcgan_cli.data.pipeline import labelled_batches

    real = next(labelled_batches(cfg.data, cfg.num_samples))[0]
    D = gan.discriminator
    penultimate = keras.Model(D.inputs, D.get_layer("logit").input)
    spec = tf.TensorSpec([None, cfg.image_size, cfg.image_size, cfg.channels], tf.uint8)

    @tf.function(input_signature=[spec])  # one trace for every check
    def forward(images_u8):
        x = penultimate(to_signed(tf.cast(images_u8, tf.float32)), training=False)
        return tf.reshape(tf.cast(x, tf.float32), [tf.shape(images_u8)[0], -1])

    def features(images_u8: np.ndarray) -> np.ndarray:
        return np.concatenate([forward(images_u8[i:i + 256]).numpy() for i in range(0, len(images_u8), 256)])

    kept = rundir.checkpoint_paths(run_dir / rundir.HEALTHY_DIR) if cfg.on_collapse == "rollback" else []
    return health.Monitor(real, features, lifecycle.WEIGHT_LIMIT, last_healthy=kept[-1] if kept else None)


def _examine(t: Training, row: dict, images, saved: str | None) -> list[health.Finding]:
    """The detectors on the epoch of `row`, whose row gains `healthy` (and, when the grid was drawn, the
    diversities and the largest weight, measured then). A checkpoint of a healthy epoch becomes the last
    healthy one (with --on-collapse rollback kept as RUN/healthy/, the rollback's target)."""
    cfg, run, mon = t.cfg, t.run, t.monitor
    t0 = time.perf_counter()
    measured = mon.measure(images) if images is not None else {}
    largest = lifecycle.largest_weight(run.checkpoints.models) if images is not None else None
    found = mon.examine(row, measured or None, largest)
    row["healthy"] = mon.healthy
    row.update({k: round(v, 4) if np.isfinite(v) else None for k, v in measured.items()})  # None: no real spread
    if largest is not None:
        row.update(largest_weight=round(largest[1], 4), health_seconds=round(time.perf_counter() - t0, 4))
    if saved and mon.healthy:
        mon.last_healthy = saved
        if cfg.on_collapse == "rollback" and run.chief:
            mon.last_healthy = str(rundir.keep_last_good(run.run_dir, saved, rundir.HEALTHY_DIR))
    last = mon.last_healthy and Path(mon.last_healthy).name
    return [health.Finding(kind, what, health.advice(kind, cfg.lr_g, cfg.lr_d, run.resume, last))
            for kind, what in found]


def _act_on_health(t: Training, row: dict, findings: list[health.Finding], progress) -> bool:
    """Report and record the findings (the log, metrics.jsonl's health line, TensorBoard), then --on-collapse:
    warn goes on, stop ends the run, rollback goes back to the last healthy checkpoint (True) or, when it
    cannot, stops."""
    cfg, kept = t.cfg, t.monitor.last_healthy
    for f in findings:
        progress.print(f.line(row["epoch"], row["step"]), fallback=t.log)
    refusal = None
    if cfg.on_collapse == "rollback":
        refusal = "--on-collapse rollback needs one worker" if t.share is not None else _rollback_refusal(t, kept)
        if refusal is None:
            line = _roll_back(t, findings, kept)  # the health line goes after it, at the step it went back to
            _record_health(t, row, findings, step=t.step, action="rollback", from_step=row["step"])
            progress.print(line, fallback=t.log)
            return True
    _record_health(t, row, findings, action="stop" if refusal else cfg.on_collapse)
    if cfg.on_collapse == "warn":
        return False
    _stop(t, findings, refusal or "--on-collapse stop")
    return False  # not reached: _stop raises


def _record_health(t: Training, row: dict, findings: list[health.Finding], **extra) -> None:
    """metrics.jsonl's {"health": ...} line and TensorBoard's health/KIND text (the chief's)."""
    import tensorflow as tf

    if not t.run.chief:
        return
    rundir.append_metrics(t.run.run_dir, {"health": {"epoch": row["epoch"], "step": row["step"], **extra,
                                                     "findings": [f.record() for f in findings]}})
    with t.tb.as_default(step=row["step"]):
        for f in findings:
            tf.summary.text(f"health/{f.kind}", f.line(row["epoch"], row["step"]))
    t.tb.flush()


def _stop(t: Training, findings: list[health.Finding], why: str) -> None:
    """End the run here: checkpointed (the epoch's own, or one now), with the line saying how to go on."""
    run, step = t.run, t.step
    latest = run.checkpoints.latest
    if latest is None or not latest.endswith(f"ckpt-{step}"):
        latest = run.checkpoints.save(step)
        if run.chief:
            rundir.keep_last_good(run.run_dir, latest)
    raise health.TrainingStopped(
        f"training stopped at step {step} ({why}): {'; '.join(f.what for f in findings)}. {Path(latest).name} "
        f"is kept; {findings[0].advice}")


def _roll_back_after_nan(t: Training, error: NonFiniteLoss, progress) -> bool:
    """A NaN/Inf loss under --on-collapse rollback: the last healthy checkpoint with halved rates (True); False
    when rollback is not chosen or not possible (the NaN's own message, with its recovery command, stands)."""
    kept = t.monitor.last_healthy
    if t.cfg.on_collapse != "rollback" or t.share is not None or _rollback_refusal(t, kept) is not None:
        return False
    step = t.step
    found = health.Finding("diverging", f"training diverged: {str(error).split(';')[0]}",
                           health.advice("diverging", t.cfg.lr_g, t.cfg.lr_d, t.run.resume, Path(kept).name))
    row = {"epoch": step // t.run.steps_per_epoch + 1, "step": step}
    progress.print(found.line(row["epoch"], step), fallback=t.log)
    line = _roll_back(t, [found], kept)
    _record_health(t, row, [found], step=t.step, action="rollback", from_step=step)
    progress.print(line, fallback=t.log)
    return True


def _rollback_refusal(t: Training, kept: str | None) -> str | None:
    """Why --on-collapse rollback stops instead, or None: no healthy checkpoint yet, or a rollback to it before
    (lower rates did not help; another would loop)."""
    if kept is None:
        return "--on-collapse rollback: no checkpoint was healthy yet"
    to = int(kept.rsplit("-", 1)[1])
    before = [e for e in rundir.read_history(t.run.run_dir) if e.get("event") == "rollback" and e.get("step") == to]
    if len(before) >= health.ROLLBACKS_PER_CHECKPOINT:
        return (f"--on-collapse rollback: already rolled back to {Path(kept).name} {len(before)} time(s) with lower "
                f"rates, and it went wrong again")
    return None


def _roll_back(t: Training, findings: list[health.Finding], kept: str) -> str:
    """Back to the healthy checkpoint `kept` with both learning rates lowered (health.ROLLBACK_FACTOR), recorded
    in config.json's history; the checkpoints after it are dropped. Returns the line saying so."""
    cfg, run, gan = t.cfg, t.run, t.gan
    step, to = t.step, int(kept.rsplit("-", 1)[1])
    rundir.restore_first_readable(run.checkpoints.ckpt, [kept], Path(kept).parent)
    new = cfg.replace(lr_g=cfg.lr_g * health.ROLLBACK_FACTOR, lr_d=cfg.lr_d * health.ROLLBACK_FACTOR)
    for opt, lr in ((gan.g_opt, new.lr_g), (gan.d_opt, new.lr_d)):
        opt.learning_rate.assign(lr)
    t.cfg, t.ema.at = new, -1
    # ckpt-`to` too: TensorFlow rewrites an existing checkpoint's files in place, which would also change the
    # hard-linked copy in RUN/healthy/ (and last-good/); saved anew, it gets files of its own.
    run.checkpoints.drop_after(to - 1)
    path = run.checkpoints.save(to)  # the newest checkpoint is the healthy one again, for a later --resume
    rundir.keep_last_good(run.run_dir, path)
    changed = {"lr_g": [cfg.lr_g, new.lr_g], "lr_d": [cfg.lr_d, new.lr_d]}
    lifecycle.record(run, new, {"event": "rollback", "step": to, "from_step": step,
                                "because": [f.record() for f in findings], "changed": changed})
    t.monitor.forget_after(to)
    return (f"Health: rolled back from step {step} to {Path(kept).name} (--on-collapse rollback) with both learning "
            f"rates halved (lr-g {cfg.lr_g:.3g} -> {new.lr_g:.3g}, lr-d {cfg.lr_d:.3g} -> {new.lr_d:.3g}: smaller "
            f"steps, the same G/D ratio); recorded in {cfg.FILE}'s history")


@contextmanager
def _loop_errors(strategy, run_dir: Path):
    """What goes wrong in the loop, as one line naming the fix: damaged data, a lost worker."""
    import tensorflow as tf

    from dcgan_cli.runs import distribute

    try:
        yield
    except (DcganError, OSError):
        raise
    except tf.errors.DataLossError as e:  # a shard damaged after its check (or with the same size and time)
        raise DcganError(f"the training data is damaged ({(e.message or '').splitlines()[0][:120]}); check it with "
                         f"`dcgan train --resume {run_dir} --verify-data` or re-run `dcgan preprocess ... --force`"
                         ) from None
    except Exception as e:
        # A dead or stuck worker fails the collectives: say so, and how to resume.
        if (lost := distribute.cluster_failure(e, strategy, run_dir)) is None:
            raise
        raise lost from None


def _export(t: Training) -> None:
    """The end: a generator that loads without this package (the chief's, once all epochs are done)."""
    run = t.run
    if not (run.chief and run.finished(t.step)):
        return
    t.ema.refresh()
    path = run.run_dir / rundir.GENERATOR_FILE
    try:
        rundir.save_generator(t.gan.output_generator, path)
    except OSError as e:
        raise DcganError(describe_os_error(e, f"writing {path} failed")
                         + f"; the checkpoints are intact, and `{run.resume}` writes it again") from None


# ----------------------------------------------------------------------------
# evaluation during training: the score, and RUN/best/


def checkpoints_to_keep(cfg: TrainConfig) -> int:
    """--keep-checkpoints, raised to curves.EVAL_KEEP_CHECKPOINTS with --eval-every-epochs so that
    `dcgan evaluate --all-checkpoints` has a curve to draw."""
    from dcgan_cli.metrics.curves import EVAL_KEEP_CHECKPOINTS

    return max(cfg.keep_checkpoints, EVAL_KEEP_CHECKPOINTS) if cfg.eval_every_epochs else cfg.keep_checkpoints


def evaluate_epoch(cfg: TrainConfig, gan: GAN, ckpt, run_dir: str | Path, epoch: int, step: int,
                   log: Callable[[str], None] = print, *, tb=None, quiet: bool = False) -> dict:
    """Score `gan.output_generator` (evaluate.py), log it, and keep the best checkpoint in RUN/best/.

    The score that decides "best" is FID, or KID when FID is refused (fewer
    than 2,048 samples or real images); lower is better. RUN/best/ holds a
    checkpoint of the whole training state, the generator as best/generator.keras
    (stock layers, like RUN/generator.keras) and best.json (which score, epoch, step).
    """
    import tensorflow as tf
    from rich import get_console

    from dcgan_cli.metrics.evaluate import EvalOptions, evaluate_generator, summary
    from dcgan_cli.metrics import extractors

    opts = EvalOptions(samples=cfg.eval_samples, seed=cfg.seed)
    log(f"evaluating epoch {epoch}: {cfg.eval_samples:,} samples")
    result = evaluate_generator(gan.output_generator, cfg.data, opts, progress=not quiet, console=get_console(),
                                log=log)
    metric = "fid" if result.get("fid") is not None else "kid"
    score = result[metric]

    best = rundir.read_best(run_dir)
    improved = best is None or best.get("metric") != metric or score < best["value"]
    if improved:
        best_dir = rundir.save_best(run_dir, ckpt, gan.output_generator,
                                    {"metric": metric, "value": score, "epoch": epoch, "step": step}, step)
    result.update(epoch=epoch, step=step, best=improved)
    rundir.append_metrics(run_dir, {"eval": result})
    if tb is not None:
        with tb.as_default(step=step):
            for k in ("fid", "kid", "precision_k3", "recall_k3", "density_k3", "coverage_k3"):
                if result.get(k) is not None:
                    tf.summary.scalar(f"eval/{k}", result[k])
        tb.flush()
    skipped = f" (no FID: under {extractors.spec(opts.extractor).dim:,} images)" if "fid_skipped" in result else ""
    log(f"eval epoch {epoch} step {step}: {summary(result)}{skipped}, {result['seconds']:.0f}s"
        + (f"; new best -> {best_dir}" if improved else f"; best is still epoch {best['epoch']}"))
    return result
