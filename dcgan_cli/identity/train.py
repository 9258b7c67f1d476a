"""`dcgan identity train`: the embedding network on the training identities, with `dcgan train`'s run conventions.

    runs/00007-celeba-64-identity-arcface/
      identity_config.json   the frozen IdentityConfig (reloaded by --resume)
      split.json             the training and held-out identities
      checkpoints/           network, ArcFace centres, optimizer, step
      metrics.jsonl          one row per epoch (loss, img/s, seconds)
      embedding.keras        at the end: the network (loads with plain keras.saving.load_model)
      embedding.json         its input size, crop, identities and threshold (see verification.py)
      roc.png                the held-out verification ROC curve

Batches are drawn from (seed, step) alone (data.PKSampler), so a resumed run
trains on exactly the batches an uninterrupted one would. Ctrl-C or SIGTERM
finishes the step, writes a checkpoint and exits 130 with the --resume command.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli import rundir
from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import write_json, write_text
from dcgan_cli.identity.config import CONFIG_FILE, IdentityConfig
from dcgan_cli.identity.data import (DIHEDRAL, PKSampler, load_identities, split_identities, view_batch,
                                    view_identities)
from dcgan_cli.identity.verification import (META_FORMAT, MODEL_FILE, PAIRS, evaluate_verification, save_model,
                                             write_meta)

SPLIT_FILE = "split.json"


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


def train_identity(cfg: IdentityConfig, run_dir: str | Path | None = None, *, resume: bool = False,
                   log: Callable[[str], None] = print, quiet: bool = False, max_steps: int | None = None,
                   pairs: int = PAIRS) -> Path:
    """Train `cfg` into `run_dir` (a new numbered one when None); returns the run dir.

    At the end the network is saved as RUN/embedding.keras and scored with the LFW
    protocol on the held-out identities; the threshold goes into RUN/embedding.json.
    """
    import tensorflow as tf

    from dcgan_cli.progress import Bars
    from dcgan_cli.errors import TrainingInterrupted

    if resume:
        if run_dir is None or not rundir.checkpoint_paths(Path(run_dir) / rundir.CKPT_DIR):
            raise DcganError(f"{run_dir} has no checkpoint to resume from; start a new run without --resume")
    images, ids, manifest = load_identities(cfg.data)
    if (manifest["size"], manifest["channels"]) != (cfg.image_size, cfg.channels):
        raise DcganError(f"the data is {manifest['size']}x{manifest['size']}x{manifest['channels']} but the config "
                         f"wants {cfg.image_size}x{cfg.image_size}x{cfg.channels}")
    train_ids, heldout_ids = split_identities(ids, cfg.holdout)
    in_train = np.isin(ids, train_ids)
    images, ids = images[in_train], ids[in_train]
    # --class-augment dihedral: each image 8 times, each time another identity (data.view_identities).
    views = DIHEDRAL if cfg.class_augment == "dihedral" else 1
    sample_ids = view_identities(ids, views)
    classes = np.searchsorted(np.unique(sample_ids), sample_ids)  # ArcFace's class index of each sample
    sampler = PKSampler(sample_ids, cfg.p_identities, cfg.k_images, cfg.seed)
    steps_per_epoch = cfg.steps_per_epoch or max(1, len(sample_ids) // sampler.batch_size)
    total_steps = steps_per_epoch * cfg.epochs

    split = {"train_identities": train_ids.tolist(), "heldout_identities": heldout_ids.tolist()}
    if run_dir is None:
        data_name = Path(str(cfg.data).rstrip("/")).name or "data"
        run_dir = rundir.new_run_dir(cfg.runs_dir, "-".join(filter(None, [data_name, "identity", cfg.loss,
                                                                          cfg.run_name])))
    run_dir = Path(run_dir)
    if resume:
        saved = json.loads((run_dir / SPLIT_FILE).read_text()) if (run_dir / SPLIT_FILE).exists() else split
        if saved != split:
            raise DcganError(f"the data's identities differ from those {run_dir} was trained on; resume with the "
                             f"same data (--data)")
    write_text(run_dir / CONFIG_FILE, cfg.to_json())
    write_json(run_dir / SPLIT_FILE, split)
    log(f"{len(train_ids):,} training identities ({len(ids):,} images)"
        + (f", x{views} by turning and mirroring: {len(train_ids) * views:,} classes" if views > 1 else "")
        + f"; {len(heldout_ids):,} held out; batches of {sampler.p} x {sampler.k}, {steps_per_epoch} steps per epoch")

    model, centres, opt, step_var = build_state(cfg, len(train_ids) * views, total_steps)
    # The dropout's and augmentation's random states too (Keras keeps them in variables the
    # checkpoint would not otherwise see), so a resumed run draws what an uninterrupted one would.
    augment = make_augment(cfg)
    rng_state = [v for v in model.variables + (augment.variables if augment else []) if "seed_generator" in v.path]
    parts = dict(model=model, optimizer=opt, step=step_var, rng=rng_state)
    if centres is not None:
        parts["centres"] = centres
    ckpt = tf.train.Checkpoint(**parts)
    manager = tf.train.CheckpointManager(ckpt, str(run_dir / rundir.CKPT_DIR), max_to_keep=cfg.keep_checkpoints)
    if resume:
        restored = rundir.restore_first_readable(ckpt, manager.checkpoints, manager.directory,
                                                 warn=lambda m: log(f"Warning: {m}"))
        log(f"Resumed from {restored} at step {int(step_var.numpy())}")
    train_step = make_step(cfg, model, centres, opt, augment)

    stop_signal: list[int] = []

    def on_signal(signum, frame):
        if stop_signal:
            raise KeyboardInterrupt
        stop_signal.append(signum)

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def batch(step: int):
        idx = sampler.batch(step)
        x = view_batch(images, idx, views)
        if cfg.flip:
            flip = np.random.default_rng([cfg.seed, step, 1]).random(len(idx)) < 0.5
            x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
        return x, (classes[idx] if cfg.loss == "arcface" else sample_ids[idx])

    progress = Bars(not quiet).start()
    try:
        step = int(step_var.numpy())
        for epoch in range(step // steps_per_epoch, cfg.epochs):
            first = step - epoch * steps_per_epoch
            bar = progress.task(f"epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch, first)
            total, n, t0 = 0.0, 0, time.perf_counter()
            for _ in range(first, steps_per_epoch):
                x, y = batch(step)
                loss = float(train_step(x, y))
                step = int(step_var.assign_add(1).numpy())
                if not np.isfinite(loss):
                    raise DcganError(f"the loss became {loss} at step {step}; lower --lr and resume from the last "
                                     f"checkpoint (`dcgan identity train --resume {run_dir}`)")
                total, n = total + loss, n + 1
                bar.advance(1, f"loss {loss:.4f} {len(x) * n / (time.perf_counter() - t0):.0f} img/s")
                if cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0:
                    manager.save(checkpoint_number=step)
                if stop_signal or (max_steps is not None and step >= max_steps):
                    break
            bar.remove()
            seconds = time.perf_counter() - t0
            if stop_signal:
                path = manager.save(checkpoint_number=step)
                raise TrainingInterrupted(f"{signal.Signals(stop_signal[0]).name} at step {step}: checkpoint written "
                                          f"to {path}. Continue with: dcgan identity train --resume {run_dir}")
            manager.save(checkpoint_number=step)
            if step % steps_per_epoch:  # max_steps reached mid-epoch
                break
            row = {"epoch": epoch + 1, "step": step, "loss": total / max(n, 1),
                   "img_per_s": round(sampler.batch_size * n / max(seconds, 1e-9), 2), "seconds": round(seconds, 3)}
            rundir.append_metrics(run_dir, row)
            progress.print(f"epoch {epoch + 1}/{cfg.epochs} step {step} loss {row['loss']:.4f} "
                           f"{row['img_per_s']:.0f} img/s {seconds:.1f}s", fallback=log)
            if max_steps is not None and step >= max_steps:
                break
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        progress.stop()

    if int(step_var.numpy()) < total_steps:
        return run_dir
    # -- the end: the network as a file, its metadata, and its score --------
    model_path = save_model(model, run_dir / MODEL_FILE)
    write_meta(model_path, {
        "format": META_FORMAT, "image_size": cfg.image_size, "channels": cfg.channels,
        "crop": manifest.get("crop", "none"), "crop_size": manifest.get("crop_size", 0),
        "embedding_dim": cfg.embedding_dim, "loss": cfg.loss, "data": str(cfg.data), "run": str(run_dir),
        "threshold": None, **split})
    try:
        result = evaluate_verification(model_path, cfg.data, pairs=pairs, progress=not quiet, log=log)
        log(f"held-out verification: {result['accuracy'] * 100:.2f}% ± {result['accuracy_std'] * 100:.2f} "
            f"({result['pairs']:,} pairs), AUC {result['roc_auc']:.4f}; threshold {result['threshold']:.4f} stored "
            f"in {model_path.with_suffix('.json')}")
    except DcganError as e:
        log(f"Note: no threshold stored ({e}); pass --threshold to verify")
    return run_dir
