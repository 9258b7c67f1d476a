"""The DCGAN training loop: GradientTape steps, checkpoints, per-epoch outputs.

Reads top to bottom: `train()` sets up (strategy, data, models, checkpoint),
then loops over epochs and steps; the step itself is `make_train_step()`.

Randomness is stateless and keyed by (seed, step): the noise z, label
smoothing, instance noise and flips of step k are the same whether the run was
resumed or not, and whatever the number of replicas. The step counter in the
checkpoint is therefore the whole RNG state.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.config import TrainConfig
from dcgan_cli.errors import DcganError, TrainingInterrupted
from dcgan_cli import rundir
from dcgan_cli.fsutil import atomic_path, describe_os_error

# Stream ids folded into the per-step seed, one per kind of randomness.
_Z, _LABELS, _NOISE_STD, _NOISE, _FLIP = range(5)


class NonFiniteLoss(DcganError):
    """A loss became NaN/Inf, or the weights blew up; nothing is checkpointed, the last good checkpoint is kept."""


# Trainable weights past this size are not a model any more (DCGAN's start at N(0, 0.02); Adam at a
# sane rate moves each by about the rate per step): a checkpoint of them would only lead to NaN again.
WEIGHT_LIMIT = 1e4


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

        parts = dict(generator=self.generator, discriminator=self.discriminator, g_opt=adam(self.g_opt),
                     d_opt=adam(self.d_opt), step=self.step, epoch=self.epoch, fixed_z=self.fixed_z)
        if self.g_ema is not None:
            parts["g_ema"] = self.g_ema
        return tf.train.Checkpoint(**parts)


def build_gan(cfg: TrainConfig, precision: str = "fp32") -> GAN:
    """Models, optimizers and counters; call inside `strategy.scope()`."""
    import keras
    import tensorflow as tf

    from dcgan_cli.model import build_discriminator, build_generator

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
    return GAN(generator, discriminator, g_ema, g_opt, d_opt, step, epoch, fixed_z)


# ----------------------------------------------------------------------------
# the step


def make_train_step(cfg: TrainConfig, gan: GAN, strategy, precision: str) -> Callable:
    """One D and one G update per call, sharing the generator's forward pass.

    Returns a tf.function: uint8 batch (distributed) -> dict of float32 scalars.
    Losses are per-example BCE on logits averaged over the *global* batch, so
    gradients summed over replicas equal the single-device ones.
    """
    import tensorflow as tf

    B, nz = cfg.batch_size, cfg.latent_dim
    G, D, g_opt, d_opt = gan.generator, gan.discriminator, gan.g_opt, gan.d_opt
    fp16 = precision == "fp16"

    def bce(labels, logits):  # (b, 1) -> (b,)
        return tf.reshape(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), [-1])

    def replica_step(real_u8, step):
        ctx = tf.distribute.get_replica_context()
        b = tf.shape(real_u8)[0]
        lo = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * b  # this replica's rows of the global batch

        def rand(kind, shape, fn=tf.random.stateless_normal, **kw):
            # Drawn for the global batch, then sliced: identical across replica counts.
            seed = tf.stack([tf.cast(cfg.seed, tf.int64) * 8 + kind, step])
            return fn(shape, seed=seed, **kw)

        z = rand(_Z, [B, nz])[lo:lo + b]
        real = tf.cast(real_u8, tf.float32) / 127.5 - 1.0  # uint8 -> [-1, 1]
        if cfg.flip:
            flip = rand(_FLIP, [B], tf.random.stateless_uniform)[lo:lo + b] < 0.5
            real = tf.where(flip[:, None, None, None], tf.reverse(real, axis=[2]), real)
        if cfg.instance_noise > 0:
            std = rand(_NOISE_STD, [], tf.random.stateless_uniform, minval=0.0, maxval=cfg.instance_noise)
            real = real + std * rand(_NOISE, [B, cfg.image_size, cfg.image_size, cfg.channels])[lo:lo + b]
        real_labels = 1.0 - rand(_LABELS, [B, 1], tf.random.stateless_uniform,
                                 minval=0.0, maxval=cfg.label_smoothing)[lo:lo + b]

        def d_loss_of(real_logits, fake_logits):
            per_example = bce(real_labels, real_logits) + bce(tf.zeros_like(fake_logits), fake_logits)
            return tf.nn.compute_average_loss(per_example, global_batch_size=B)

        def g_loss_of(fake_logits):  # non-saturating: -log D(G(z))
            return tf.nn.compute_average_loss(bce(tf.ones_like(fake_logits), fake_logits), global_batch_size=B)

        if cfg.alternate:
            # D first; then G's loss through the D just updated on this batch (the
            # PyTorch example's order): one more D forward than the shared step.
            with tf.GradientTape() as g_tape:
                fake = G(z, training=True)
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
                fake = G(z, training=True)  # one generator forward serves both losses
                real_logits = D(real, training=True)
                fake_logits = D(fake, training=True)
                d_loss, g_loss = d_loss_of(real_logits, fake_logits), g_loss_of(fake_logits)
                if fp16:
                    d_scaled, g_scaled = d_opt.scale_loss(d_loss), g_opt.scale_loss(g_loss)
            d_grads = d_tape.gradient(d_scaled if fp16 else d_loss, D.trainable_variables)
            g_grads = g_tape.gradient(g_scaled if fp16 else g_loss, G.trainable_variables)
            d_opt.apply(d_grads, D.trainable_variables)
            g_opt.apply(g_grads, G.trainable_variables)
        inv_b = 1.0 / B
        return {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_real": tf.reduce_sum(tf.sigmoid(real_logits)) * inv_b,  # mean D(x) over the global batch
            "d_fake": tf.reduce_sum(tf.sigmoid(fake_logits)) * inv_b,  # mean D(G(z))
        }

    # The EMA averages the weights only; its batch-norm statistics are its own,
    # recomputed before every use (`standing_statistics`), not the live model's.
    ema_pairs = list(zip(gan.g_ema.trainable_variables, G.trainable_variables)) if gan.g_ema is not None else []
    replica_fn = tf.function(replica_step, jit_compile=cfg.xla) if cfg.xla else replica_step

    @tf.function
    def train_step(batch):
        out = strategy.run(replica_fn, args=(batch, gan.step.read_value()))
        out = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}
        if ema_pairs:
            decay = ema_decay(cfg.ema, gan.step)
            for e, w in ema_pairs:
                e.assign(decay * e + (1.0 - decay) * tf.cast(w, e.dtype))
        gan.step.assign_add(1)
        return out

    return train_step


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
    draws washed-out, low-contrast images (issue 12). Here every batch-norm
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
# checkpoints


def all_finite(variables) -> bool:
    import tensorflow as tf

    return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in variables if "float" in str(v.dtype))


def weight_problem(models) -> str | None:
    """Why these models' weights must not be saved (NaN/Inf anywhere, or a trainable |w| > WEIGHT_LIMIT), or None."""
    import tensorflow as tf

    for model in models:
        trainable = {id(v) for v in model.trainable_variables}
        for v in model.variables:
            if "float" not in str(v.dtype):
                continue
            if not bool(tf.reduce_all(tf.math.is_finite(v))):
                return f"{v.path} is not finite"
            if id(v) in trainable:
                biggest = float(tf.reduce_max(tf.abs(v)))
                if biggest > WEIGHT_LIMIT:
                    return f"{v.path} reached |w| = {biggest:.3g} (over {WEIGHT_LIMIT:g}: the weights are exploding)"
    return None


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
# the loop


def check_data(cfg: TrainConfig, manifest: dict) -> None:
    """The data's shape must be the config's; the error names the flags that make such data."""
    if (manifest["size"], manifest["channels"]) != (cfg.image_size, cfg.channels):
        flags = [f"--size {cfg.image_size}"] if manifest["size"] != cfg.image_size else []
        flags += [f"--channels {cfg.channels}"] if manifest["channels"] != cfg.channels else []
        raise DcganError(
            f"the data is {manifest['size']}x{manifest['size']}x{manifest['channels']} but the config wants "
            f"{cfg.image_size}x{cfg.image_size}x{cfg.channels}; preprocess again with "
            f"`dcgan preprocess SOURCE {' '.join(flags)}`")


def train(
    cfg: TrainConfig,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
    quiet: bool = False,
    max_steps: int | None = None,
    verify_data: bool = False,
) -> Path:
    """Train `cfg` into `run_dir` (a new numbered one when None); returns the run dir.

    With `resume`, `run_dir` must hold a checkpoint and `cfg` may differ from
    its saved config only in `rundir.RESUMABLE` fields (and the data's place);
    training continues at its exact step and epoch, and what changed goes into
    config.json's history. With `cfg.eval_every_epochs`, what evaluation needs is
    checked before any training. The shards are checked against their manifest
    first (hashes too with `verify_data`, or when they changed since the last
    check), and the run directory is locked while training. `max_steps` stops
    early (benchmarks, tests).
    """
    from dcgan_cli import distribute
    from dcgan_cli.evaluate import preflight_training
    from dcgan_cli.resources import check_training_memory
    from dcgan_cli.shards import load_manifest, verify_shards

    # -- setup: every rule checked before anything is written ---------------
    saved = None
    if resume:
        if run_dir is None:
            raise DcganError("resuming needs the run directory to continue; pass it (`dcgan train --resume RUN`)")
        saved = rundir.load_config(run_dir)  # refuses a folder that is not a run, before locking it
    manifest = load_manifest(cfg.data)
    check_data(cfg, manifest)
    verify_shards(cfg.data, manifest, full=verify_data, log=log)
    check_training_memory(cfg, log=log)
    cfg = cfg.with_cadence(manifest["count"])  # auto checkpoint/sample cadence -> epochs, saved in config.json
    preflight_training(cfg, log=log)
    strategy = distribute.make_strategy(cfg.strategy)
    chief = distribute.is_chief(strategy)
    precision = resolve_precision(cfg.precision)
    n_rep = strategy.num_replicas_in_sync
    if cfg.batch_size % n_rep:
        raise DcganError(f"batch size {cfg.batch_size} does not split over {n_rep} replicas; use a multiple of {n_rep}")

    new_run = run_dir is None
    if new_run:
        data_name = Path(str(cfg.data).rstrip("/")).name or "data"
        run_name = "-".join(filter(None, [data_name, cfg.preset, cfg.run_name]))
        # The chief numbers the run; the other workers learn its path (distribute.py).
        try:
            run_dir = distribute.shared_run_dir(strategy, lambda: rundir.new_run_dir(cfg.runs_dir, run_name))
        except OSError as e:
            raise DcganError(describe_os_error(e, f"cannot create a run directory under {cfg.runs_dir}")) from None
    run_dir = Path(run_dir)
    if not resume and chief:  # a caller's own fresh run dir (benchmarks, Python users) is made here
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DcganError(describe_os_error(e, f"cannot create the run directory {run_dir}")) from None
    # One writer per run: a second `train --resume` of it is refused, naming this process.
    lock = rundir.lock_run(run_dir) if chief else None
    try:
        try:
            if resume:
                if chief:  # a damaged index rebuilt from the files, a kill's ckpt-N_temp folders removed
                    rundir.repair_checkpoints(run_dir / rundir.CKPT_DIR, warn=lambda m: log(f"Warning: {m}"))
                rundir.check_resume(run_dir, cfg)
            return _train_locked(cfg, run_dir, saved, manifest, log, quiet, max_steps, strategy, precision)
        except OSError as e:  # config.json, a grid, metrics, the plot: the checkpoints written so far are intact
            resumable = rundir.checkpoint_paths(run_dir / rundir.CKPT_DIR)
            raise DcganError(describe_os_error(e, "writing the run failed")
                             + (f"; then continue: dcgan train --resume {run_dir}" if resumable else "")) from None
    except BaseException:
        # A new run that failed before its first checkpoint holds nothing worth keeping.
        if new_run and chief and not rundir.checkpoint_paths(run_dir / rundir.CKPT_DIR):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            lock.release()


def _train_locked(cfg: TrainConfig, run_dir: Path, saved: TrainConfig | None, manifest: dict, log, quiet: bool,
                  max_steps: int | None, strategy, precision: str) -> Path:
    """The training itself, holding the run's lock; `saved` is the run's config before a resume (None: new run)."""
    import tensorflow as tf

    from dcgan_cli import distribute
    from dcgan_cli.images import make_grid, save_image
    from dcgan_cli.pipeline import make_dataset
    from dcgan_cli.progress import Bars
    from dcgan_cli.sampling import Sampler
    from dcgan_cli.shards import data_id

    resume = saved is not None
    chief = distribute.is_chief(strategy)
    several_workers = distribute.num_workers(strategy) > 1  # decided once, not per step
    # Non-chief workers write to a scratch dir (the multi-worker guide's rule).
    out_dir = distribute.output_dir(strategy, run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    this_data = data_id(manifest)
    if chief and not resume:
        rundir.save_config(run_dir, cfg, {"event": "start", "data": cfg.data, "data_id": this_data})
        (run_dir / rundir.SAMPLES_DIR).mkdir(exist_ok=True)

    with strategy.scope():
        gan = build_gan(cfg, precision)
    ckpt = gan.checkpoint()
    ckpt_dir = out_dir / rundir.CKPT_DIR
    manager = tf.train.CheckpointManager(ckpt, str(ckpt_dir), max_to_keep=cfg.keep_checkpoints)
    # Every worker resumes from the chief's checkpoints (non-chief ones only save to scratch).
    restored = None
    if resume:
        source = ckpt_dir if chief else distribute.checkpoint_dir_to_restore(run_dir, rundir.CKPT_DIR)
        paths = rundir.checkpoint_paths(source) or rundir.checkpoint_paths(run_dir / rundir.LAST_GOOD_DIR)
        where = source if rundir.checkpoint_paths(source) else run_dir / rundir.LAST_GOOD_DIR
        restored = rundir.restore_first_readable(ckpt, paths, where, warn=lambda m: log(f"Warning: {m}"))
        if restored is None:
            raise DcganError(f"{run_dir} has no checkpoint to resume from; start a new run without --resume")
    # The config is the truth: a checkpoint restores the optimizers' learning rates too.
    for opt, lr in ((gan.g_opt, cfg.lr_g), (gan.d_opt, cfg.lr_d)):
        opt.learning_rate.assign(lr)

    steps_per_epoch = cfg.epoch_steps(manifest["count"])
    total_steps = steps_per_epoch * cfg.epochs
    step0 = int(gan.step.numpy())
    start_epoch = step0 // steps_per_epoch
    if restored:
        where = (f"epoch {start_epoch + 1}/{cfg.epochs}" if step0 < total_steps
                 else f"all {cfg.epochs} epochs done")
        log(f"Resumed from {restored} at step {step0} ({where})")
        changes = rundir.resume_changes(saved, cfg)
        if changes:
            log("Changed on resume (recorded in config.json's history): "
                + ", ".join(f"{k.replace('_', '-')} {a} -> {b}" for k, a, b in
                            ((k, *v) for k, v in changes.items())))
        event = {"event": "resume", "step": step0, "changed": changes, "data_id": this_data}
        before = rundir.recorded_data_id(run_dir)
        if before is not None and before != this_data:
            log(f"Warning: {cfg.data} is not the data this run trained on so far (same shape, other images: "
                f"data id {this_data}, was {before}); training goes on with it, and config.json's history says so")
            event["data_changed_from"] = before
        if chief:
            rundir.save_config(run_dir, cfg, event)
            rundir.forget_metrics_after(run_dir, step0)  # epochs after the checkpoint are trained (and logged) again
    if step0 >= total_steps:
        log(f"Nothing to do: step {step0} already reaches {cfg.epochs} epochs; raise --epochs to train more")

    def batches(first_epoch: int, skip: int):
        # One pipeline for the rest of the run: epoch e shuffled by (seed, e), the
        # steps already taken skipped, so a resumed run sees the same batches as
        # an uninterrupted one; batches flow on across epoch ends.
        def fn(ctx):
            # One step takes one per-replica batch per local replica.
            local = ctx.num_replicas_in_sync // ctx.num_input_pipelines
            ds = make_dataset(cfg.data, cfg.batch_size, seed=cfg.seed * 100_003, cache=cfg.cache, input_context=ctx,
                              epochs=(first_epoch, cfg.epochs), batches_per_epoch=steps_per_epoch * local)
            return ds.skip(skip * local)
        return iter(strategy.distribute_datasets_from_function(fn))

    train_step = make_train_step(cfg, gan, strategy, precision)
    tb = tf.summary.create_file_writer(str(out_dir / rundir.TENSORBOARD_DIR))
    grid_runner = Sampler(gan.output_generator, batch_size=cfg.num_samples)  # one trace for every epoch's grid

    stop_signal: list[int] = []

    def on_signal(signum, frame):
        if stop_signal:  # a second Ctrl-C: leave now
            raise KeyboardInterrupt
        stop_signal.append(signum)

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    ema_stats_at = [-1]  # the step whose EMA batch-norm statistics are current

    def refresh_ema_statistics() -> None:
        """Batch-norm statistics that fit the EMA weights, before anything reads them (once a step)."""
        if gan.g_ema is not None and ema_stats_at[0] != int(gan.step.numpy()):
            standing_statistics(gan.g_ema, cfg.seed)
            ema_stats_at[0] = int(gan.step.numpy())

    def save_checkpoint(reason: str) -> str:
        step = int(gan.step.numpy())
        problem = weight_problem([m for m in (gan.generator, gan.discriminator, gan.g_ema) if m is not None])
        if problem:
            raise NonFiniteLoss(f"not checkpointing step {step}: {problem}; "
                                f"{recovery_advice(cfg, run_dir, manager.latest_checkpoint)}")
        # Every checkpoint holds EMA statistics that fit the EMA weights, so generator.keras,
        # best/, `sample`, `evaluate` and `export` all see them.
        refresh_ema_statistics()
        existed = f"{ckpt_dir}/ckpt-{step}" in manager.checkpoints
        try:
            return manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as e:  # disk full, read-only, quota: the earlier checkpoints stay
            if not existed:
                rundir.remove_partial_checkpoint(ckpt_dir, step)
            reason = getattr(e, "strerror", None) or getattr(e, "message", None) or str(e)
            raise DcganError(f"writing checkpoint ckpt-{step} into {ckpt_dir} failed ({reason.splitlines()[0]}); "
                             f"free some space there or make it writable, then continue from "
                             f"{Path(manager.latest_checkpoint or 'no checkpoint').name}: "
                             f"dcgan train --resume {run_dir}") from None

    # -- loop ----------------------------------------------------------------
    try:
        progress = Bars(not quiet).start()
        data = batches(start_epoch, step0 - start_epoch * steps_per_epoch) if step0 < total_steps else None
        for epoch in range(start_epoch, cfg.epochs):
            step_in_epoch = int(gan.step.numpy()) - epoch * steps_per_epoch
            if step_in_epoch >= steps_per_epoch:
                continue
            sums = {"d_loss": 0.0, "g_loss": 0.0, "d_real": 0.0, "d_fake": 0.0}
            n, t0 = 0, time.perf_counter()
            bar = progress.task(f"epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch, step_in_epoch)
            for _ in range(step_in_epoch, steps_per_epoch):
                out = {k: float(v) for k, v in train_step(next(data)).items()}
                step = int(gan.step.numpy())
                if not (np.isfinite(out["d_loss"]) and np.isfinite(out["g_loss"])):
                    raise NonFiniteLoss(
                        f"loss became {'NaN' if np.isnan(out['d_loss'] + out['g_loss']) else 'Inf'} at step {step} "
                        f"(epoch {epoch + 1}); stopped without checkpointing: "
                        f"{recovery_advice(cfg, run_dir, manager.latest_checkpoint)}")
                for k in sums:
                    sums[k] += out[k]
                n += 1
                bar.advance(1, f"d {out['d_loss']:.3f} g {out['g_loss']:.3f} D(x) {out['d_real']:.2f} "
                               f"D(G(z)) {out['d_fake']:.2f} {cfg.batch_size * n / (time.perf_counter() - t0):.0f} img/s")
                if cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0 and step % steps_per_epoch:
                    save_checkpoint("periodic")
                # A signal on any worker stops every worker after the same step.
                if several_workers and distribute.any_worker(strategy, bool(stop_signal)) and not stop_signal:
                    stop_signal.append(signal.SIGTERM)  # it came to another worker
                if stop_signal or (max_steps is not None and step >= max_steps):
                    break
            bar.remove()  # the epoch's summary line replaces its bar
            seconds = time.perf_counter() - t0
            step = int(gan.step.numpy())
            epoch_done = step % steps_per_epoch == 0 and step > 0

            if stop_signal:
                path = save_checkpoint("interrupt")
                name = signal.Signals(stop_signal[0]).name
                raise TrainingInterrupted(
                    f"{name} at step {step}: checkpoint written to {path}. "
                    f"Continue with: dcgan train --resume {run_dir}")
            if not epoch_done:  # max_steps reached mid-epoch
                save_checkpoint("stop")
                break

            # -- end of epoch: metrics and TensorBoard scalars every epoch; checkpoint,
            # grid and loss plot every cfg.checkpoint_every_epochs / cfg.sample_every_epochs epochs and at the end
            gan.epoch.assign(epoch + 1)
            last = epoch + 1 == cfg.epochs or (max_steps is not None and step >= max_steps)
            if last or (epoch + 1) % cfg.checkpoint_every_epochs == 0:
                saved_path = save_checkpoint("epoch")
                if chief:  # checked sane by save_checkpoint: the one periodic saves never rotate out
                    rundir.keep_last_good(run_dir, saved_path)
            row = {"epoch": epoch + 1, "step": step, **{k: v / max(n, 1) for k, v in sums.items()},
                   "img_per_s": round(cfg.batch_size * n / seconds, 2), "seconds": round(seconds, 3)}
            if chief:
                rundir.append_metrics(run_dir, row)
                sample = last or (epoch + 1) % cfg.sample_every_epochs == 0
                if sample:
                    refresh_ema_statistics()  # a grid may fall between two checkpoints
                    grid = make_grid(grid_runner(gan.fixed_z.numpy()))
                    save_image(rundir.sample_grid_path(run_dir, epoch + 1), grid)
                    plot_losses(run_dir / rundir.METRICS_FILE, run_dir / rundir.LOSSES_FILE)
                with tb.as_default(step=step):
                    for k in sums:
                        tf.summary.scalar(k, row[k])
                    tf.summary.scalar("img_per_s", row["img_per_s"])
                    if sample:
                        tf.summary.image("samples", grid[None], max_outputs=1)
                tb.flush()
            progress.print(
                f"epoch {epoch + 1}/{cfg.epochs} step {step} d_loss {row['d_loss']:.4f} "
                f"g_loss {row['g_loss']:.4f} D(x) {row['d_real']:.3f} D(G(z)) {row['d_fake']:.3f} "
                f"{row['img_per_s']:.1f} img/s {seconds:.1f}s", fallback=log)
            if chief and cfg.eval_every_epochs and (epoch + 1) % cfg.eval_every_epochs == 0:
                refresh_ema_statistics()
                evaluate_epoch(cfg, gan, ckpt, run_dir, epoch + 1, step, log, tb=tb, quiet=quiet)
            if max_steps is not None and step >= max_steps:
                break
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
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        if "progress" in locals():
            progress.stop()
        distribute.remove_scratch(out_dir, run_dir)

    # -- the end: a generator that loads without this package --------------
    if chief and int(gan.step.numpy()) >= total_steps:
        refresh_ema_statistics()
        try:
            rundir.save_generator(gan.output_generator, run_dir / rundir.GENERATOR_FILE)
        except OSError as e:
            raise DcganError(describe_os_error(e, f"writing {run_dir / rundir.GENERATOR_FILE} failed")
                             + f"; the checkpoints are intact, and `dcgan train --resume {run_dir}` writes it "
                               f"again") from None
    return run_dir


# ----------------------------------------------------------------------------
# evaluation during training: the score, and RUN/best/


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

    from dcgan_cli.evaluate import EvalOptions, evaluate_generator, summary
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
            for k in ("fid", "kid"):
                if result.get(k) is not None:
                    tf.summary.scalar(f"eval/{k}", result[k])
        tb.flush()
    skipped = f" (no FID: under {extractors.spec(opts.extractor).dim:,} images)" if "fid_skipped" in result else ""
    log(f"eval epoch {epoch} step {step}: {summary(result)}{skipped}, {result['seconds']:.0f}s"
        + (f"; new best -> {best_dir}" if improved else f"; best is still epoch {best['epoch']}"))
    return result
