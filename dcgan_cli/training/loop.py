"""The DCGAN training loop: `train()` checks everything and places the run; `_loop()` runs it.

`_loop` reads top to bottom in the order things happen, under headed blocks: restore or start;
each step (a periodic checkpoint when due; a signal or max_steps leaves the epoch); end of epoch:
checkpoint, sample grid, health, metrics, evaluation, the health monitor's response; export.
Every checkpoint write is seen there. The step itself is gan/step.py's (`make_train_step`); what
happens when training goes wrong (warn, stop, roll back) is gan/on_collapse.py's; what both trainers
share (the run's lock, signals, the resume rule and bookkeeping, metrics lines) is runs/lifecycle.py's,
and everything about checkpoints runs/checkpoints.py's.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.config import TrainConfig
from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import atomic_path, describe_os_error
from dcgan_cli.gan import health, on_collapse
from dcgan_cli.gan.generator_io import save_generator
from dcgan_cli.gan.step import GAN, EmaStatistics, augmenting, build_gan, make_train_step, resolve_precision
from dcgan_cli.runs import checkpoints, layout, lifecycle
from dcgan_cli.runs.checkpoints import NonFiniteLoss


# ----------------------------------------------------------------------------
# the loop: train() checks and places the run, then _loop() restores or starts, trains the epochs, exports


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
    from dcgan_cli.data.shards import check_shape, load_manifest, verify_shards
    from dcgan_cli.metrics.evaluate import preflight_training
    from dcgan_cli.resources import check_training_memory
    from dcgan_cli.runs import distribute

    lifecycle.check_call(run_dir, resume)
    # -- setup: every rule checked before anything is written ---------------
    saved_cfg = layout.load_config(resume) if resume is not None else None  # refuses a non-run before locking it
    manifest = load_manifest(cfg.data)
    check_shape(manifest, cfg.image_size, cfg.channels)
    verify_shards(cfg.data, manifest, full=verify_data, log=log)
    check_training_memory(cfg, log=log)
    # auto checkpoint/sample cadence -> epochs, augment auto -> a mode, saved in config.json
    cfg = cfg.with_cadence(manifest["count"]).with_augment(manifest["count"])
    preflight_training(cfg, log=log)
    strategy = distribute.make_strategy(cfg.strategy)
    on_collapse.check_workers(cfg, distribute.num_workers(strategy))
    n_rep = strategy.num_replicas_in_sync
    if cfg.batch_size % n_rep:
        raise DcganError(f"batch size {cfg.batch_size} does not split over {n_rep} replicas; use a multiple of {n_rep}")
    labels = _label_table(cfg, manifest, resume)
    setup = Setup(cfg, saved_cfg, manifest, strategy, resolve_precision(cfg.precision), log, quiet, max_steps, labels)

    # -- the run directory: the chief numbers it, the other workers learn its path (distribute.py)
    chief = distribute.is_chief(strategy)
    run_dir, new = lifecycle.place_run(cfg, lifecycle.run_name(cfg.data, cfg.preset, cfg.run_name), run_dir, resume,
                                       chief=chief, share=lambda make: distribute.shared_run_dir(strategy, make))
    with lifecycle.hold(run_dir, cfg, new=new, chief=chief):
        if saved_cfg is not None:
            lifecycle.reopen(run_dir, cfg, log, chief=chief)
        return _loop(setup, run_dir)


@dataclass(frozen=True)
class Setup:
    """What train() checked and decided before the run directory was touched."""

    cfg: TrainConfig
    saved_cfg: TrainConfig | None  # the run's config before a resume; None: a new run
    manifest: dict
    strategy: object
    precision: str  # resolved: fp32, bf16 or fp16
    log: Callable[[str], None]
    quiet: bool
    max_steps: int | None
    labels: object | None = None  # a conditional run's LabelTable (data/conditions.py)


def _label_table(cfg: TrainConfig, manifest: dict, resume):
    """A conditional run's labels: read from the data when it starts, from RUN/condition.json when it resumes."""
    from dcgan_cli.data import conditions

    if not cfg.condition:
        return None
    if cfg.eval_every_epochs:
        raise DcganError("--eval-every-epochs does not score a conditional run yet; leave it out with --condition")
    condition = conditions.resolve(cfg.condition, manifest, cfg.data)
    if resume is not None and (table := conditions.load_table(Path(resume) / conditions.CONDITION_FILE)):
        return table
    return conditions.read_table(cfg.data, manifest, condition)


@dataclass
class Training:
    """What the loop works with: the config, the models, the run, and the per-step machinery."""

    cfg: TrainConfig  # the run's config; a rollback lowers its rates
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


_SCALARS = ("d_loss", "g_loss", "d_real", "d_fake")  # what a step returns, logged every epoch
_AUGMENT_SCALARS = ("augment_p", "r_t")  # and with augmentation: the epoch's mean p and r_t


def _loop(s: Setup, run_dir: Path) -> Path:
    """The training itself, holding the run's lock, in the order it happens."""
    from dcgan_cli.progress import Bars
    from dcgan_cli.runs import distribute

    out_dir = distribute.output_dir(s.strategy, run_dir)  # non-chief workers write to a scratch dir
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        # -- restore or start ---------------------------------------------------------------------
        t = _restore_or_start(s, run_dir, out_dir)
        run = t.run
        with run.signals, Bars(not s.quiet) as progress, _loop_errors(s.strategy, run_dir):
            data = _batches(t.cfg, s.strategy, run, t.step, s.labels) if not run.finished(t.step) else None
            epoch = run.epochs_from(t.step).start
            while epoch < run.epochs:
                # -- each step ----------------------------------------------------------------------
                meter = lifecycle.EpochMeter(t.scalars, t.cfg.batch_size)
                bar = progress.task(f"epoch {epoch + 1}/{run.epochs}", run.steps_per_epoch,
                                    run.steps_left(epoch, t.step).start)
                try:
                    for _ in run.steps_left(epoch, t.step):
                        out = _step(t, next(data), epoch)  # NonFiniteLoss on a NaN/Inf loss
                        meter.add(out)
                        bar.advance(1, _bar_line(out, meter))
                        if run.checkpoint_due(t.step):  # --checkpoint-every-steps
                            run.checkpoints.save(t.step)
                        if run.leave_epoch(t.step, t.share):  # a signal (on any worker), or max_steps
                            break
                except NonFiniteLoss as e:  # --on-collapse rollback: back to a healthy step; else the error stands
                    if not on_collapse.respond(t, *on_collapse.diverged(t, e), progress, nan=True):
                        raise
                    data, epoch = _batches(t.cfg, s.strategy, run, t.step, s.labels), run.epochs_from(t.step).start
                    continue
                bar.remove()  # the epoch's summary line replaces its bar
                meter.stop()
                # -- left mid-epoch: checkpoint; a signal raises TrainingInterrupted, max_steps ends ----
                if not run.epoch_complete(t.step):
                    run.save_and_stop(t.step)
                    break
                # -- end of epoch: checkpoint (kept as last-good/) ----------------------------------
                t.gan.epoch.assign(epoch + 1)
                ckpt_path = run.save_last_good(t.step) if run.epoch_checkpoint_due(epoch, t.step) else None
                # -- end of epoch: the sample grid (every worker: the monitor must decide alike) ------
                row = meter.row(epoch + 1, t.step)
                images = _grid_images(t) if run.last_epoch(epoch, t.step) \
                    or (epoch + 1) % t.cfg.sample_every_epochs == 0 else None
                # -- end of epoch: health, metrics, the grid's files, TensorBoard, the line -----------
                findings = on_collapse.examine(t, row, images, ckpt_path)
                run.log_epoch(row)
                if run.chief:
                    _write_epoch(t, epoch, row, images)
                progress.print(_epoch_line(t, epoch, row, meter), fallback=t.log)
                # -- end of epoch: evaluation, RUN/best/ ------------------------------------------------
                if run.chief and t.cfg.eval_every_epochs and (epoch + 1) % t.cfg.eval_every_epochs == 0:
                    t.ema.refresh()
                    evaluate_epoch(t.cfg, t.gan, run.checkpoints.ckpt, run_dir, epoch + 1, t.step, t.log, tb=t.tb,
                                   quiet=t.quiet)
                # -- end of epoch: the health monitor's response (warn, stop, roll back) --------------
                if findings and on_collapse.respond(t, row, findings, progress):  # rolled back
                    data, epoch = _batches(t.cfg, s.strategy, run, t.step, s.labels), run.epochs_from(t.step).start
                    continue
                if run.reached_max(t.step):
                    break
                epoch += 1
    finally:
        distribute.remove_scratch(out_dir, run_dir)
    # -- export -------------------------------------------------------------------------------------
    _export(t)
    return run_dir


def _restore_or_start(s: Setup, run_dir: Path, out_dir: Path) -> Training:
    """The models built (and restored on resume), the run's bookkeeping written, the step and its writers made."""
    import tensorflow as tf

    from dcgan_cli.data.shards import data_id
    from dcgan_cli.generate.sampling import Sampler
    from dcgan_cli.runs import distribute

    cfg, strategy = s.cfg, s.strategy
    chief = distribute.is_chief(strategy)
    with strategy.scope():
        gan = build_gan(cfg, s.precision, s.labels)
    ema = EmaStatistics(gan, cfg.seed)
    resume_command = lifecycle.resume_command(cfg, run_dir)
    # Every checkpoint holds EMA statistics that fit the EMA weights, so generator.keras, best/,
    # `sample`, `evaluate` and `export` all see them.
    ckpts = checkpoints.Checkpoints(
        gan.checkpoint(), out_dir / layout.CKPT_DIR, run_dir, keep=checkpoints_to_keep(cfg),
        resume_command=resume_command, models=[m for m in (gan.generator, gan.discriminator, gan.g_ema) if m],
        advice=lambda last: recovery_advice(cfg, run_dir, last), before_save=ema.refresh)
    run = lifecycle.Run(run_dir, resume_command, cfg.epoch_steps(s.manifest["count"]), cfg.epochs, ckpts,
                        s.max_steps, chief, cfg.checkpoint_every_steps, cfg.checkpoint_every_epochs)
    this_data = data_id(s.manifest)
    if s.saved_cfg is None:
        lifecycle.record(run, cfg, {"event": "start", "data": cfg.data, "data_id": this_data})
        if chief:
            (run_dir / layout.SAMPLES_DIR).mkdir(exist_ok=True)
            if s.labels is not None:
                from dcgan_cli.data.conditions import CONDITION_FILE

                s.labels.save(run_dir / CONDITION_FILE)
    else:  # every worker resumes from the chief's checkpoints (the others only save to scratch)
        source = ckpts.directory if chief else distribute.checkpoint_dir_to_restore(run_dir, layout.CKPT_DIR)
        restored = ckpts.restore(source, s.log)
    # The config is the truth: a checkpoint restores the optimizers' learning rates too.
    for opt, lr in ((gan.g_opt, cfg.lr_g), (gan.d_opt, cfg.lr_d)):
        opt.learning_rate.assign(lr)
    if s.saved_cfg is not None:
        event = lifecycle.announce_resume(run, s.saved_cfg, cfg, restored, int(gan.step.numpy()), s.log)
        lifecycle.record(run, cfg, {**event, **_data_change(cfg, run_dir, this_data, s.log)})
    several_workers = distribute.num_workers(strategy) > 1  # decided once, not per step
    return Training(cfg, gan, run, ema, make_train_step(cfg, gan, strategy, s.precision),
                    (lambda flag: distribute.any_worker(strategy, flag)) if several_workers else None,
                    tf.summary.create_file_writer(str(out_dir / layout.TENSORBOARD_DIR)),
                    Sampler(gan.output_generator, batch_size=cfg.num_samples), s.log, s.quiet,
                    on_collapse.make_monitor(cfg, gan, run_dir))


def _data_change(cfg: TrainConfig, run_dir: Path, this_data: str, log) -> dict:
    """The resume's data facts for config.json's history; a warning when the images are not the ones trained on."""
    before = layout.recorded_data_id(run_dir)
    if before is None or before == this_data:
        return {"data_id": this_data}
    log(f"Warning: {cfg.data} is not the data this run trained on so far (same shape, other images: "
        f"data id {this_data}, was {before}); training goes on with it, and config.json's history says so")
    return {"data_id": this_data, "data_changed_from": before}


def _batches(cfg: TrainConfig, strategy, run: lifecycle.Run, step: int, labels=None):
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
                          epochs=(first_epoch, cfg.epochs), batches_per_epoch=run.steps_per_epoch * local,
                          labels=(labels.condition.feature,) if labels is not None else ())
        if labels is not None:  # (images, {feature: raw}) -> (images, raw)
            ds = ds.map(lambda images, raw: (images, raw[labels.condition.feature]))
        return ds.skip(skip * local)

    return iter(strategy.distribute_datasets_from_function(per_pipeline))


# ----------------------------------------------------------------------------
# the loop's parts: a step's numbers, an epoch's outputs


def _step(t: Training, batch, epoch: int) -> dict:
    """One training step; its scalars as floats. A NaN/Inf loss raises NonFiniteLoss (nothing checkpointed)."""
    out = {k: float(v) for k, v in t.train_step(batch).items()}
    if not (np.isfinite(out["d_loss"]) and np.isfinite(out["g_loss"])):
        raise NonFiniteLoss(
            f"loss became {'NaN' if np.isnan(out['d_loss'] + out['g_loss']) else 'Inf'} at step {t.step} "
            f"(epoch {epoch + 1}); stopped without checkpointing: {t.run.checkpoints.recovery()}")
    return out


def _bar_line(out: dict, meter: lifecycle.EpochMeter) -> str:
    return (f"d {out['d_loss']:.3f} g {out['g_loss']:.3f} D(x) {out['d_real']:.2f} "
            f"D(G(z)) {out['d_fake']:.2f} {meter.img_per_s():.0f} img/s")


def _grid_images(t: Training) -> np.ndarray:
    """The fixed-noise grid's images, from the EMA generator's statistics of this step."""
    t.ema.refresh()  # a grid may fall between two checkpoints
    if t.gan.labels is None:
        return t.grid_runner(t.gan.fixed_z.numpy())
    z, y, _ = grid_inputs(t.gan.fixed_z.numpy(), t.gan.labels)
    return t.grid_runner(z, y)


def grid_inputs(fixed_z: np.ndarray, labels) -> tuple[np.ndarray, np.ndarray, int]:
    """A conditional grid: one row per class (or frequent attribute combination), the same latents in each
    column; (z, y, images per row)."""
    rows = labels.grid_rows(len(fixed_z))
    cols = max(1, len(fixed_z) // len(rows))
    return np.tile(fixed_z[:cols], (len(rows), 1)), np.repeat(rows, cols, axis=0), cols


def _write_epoch(t: Training, epoch: int, row: dict, images) -> None:
    """The chief's files of an epoch: the grid (samples/epoch-NNNN.png) and loss plot, TensorBoard's scalars."""
    import tensorflow as tf

    from dcgan_cli.images import make_grid, save_image

    run_dir = t.run.run_dir
    grid = None
    if images is not None:
        grid = make_grid(images, nrow=grid_inputs(t.gan.fixed_z.numpy(), t.gan.labels)[2] if t.gan.labels else None)
        save_image(layout.sample_grid_path(run_dir, epoch + 1), grid)
        plot_losses(run_dir / layout.METRICS_FILE, run_dir / layout.LOSSES_FILE)
    with t.tb.as_default(step=row["step"]):
        for k in t.scalars + ("img_per_s",):
            tf.summary.scalar(k, row[k])
        for k in on_collapse.HEALTH_SCALARS:
            if row.get(k) is not None:
                tf.summary.scalar(f"health/{k}", float(row[k]))
        if grid is not None:
            tf.summary.image("samples", grid[None], max_outputs=1)
    t.tb.flush()


def _epoch_line(t: Training, epoch: int, row: dict, meter: lifecycle.EpochMeter) -> str:
    return (f"epoch {epoch + 1}/{t.cfg.epochs} step {row['step']} d_loss {row['d_loss']:.4f} "
            f"g_loss {row['g_loss']:.4f} D(x) {row['d_real']:.3f} D(G(z)) {row['d_fake']:.3f} "
            + (f"p {row['augment_p']:.3f} r_t {row['r_t']:.2f} " if "augment_p" in row else "")
            + f"{row['img_per_s']:.1f} img/s {meter.seconds:.1f}s")


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
    path = run.run_dir / layout.GENERATOR_FILE
    try:
        save_generator(t.gan.output_generator, path)
    except OSError as e:
        raise DcganError(describe_os_error(e, f"writing {path} failed")
                         + f"; the checkpoints are intact, and `{run.resume_command}` writes it again") from None


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

    best = checkpoints.read_best(run_dir)
    improved = best is None or best.get("metric") != metric or score < best["value"]
    if improved:
        best_dir = checkpoints.save_best(
            run_dir, ckpt, {"metric": metric, "value": score, "epoch": epoch, "step": step}, step,
            also=lambda folder: save_generator(gan.output_generator, folder / layout.GENERATOR_FILE))
    result.update(epoch=epoch, step=step, best=improved)
    layout.append_metrics(run_dir, {"eval": result})
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
