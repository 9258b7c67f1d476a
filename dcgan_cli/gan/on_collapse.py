"""What the trainer does when training goes wrong (--on-collapse warn|stop|rollback), beside the monitor.

health.py detects (pure functions over each epoch's numbers); this module is the trainer's side:
the run's monitor (`make_monitor`), the end-of-epoch check that also keeps the newest healthy
checkpoint (`examine`), and ONE response to a finding or a NaN (`respond`): report and record it,
then go on (warn), stop the run checkpointed (stop), or roll back to the last healthy checkpoint
with both learning rates lowered (rollback), stopping instead when a rollback cannot help.
--on-collapse rollback is refused with several workers before training starts (`check_workers`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dcgan_cli.config import TrainConfig
from dcgan_cli.errors import DcganError
from dcgan_cli.gan import health
from dcgan_cli.pixels import to_signed
from dcgan_cli.runs import checkpoints, layout, lifecycle

# The monitor's numbers in an epoch's row, also TensorBoard scalars (health/NAME).
HEALTH_SCALARS = ("healthy", "pixel_diversity", "feature_diversity", "largest_weight")


def check_workers(cfg: TrainConfig, workers: int) -> None:
    """Refuse --on-collapse rollback on several workers before training (each would roll back alone)."""
    if cfg.on_collapse == "rollback" and workers > 1:
        raise DcganError(f"--on-collapse rollback needs one worker (this cluster has {workers}); "
                         f"use --on-collapse stop or warn")


def make_monitor(cfg: TrainConfig, gan, run_dir: Path) -> health.Monitor:
    """The run's monitor: the real reference (the data's first num_samples images, in shard order) and D's
    penultimate features (the input of its logit layer, in inference mode)."""
    import keras
    import tensorflow as tf

    from dcgan_cli.data.pipeline import labelled_batches

    real = next(labelled_batches(cfg.data, cfg.num_samples))[0]
    D = gan.discriminator
    penultimate = keras.Model(D.inputs[0], D.get_layer("logit").input)  # the image's features (also of D(x, y))
    spec = tf.TensorSpec([None, cfg.image_size, cfg.image_size, cfg.channels], tf.uint8)

    @tf.function(input_signature=[spec])  # one trace for every check
    def forward(images_u8):
        x = penultimate(to_signed(tf.cast(images_u8, tf.float32)), training=False)
        return tf.reshape(tf.cast(x, tf.float32), [tf.shape(images_u8)[0], -1])

    def features(images_u8: np.ndarray) -> np.ndarray:
        return np.concatenate([forward(images_u8[i:i + 256]).numpy() for i in range(0, len(images_u8), 256)])

    kept = checkpoints.checkpoint_paths(run_dir / layout.HEALTHY_DIR) if cfg.on_collapse == "rollback" else []
    return health.Monitor(real, features, checkpoints.WEIGHT_LIMIT, last_healthy=kept[-1] if kept else None,
                          zone=health.winning_zone(cfg.loss))


def examine(t, row: dict, images, ckpt_path: str | None) -> list[health.Finding]:
    """The detectors on the epoch of `row`, whose row gains `healthy` (and, when the grid was drawn, the
    diversities and the largest weight, measured then). The epoch's checkpoint `ckpt_path`, when healthy,
    becomes the last healthy one (with --on-collapse rollback kept as RUN/healthy/, the rollback's target)."""
    cfg, run, mon = t.cfg, t.run, t.monitor
    t0 = time.perf_counter()
    measured = mon.measure(images) if images is not None else {}
    largest = checkpoints.largest_weight(run.checkpoints.models) if images is not None else None
    found = mon.examine(row, measured or None, largest)
    row["healthy"] = mon.healthy
    row.update({k: round(v, 4) if np.isfinite(v) else None for k, v in measured.items()})  # None: no real spread
    if largest is not None:
        row.update(largest_weight=round(largest[1], 4), health_seconds=round(time.perf_counter() - t0, 4))
    if ckpt_path and mon.healthy:
        mon.last_healthy = ckpt_path
        if cfg.on_collapse == "rollback" and run.chief:
            mon.last_healthy = str(checkpoints.keep_copy(run.run_dir, ckpt_path, layout.HEALTHY_DIR))
    last = mon.last_healthy and Path(mon.last_healthy).name
    return [health.Finding(kind, what, health.advice(kind, cfg.lr_g, cfg.lr_d, run.resume_command, last))
            for kind, what in found]


def diverged(t, error: DcganError) -> tuple[dict, list[health.Finding]]:
    """A NaN/Inf loss (NonFiniteLoss) as a row and a `diverging` finding, for `respond`."""
    step, kept = t.step, t.monitor.last_healthy
    found = health.Finding("diverging", f"training diverged: {str(error).split(';')[0]}",
                           health.advice("diverging", t.cfg.lr_g, t.cfg.lr_d, t.run.resume_command,
                                         kept and Path(kept).name))
    return {"epoch": step // t.run.steps_per_epoch + 1, "step": step}, [found]


def respond(t, row: dict, findings: list[health.Finding], progress, *, nan: bool = False) -> bool:
    """The one response to findings (or, with `nan`, to a NaN loss): True when the run rolled back (the loop
    goes on from the healthy step); False when it goes on (warn) or, after a NaN that no rollback answers,
    when the NaN's own error (with its recovery command) must stand. Stop raises health.TrainingStopped.

    Findings are reported and recorded (the log, metrics.jsonl's health line, TensorBoard); then
    --on-collapse: warn goes on, stop ends the run checkpointed, rollback goes back to the last healthy
    checkpoint with both rates lowered or, when it cannot (none yet, or tried there before), stops.
    """
    cfg, kept = t.cfg, t.monitor.last_healthy
    refusal = _rollback_refusal(t, kept) if cfg.on_collapse == "rollback" else None
    if nan and (cfg.on_collapse != "rollback" or refusal is not None):
        return False
    for f in findings:
        progress.print(f.line(row["epoch"], row["step"]), fallback=t.log)
    if cfg.on_collapse == "rollback" and refusal is None:
        line = _roll_back(t, findings, kept)  # the health line goes after it, at the step it went back to
        _record(t, row, findings, step=t.step, action="rollback", from_step=row["step"])
        progress.print(line, fallback=t.log)
        return True
    _record(t, row, findings, action="stop" if refusal else cfg.on_collapse)
    if cfg.on_collapse == "warn":
        return False
    _stop(t, findings, refusal or "--on-collapse stop")
    return False  # not reached: _stop raises


def _record(t, row: dict, findings: list[health.Finding], **extra) -> None:
    """metrics.jsonl's {"health": ...} line and TensorBoard's health/KIND text (the chief's)."""
    import tensorflow as tf

    if not t.run.chief:
        return
    layout.append_metrics(t.run.run_dir, {"health": {"epoch": row["epoch"], "step": row["step"], **extra,
                                                     "findings": [f.record() for f in findings]}})
    with t.tb.as_default(step=row["step"]):
        for f in findings:
            tf.summary.text(f"health/{f.kind}", f.line(row["epoch"], row["step"]))
    t.tb.flush()


def _stop(t, findings: list[health.Finding], why: str) -> None:
    """End the run here: checkpointed (the epoch's own, or one now), with the line saying how to go on."""
    run, step = t.run, t.step
    latest = run.checkpoints.latest
    if latest is None or checkpoints.checkpoint_step(latest) != step:
        latest = run.save_last_good(step)
    raise health.TrainingStopped(
        f"training stopped at step {step} ({why}): {'; '.join(f.what for f in findings)}. {Path(latest).name} "
        f"is kept; {findings[0].advice}")


def _rollback_refusal(t, kept: str | None) -> str | None:
    """Why --on-collapse rollback stops instead, or None: no healthy checkpoint yet, or a rollback to it before
    (lower rates did not help; another would loop)."""
    if kept is None:
        return "--on-collapse rollback: no checkpoint was healthy yet"
    to = checkpoints.checkpoint_step(kept)
    before = [e for e in layout.read_history(t.run.run_dir) if e.get("event") == "rollback" and e.get("step") == to]
    if len(before) >= health.ROLLBACKS_PER_CHECKPOINT:
        return (f"--on-collapse rollback: already rolled back to {Path(kept).name} {len(before)} time(s) with lower "
                f"rates, and it went wrong again")
    return None


def _roll_back(t, findings: list[health.Finding], kept: str) -> str:
    """Back to the healthy checkpoint `kept` with both learning rates lowered (health.ROLLBACK_FACTOR), recorded
    in config.json's history; the checkpoints after it are dropped. Returns the line saying so."""
    cfg, run, gan = t.cfg, t.run, t.gan
    step, to = t.step, checkpoints.checkpoint_step(kept)
    run.checkpoints.restore_path(kept)
    new = cfg.replace(lr_g=cfg.lr_g * health.ROLLBACK_FACTOR, lr_d=cfg.lr_d * health.ROLLBACK_FACTOR)
    for opt, lr in ((gan.g_opt, new.lr_g), (gan.d_opt, new.lr_d)):
        opt.learning_rate.assign(lr)
    t.cfg, t.ema.at = new, -1
    # The healthy step too: TensorFlow rewrites an existing checkpoint's files in place, which would also change
    # the hard-linked copy in RUN/healthy/ (and last-good/); saved anew, it gets files of its own.
    run.checkpoints.drop_after(to - 1)
    run.save_last_good(to)  # the newest checkpoint is the healthy one again, for a later --resume
    changed = {"lr_g": [cfg.lr_g, new.lr_g], "lr_d": [cfg.lr_d, new.lr_d]}
    lifecycle.record(run, new, {"event": "rollback", "step": to, "from_step": step,
                                "because": [f.record() for f in findings], "changed": changed})
    t.monitor.forget_after(to)
    return (f"Health: rolled back from step {step} to {Path(kept).name} (--on-collapse rollback) with both learning "
            f"rates halved (lr-g {cfg.lr_g:.3g} -> {new.lr_g:.3g}, lr-d {cfg.lr_d:.3g} -> {new.lr_d:.3g}: smaller "
            f"steps, the same G/D ratio); recorded in {cfg.FILE}'s history")
