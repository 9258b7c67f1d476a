"""`dcgan identity train`: the embedding network on the training identities, with `dcgan train`'s run conventions.

    runs/00007-celeba-64-identity-arcface/
      identity_config.json   the frozen IdentityConfig (reloaded by --resume), and its history
      split.json             the training and held-out identities
      checkpoints/           network, ArcFace centres, optimizer, step
      last-good/             the newest end-of-epoch checkpoint
      metrics.jsonl          one row per epoch (loss, img/s, seconds)
      embedding.keras        at the end: the network (loads with plain keras.saving.load_model)
      embedding.json         its input size, crop, identities and threshold (see verification.py)
      roc.png                the held-out verification ROC curve

Batches are drawn from (seed, step) alone (data.PKSampler), so a resumed run
trains on exactly the batches an uninterrupted one would. The run's lifecycle
is `dcgan train`'s (lifecycle.py): numbered, locked, Ctrl-C or SIGTERM finishes
the step, writes a checkpoint and exits 130 with the --resume command, and
last-good/ keeps the newest end-of-epoch checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.runs import lifecycle
from dcgan_cli.runs.checkpoints import Checkpoints, NonFiniteLoss
from dcgan_cli.runs.layout import CKPT_DIR, SPLIT_FILE
from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import write_json
from dcgan_cli.identity.config import IdentityConfig
from dcgan_cli.identity.data import (DIHEDRAL, PKSampler, load_identities, split_identities, view_batch,
                                    view_identities)
from dcgan_cli.identity.verification import (META_FORMAT, MODEL_FILE, PAIRS, evaluate_verification, save_model,
                                             write_meta)

def build_state(cfg: IdentityConfig, n_classes: int, total_steps: int):
    """(model, ArcFace centres or None, optimizer, step variable)."""
    import keras
    import tensorflow as tf

    from dcgan_cli.identity.model import build_embedder

    keras.utils.set_random_seed(cfg.seed)
    model = build_embedder(cfg.image_size, cfg.channels, cfg.embedding_dim, cfg.width, seed=cfg.seed)
    centres = None
    if cfg.loss == "arcface":
        init = tf.random.stateless_normal([n_classes, cfg.embedding_dim], seed=[cfg.seed, 0xA4C])
        centres = tf.Variable(init, name="arcface_centres")
    schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, max(total_steps, 1), alpha=0.01)
    opt = keras.optimizers.Adam(schedule)
    variables = model.trainable_variables + ([centres] if centres is not None else [])
    opt.build(variables)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    return model, centres, opt, step


def make_augment(cfg: IdentityConfig):
    """Small random shifts, rotations and zooms (a person is the same a few pixels off), or None."""
    import keras

    if cfg.augment <= 0:
        return None
    augment = keras.Sequential([
        keras.layers.RandomTranslation(cfg.augment, cfg.augment, fill_mode="nearest", seed=cfg.seed),
        keras.layers.RandomRotation(cfg.augment / 2, fill_mode="nearest", seed=cfg.seed + 1),
        keras.layers.RandomZoom(cfg.augment, fill_mode="nearest", seed=cfg.seed + 2),
    ])
    augment.build((None, cfg.image_size, cfg.image_size, cfg.channels))
    return augment


def make_step(cfg: IdentityConfig, model, centres, opt, augment=None):
    import tensorflow as tf

    from dcgan_cli.identity import losses

    variables = model.trainable_variables + ([centres] if centres is not None else [])

    @tf.function
    def step(images_u8, labels):
        x = tf.cast(images_u8, tf.float32)
        if augment is not None:
            x = augment(x, training=True)
        with tf.GradientTape() as tape:
            emb = model(x, training=True)
            if cfg.loss == "arcface":
                loss = losses.arcface_loss(labels, emb, centres, cfg.arc_margin, cfg.arc_scale)
            elif cfg.mining == "semi-hard":
                loss = losses.semi_hard_triplet_loss(labels, emb, cfg.margin)
            else:
                loss = losses.batch_hard_triplet_loss(labels, emb, cfg.margin)
        opt.apply(tape.gradient(loss, variables), variables)
        return loss

    return step


@dataclass
class TrainingData:
    """The training identities' images in memory, and the P x K batch of each step."""

    cfg: IdentityConfig
    manifest: dict
    images: np.ndarray  # the training identities' images, uint8
    sample_ids: np.ndarray  # each image's identity (x views: a turned or mirrored image is another one)
    classes: np.ndarray  # ArcFace's class index of each sample
    sampler: PKSampler
    views: int
    split: dict  # {"train_identities": [...], "heldout_identities": [...]}

    @classmethod
    def load(cls, cfg: IdentityConfig) -> "TrainingData":
        from dcgan_cli.data.shards import check_shape

        images, ids, manifest = load_identities(cfg.data)
        check_shape(manifest, cfg.image_size, cfg.channels)
        train_ids, heldout_ids = split_identities(ids, cfg.holdout)
        in_train = np.isin(ids, train_ids)
        # --class-augment dihedral: each image 8 times, each time another identity (data.view_identities).
        views = DIHEDRAL if cfg.class_augment == "dihedral" else 1
        sample_ids = view_identities(ids[in_train], views)
        classes = np.searchsorted(np.unique(sample_ids), sample_ids)
        return cls(cfg, manifest, images[in_train], sample_ids, classes,
                   PKSampler(sample_ids, cfg.p_identities, cfg.k_images, cfg.seed), views,
                   {"train_identities": train_ids.tolist(), "heldout_identities": heldout_ids.tolist()})

    @property
    def steps_per_epoch(self) -> int:
        return self.cfg.steps_per_epoch or max(1, len(self.sample_ids) // self.sampler.batch_size)

    def describe(self) -> str:
        n_train = len(self.split["train_identities"])
        return (f"{n_train:,} training identities ({len(self.images):,} images)"
                + (f", x{self.views} by turning and mirroring: {n_train * self.views:,} classes"
                   if self.views > 1 else "")
                + f"; {len(self.split['heldout_identities']):,} held out; batches of {self.sampler.p} x "
                  f"{self.sampler.k}, {self.steps_per_epoch} steps per epoch")

    def check_split(self, run_dir: Path) -> None:
        """A resumed run trains on the identities it started with."""
        path = run_dir / SPLIT_FILE
        if path.exists() and json.loads(path.read_text()) != self.split:
            raise DcganError(f"the data's identities differ from those {run_dir} was trained on; resume with the "
                             f"same data (--data)")

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(images, labels) of `step`: drawn from (seed, step) alone."""
        cfg = self.cfg
        idx = self.sampler.batch(step)
        x = view_batch(self.images, idx, self.views)
        if cfg.flip:
            flip = np.random.default_rng([cfg.seed, step, 1]).random(len(idx)) < 0.5
            x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
        return x, (self.classes[idx] if cfg.loss == "arcface" else self.sample_ids[idx])


@dataclass
class Network:
    """The network, its ArcFace centres (or None), its optimizer and step, and the compiled training step."""

    model: object
    centres: object
    opt: object
    step_var: object  # tf.Variable int64: steps taken; with the seed, the batches' whole state
    train_step: Callable

    @property
    def step(self) -> int:
        return int(self.step_var.numpy())


def train_identity(cfg: IdentityConfig, run_dir: str | Path | None = None, *, resume: str | Path | None = None,
                   log: Callable[[str], None] = print, quiet: bool = False, max_steps: int | None = None,
                   pairs: int = PAIRS) -> Path:
    """Train `cfg` into a new run, or continue the run `resume`; returns the run dir.

    A new run goes into a new numbered folder under `cfg.runs_dir` (or into `run_dir`
    when given). At the end the network is saved as RUN/embedding.keras and scored
    with the LFW protocol on the held-out identities; the threshold goes into
    RUN/embedding.json.
    """
    from dcgan_cli.progress import Bars

    lifecycle.check_call(run_dir, resume)
    # -- setup: every rule checked before anything is written ---------------
    saved_cfg = IdentityConfig.of_run(resume) if resume is not None else None  # refuses a non-run before locking it
    data = TrainingData.load(cfg)
    run_dir, new = lifecycle.place_run(cfg, lifecycle.run_name(cfg.data, "identity", cfg.loss, cfg.run_name),
                                       run_dir, resume)
    with lifecycle.hold(run_dir, cfg, new=new):
        if saved_cfg is not None:
            lifecycle.reopen(run_dir, cfg, log)
            data.check_split(run_dir)
        net, run = _restore_or_init(cfg, run_dir, saved_cfg, data, max_steps, log)
        # -- the epochs ---------------------------------------------------------
        with run.signals, Bars(not quiet) as progress:
            for epoch in run.epochs_from(net.step):
                meter = _train_epoch(net, run, data, epoch, progress)
                if not run.epoch_complete(net.step):  # a signal or max_steps mid-epoch
                    run.save_and_stop(net.step)  # raises TrainingInterrupted after a signal
                    break
                if run.epoch_checkpoint_due(epoch, net.step):
                    run.save_last_good(net.step)
                row = meter.row(epoch + 1, net.step)
                run.log_epoch(row)
                progress.print(f"epoch {epoch + 1}/{cfg.epochs} step {net.step} loss {row['loss']:.4f} "
                               f"{row['img_per_s']:.0f} img/s {meter.seconds:.1f}s", fallback=log)
                if run.reached_max(net.step):
                    break
        if run.finished(net.step):
            _export(cfg, run_dir, net.model, data, pairs, quiet, log)
    return run_dir


def _restore_or_init(cfg: IdentityConfig, run_dir: Path, saved_cfg: IdentityConfig | None, data: TrainingData,
                     max_steps: int | None, log) -> tuple[Network, lifecycle.Run]:
    """The run's config and split written, the network built (and restored on resume), the step compiled."""
    import tensorflow as tf

    log(data.describe())
    resume_command = lifecycle.resume_command(cfg, run_dir)
    steps_per_epoch = data.steps_per_epoch
    model, centres, opt, step_var = build_state(cfg, len(data.split["train_identities"]) * data.views,
                                                steps_per_epoch * cfg.epochs)
    # The dropout's and augmentation's random states too (Keras keeps them in variables the
    # checkpoint would not otherwise see), so a resumed run draws what an uninterrupted one would.
    augment = make_augment(cfg)
    rng_state = [v for v in model.variables + (augment.variables if augment else []) if "seed_generator" in v.path]
    parts = dict(model=model, optimizer=opt, step=step_var, rng=rng_state)
    if centres is not None:
        parts["centres"] = centres
    checkpoints = Checkpoints(tf.train.Checkpoint(**parts), run_dir / CKPT_DIR, run_dir,
                              keep=cfg.keep_checkpoints, resume_command=resume_command, models=[model],
                              advice=lambda last: _recovery_advice(resume_command, last))
    run = lifecycle.Run(run_dir, resume_command, steps_per_epoch, cfg.epochs, checkpoints, max_steps,
                        checkpoint_every_steps=cfg.checkpoint_every_steps)
    event = {"event": "start", "data": cfg.data}
    if saved_cfg is not None:
        restored = checkpoints.restore(checkpoints.directory, log)
        event = lifecycle.announce_resume(run, saved_cfg, cfg, restored, int(step_var.numpy()), log)
    lifecycle.record(run, cfg, event)
    write_json(run_dir / SPLIT_FILE, data.split)
    return Network(model, centres, opt, step_var, make_step(cfg, model, centres, opt, augment)), run


def _recovery_advice(resume_command: str, last: str | None) -> str:
    """What to run after a NaN: resume the last good checkpoint with a lower rate, or start again with one."""
    if last is None:
        return "no checkpoint was written before it: start a new run with a lower --lr"
    return f"lower --lr and resume from the last checkpoint, {Path(last).name} (`{resume_command} --lr ...`)"


def _train_epoch(net: Network, run: lifecycle.Run, data: TrainingData, epoch: int, progress) -> lifecycle.EpochMeter:
    """The step loop of one epoch, until its end, a signal, or max_steps."""
    meter = lifecycle.EpochMeter(("loss",), data.sampler.batch_size)
    steps = run.steps_left(epoch, net.step)
    bar = progress.task(f"epoch {epoch + 1}/{run.epochs}", run.steps_per_epoch, steps.start)
    for _ in steps:
        x, y = data.batch(net.step)
        loss = float(net.train_step(x, y))
        step = int(net.step_var.assign_add(1).numpy())
        if not np.isfinite(loss):
            raise NonFiniteLoss(f"the loss became {loss} at step {step}; {run.checkpoints.recovery()}")
        meter.add({"loss": loss})
        bar.advance(1, f"loss {loss:.4f} {meter.img_per_s():.0f} img/s")
        if run.checkpoint_due(step):
            run.checkpoints.save(step)  # --checkpoint-every-steps
        if run.leave_epoch(step):  # a signal, or max_steps
            break
    bar.remove()
    meter.stop()
    return meter


def _export(cfg: IdentityConfig, run_dir: Path, model, data: TrainingData, pairs: int, quiet: bool, log) -> None:
    """The end: the network as a file, its metadata, and its score on the held-out identities."""
    model_path = save_model(model, run_dir / MODEL_FILE)
    write_meta(model_path, {
        "format": META_FORMAT, "image_size": cfg.image_size, "channels": cfg.channels,
        "crop": data.manifest.get("crop", "none"), "crop_size": data.manifest.get("crop_size", 0),
        "embedding_dim": cfg.embedding_dim, "loss": cfg.loss, "data": str(cfg.data), "run": str(run_dir),
        "threshold": None, **data.split})
    try:
        result = evaluate_verification(model_path, cfg.data, pairs=pairs, progress=not quiet, log=log)
        log(f"held-out verification: {result['accuracy'] * 100:.2f}% ± {result['accuracy_std'] * 100:.2f} "
            f"({result['pairs']:,} pairs), AUC {result['roc_auc']:.4f}; threshold {result['threshold']:.4f} stored "
            f"in {model_path.with_suffix('.json')}")
    except DcganError as e:
        log(f"Note: no threshold stored ({e}); pass --threshold to verify")
