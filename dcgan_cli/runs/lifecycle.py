"""One training run's lifecycle, the same for both trainers (`dcgan train`, `dcgan identity train`).

    place the run (numbered new, or the one --resume names)   place_run, run_name
      hold it: the lock, failed writes in one line, a new run  hold
        that died before its first checkpoint removed again
      reopen for --resume: checkpoints repaired, the rule       reopen
      restore or initialise, the resume bookkeeping             Checkpoints.restore, announce_resume, record
      epochs of steps                                           Run: after_step, epoch_ended, checkpoint_epoch
        Ctrl-C / SIGTERM: finish the step, checkpoint, exit 130 StopSignals
        never a checkpoint of NaN or exploding weights          Checkpoints.save, weight_problem
        one line in metrics.jsonl per epoch                     EpochMeter, Run.log_epoch
      the export (the trainer's own)

A trainer brings only what is its own: its models and step, what it logs each epoch and
what it exports at the end. The config class says the rest: the run's config file (FILE),
the command that resumes it (COMMAND) and what a resume may change (RESUMABLE).
Nothing here imports TensorFlow at module level.
"""

from __future__ import annotations

import shutil
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from dcgan_cli.runs import rundir
from dcgan_cli.config import FrozenConfig
from dcgan_cli.errors import DcganError, TrainingInterrupted
from dcgan_cli.fsutil import describe_os_error


class NonFiniteLoss(DcganError):
    """A loss became NaN/Inf, or the weights blew up; nothing is checkpointed, the last good checkpoint is kept."""


# Trainable weights past this size are not a model any more (DCGAN's start at N(0, 0.02); Adam at a
# sane rate moves each by about the rate per step): a checkpoint of them would only lead to NaN again.
WEIGHT_LIMIT = 1e4


def weight_problem(models) -> str | None:
    """Why these models' weights must not be saved (NaN/Inf anywhere, or a trainable |w| > WEIGHT_LIMIT), or None."""
    import tensorflow as tf

    for model in models:
        for v in model.variables:
            if "float" in str(v.dtype) and not bool(tf.reduce_all(tf.math.is_finite(v))):
                return f"{v.path} is not finite"
    path, biggest = largest_weight(models)
    if biggest > WEIGHT_LIMIT:
        return f"{path} reached |w| = {biggest:.3g} (over {WEIGHT_LIMIT:g}: the weights are exploding)"
    return None


def largest_weight(models) -> tuple[str, float]:
    """(the path of the trainable float variable with the largest |w|, that |w|) over `models`.

    weight_problem's bound, and the health monitor's early warning before it.
    """
    import numpy as np
    import tensorflow as tf

    weights = [v for model in models for v in model.trainable_variables if "float" in str(v.dtype)]
    if not weights:
        return ("", 0.0)
    # One transfer to the host for all of them, not one per variable.
    biggest = tf.stack([tf.reduce_max(tf.abs(tf.cast(v, tf.float32))) for v in weights]).numpy()
    i = int(np.argmax(np.where(np.isnan(biggest), np.inf, biggest)))  # NaN counts as the largest
    return (weights[i].path, float(biggest[i]))


# ----------------------------------------------------------------------------
# placing and holding the run directory


def run_name(data, *parts: str) -> str:
    """The run directory's name after its number: the data folder's name, then `parts` (empty ones left out)."""
    data_name = Path(str(data).rstrip("/")).name or "data"
    return "-".join(filter(None, [data_name, *parts]))


def resume_command(cfg: FrozenConfig, run_dir: str | Path) -> str:
    """The command that continues this run: `dcgan train --resume RUN`, `dcgan identity train --resume RUN`."""
    return f"{cfg.COMMAND} --resume {run_dir}"


def check_call(run_dir, resume) -> None:
    """A trainer's two places: `resume` the run to continue, or `run_dir` a new run's own folder; not both."""
    if isinstance(resume, bool):
        raise TypeError("resume names the run directory to continue (a path), not a flag")
    if resume is not None and run_dir is not None:
        raise ValueError("pass either run_dir (where a new run goes) or resume (the run to continue), not both")


def place_run(cfg: FrozenConfig, name: str, run_dir: str | Path | None = None, resume: str | Path | None = None, *,
              chief: bool = True, share: Callable[[Callable[[], Path]], Path] | None = None) -> tuple[Path, bool]:
    """(the run directory, whether this call numbered it): `resume`, `run_dir` (made), or cfg.runs_dir/NNNNN-`name`.

    Only a numbered run is removed again when it fails before its first checkpoint (`hold`).
    `share` (several workers) lets the chief number the run and tells the others its path.
    """
    if resume is not None:
        return Path(resume), False
    if run_dir is None:
        make = lambda: rundir.new_run_dir(cfg.runs_dir, name)  # noqa: E731
        try:
            return Path(share(make) if share else make()), True
        except OSError as e:
            raise DcganError(describe_os_error(e, f"cannot create a run directory under {cfg.runs_dir}")) from None
    run_dir = Path(run_dir)
    if chief:  # a caller's own fresh run dir (benchmarks, Python users)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DcganError(describe_os_error(e, f"cannot create the run directory {run_dir}")) from None
    return run_dir, False


@contextmanager
def hold(run_dir: Path, cfg: FrozenConfig, *, new: bool, chief: bool = True) -> Iterator[None]:
    """The run's lock for the body: one writer per run, a second one is refused in one line naming the first.

    A failed write (config, grid, metrics: OSError) becomes one line, with the --resume command
    when there is a checkpoint to continue from; a `new` run that fails before its first
    checkpoint holds nothing worth keeping and is removed. Only the chief locks and removes.
    """
    lock = rundir.lock_run(run_dir) if chief else None
    try:
        try:
            yield
        except OSError as e:  # the checkpoints written so far are intact
            resumable = rundir.checkpoint_paths(run_dir / rundir.CKPT_DIR)
            raise DcganError(describe_os_error(e, "writing the run failed")
                             + (f"; then continue: {resume_command(cfg, run_dir)}" if resumable else "")) from None
    except BaseException:
        if new and chief and not rundir.checkpoint_paths(run_dir / rundir.CKPT_DIR):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            lock.release()


def reopen(run_dir: Path, cfg: FrozenConfig, log: Callable[[str], None], *, chief: bool = True) -> None:
    """Before resuming `run_dir` with `cfg`, holding its lock: repair its checkpoints, apply the resume rule.

    A damaged index is rebuilt from the files and a kill's ckpt-N_temp folders removed (the chief
    only); then the run must have a checkpoint and `cfg` may differ from its config only as
    RESUMABLE allows (rundir.check_resume), whoever calls the trainer.
    """
    if chief:
        rundir.repair_checkpoints(run_dir / rundir.CKPT_DIR, warn=lambda m: log(f"Warning: {m}"))
    rundir.check_resume(run_dir, cfg)


# ----------------------------------------------------------------------------
# config and history


def announce_resume(run: "Run", saved: FrozenConfig, cfg: FrozenConfig, restored: str, step: int,
                    log: Callable[[str], None]) -> dict:
    """Say where the run resumed and what changed; returns the history event (the trainer may add to it)."""
    where = f"epoch {step // run.steps_per_epoch + 1}/{run.epochs}" if not run.finished(step) \
        else f"all {run.epochs} epochs done"
    log(f"Resumed from {restored} at step {step} ({where})")
    changes = rundir.resume_changes(saved, cfg)
    if changes:
        log(f"Changed on resume (recorded in {cfg.FILE}'s history): "
            + ", ".join(f"{k.replace('_', '-')} {a} -> {b}" for k, (a, b) in changes.items()))
    if run.finished(step):
        log(f"Nothing to do: step {step} already reaches {run.epochs} epochs; raise --epochs to train more")
    return {"event": "resume", "step": step, "changed": changes}


def record(run: "Run", cfg: FrozenConfig, event: dict) -> None:
    """The chief writes the run's config with `event` in its history; a resume (or the health monitor's rollback)
    forgets the metrics after its step.

    Epochs after the restored checkpoint are trained, and logged, again.
    """
    if not run.chief:
        return
    rundir.save_config(run.run_dir, cfg, event)
    if event["event"] in ("resume", "rollback"):
        rundir.forget_metrics_after(run.run_dir, event["step"])


# ----------------------------------------------------------------------------
# signals, checkpoints, the epoch's numbers


class StopSignals:
    """Ctrl-C and SIGTERM while training, as a context manager around the loop.

    The first signal asks the loop to stop after the current step (it checkpoints and raises
    TrainingInterrupted with the --resume command); a second one leaves at once
    (KeyboardInterrupt). The previous handlers come back on exit.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        self._previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _on_signal(self, signum, frame) -> None:
        if self.received is not None:  # a second Ctrl-C: leave now
            raise KeyboardInterrupt
        self.received = signum

    def stopping(self, share: Callable[[bool], bool] | None = None) -> bool:
        """Whether to stop after this step; `share` (several workers) stops every worker when any got one."""
        if share is not None and share(self.received is not None) and self.received is None:
            self.received = signal.SIGTERM  # it came to another worker
        return self.received is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name


class Checkpoints:
    """A run's checkpoints/ through a tf.train.CheckpointManager, with the rules of writing and reading them.

    `save` refuses NaN or exploding weights of `models` (NonFiniteLoss, with `advice(last
    checkpoint)` saying what to run), calls `before_save` (state the checkpoint must hold fresh),
    and turns a full or read-only disk into one line, leaving the earlier checkpoints as they were.
    `restore` falls back from checkpoints/ to last-good/ and from a damaged checkpoint to the one before.
    """

    def __init__(self, ckpt, directory: Path, run_dir: Path, *, keep: int, resume: str, models=(),
                 advice: Callable[[str | None], str], before_save: Callable[[], None] | None = None):
        import tensorflow as tf

        self.ckpt, self.directory, self.run_dir, self.resume = ckpt, Path(directory), Path(run_dir), resume
        self.keep = keep
        self.manager = tf.train.CheckpointManager(ckpt, str(directory), max_to_keep=keep)
        self.models, self.advice, self.before_save = list(models), advice, before_save

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint

    def recovery(self) -> str:
        """What to run after a NaN, given the checkpoints kept."""
        return self.advice(self.latest)

    def restore(self, source: Path, log: Callable[[str], None]) -> str:
        """Restore the newest readable checkpoint of `source` (else of RUN/last-good/); returns its path."""
        paths, where = rundir.resume_checkpoints(source, self.run_dir)
        restored = rundir.restore_first_readable(self.ckpt, paths, where, warn=lambda m: log(f"Warning: {m}"))
        if restored is None:
            raise DcganError(f"{self.run_dir} has no checkpoint to resume from; start a new run without --resume")
        return restored

    def drop_after(self, step: int) -> None:
        """Delete the checkpoints after `step` (a rollback: they hold the training that went wrong).

        The index is rewritten from the ones kept and the manager re-made from it, so the next
        save is the newest and a --resume never picks a dropped one.
        """
        import tensorflow as tf

        kept = []
        for path in rundir.checkpoint_paths(self.directory):
            n = int(path.rsplit("-", 1)[1])
            if n > step:
                rundir.remove_partial_checkpoint(self.directory, n)
            else:
                kept.append(path)
        if kept:
            rundir.write_checkpoint_index(self.directory, kept)
        else:
            (self.directory / "checkpoint").unlink(missing_ok=True)
        self.manager = tf.train.CheckpointManager(self.ckpt, str(self.directory), max_to_keep=self.keep)

    def save(self, step: int) -> str:
        import tensorflow as tf

        problem = weight_problem(self.models)
        if problem:
            raise NonFiniteLoss(f"not checkpointing step {step}: {problem}; {self.recovery()}")
        if self.before_save is not None:
            self.before_save()
        existed = f"{self.directory}/ckpt-{step}" in self.manager.checkpoints
        try:
            return self.manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as e:  # disk full, read-only, quota: the earlier checkpoints stay
            if not existed:
                rundir.remove_partial_checkpoint(self.directory, step)
            reason = getattr(e, "strerror", None) or getattr(e, "message", None) or str(e)
            raise DcganError(f"writing checkpoint ckpt-{step} into {self.directory} failed "
                             f"({reason.splitlines()[0]}); free some space there or make it writable, then "
                             f"continue from {Path(self.latest or 'no checkpoint').name}: {self.resume}") from None


class EpochMeter:
    """One epoch's running sums of the step's scalars, and its pace."""

    def __init__(self, names, batch_size: int):
        self.sums = {k: 0.0 for k in names}
        self.n, self.batch_size = 0, batch_size
        self.t0, self.seconds = time.perf_counter(), 0.0

    def add(self, out: dict) -> None:
        for k in self.sums:
            self.sums[k] += out[k]
        self.n += 1

    def img_per_s(self) -> float:
        """So far (for the progress bar)."""
        return self.batch_size * self.n / (time.perf_counter() - self.t0)

    def stop(self) -> None:
        self.seconds = time.perf_counter() - self.t0

    def row(self, epoch: int, step: int) -> dict:
        """The epoch's metrics.jsonl row: the mean of each scalar, images per second, seconds."""
        return {"epoch": epoch, "step": step, **{k: v / max(self.n, 1) for k, v in self.sums.items()},
                "img_per_s": round(self.batch_size * self.n / max(self.seconds, 1e-9), 2),
                "seconds": round(self.seconds, 3)}


# ----------------------------------------------------------------------------
# the run in progress


@dataclass
class Run:
    """A run in progress: where it is, how long it goes, and what both trainers' loops do alike.

    Steps are counted from the start of the run (the checkpoint's step); epoch `e` (from 0)
    holds steps e * steps_per_epoch + 1 ... (e + 1) * steps_per_epoch.
    """

    run_dir: Path
    resume: str  # the command that continues it
    steps_per_epoch: int
    epochs: int
    checkpoints: Checkpoints
    max_steps: int | None = None
    chief: bool = True
    checkpoint_every_steps: int = 0
    checkpoint_every_epochs: int = 1
    signals: StopSignals = field(default_factory=StopSignals)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def finished(self, step: int) -> bool:
        return step >= self.total_steps

    def reached_max(self, step: int) -> bool:
        return self.max_steps is not None and step >= self.max_steps

    def epochs_from(self, step: int) -> range:
        """The epochs left to train (the first one maybe partly trained)."""
        return range(step // self.steps_per_epoch, self.epochs)

    def steps_left(self, epoch: int, step: int) -> range:
        """The steps of `epoch` still to take, counted within the epoch (for the bar)."""
        return range(step - epoch * self.steps_per_epoch, self.steps_per_epoch)

    def after_step(self, step: int, share: Callable[[bool], bool] | None = None) -> bool:
        """Once per step, after it: a periodic checkpoint when due; whether to leave the epoch's loop now."""
        if self.checkpoint_every_steps and step % self.checkpoint_every_steps == 0 and step % self.steps_per_epoch:
            self.checkpoints.save(step)
        return self.signals.stopping(share) or self.reached_max(step)

    def epoch_ended(self, step: int) -> bool:
        """After an epoch's loop: whether the epoch is complete.

        A signal checkpoints and raises TrainingInterrupted; a stop mid-epoch (max_steps)
        checkpoints and returns False.
        """
        if self.signals.received is not None:
            path = self.checkpoints.save(step)
            raise TrainingInterrupted(f"{self.signals.name} at step {step}: checkpoint written to {path}. "
                                      f"Continue with: {self.resume}")
        if step % self.steps_per_epoch == 0 and step > 0:
            return True
        self.checkpoints.save(step)
        return False

    def last_epoch(self, epoch: int, step: int) -> bool:
        return epoch + 1 == self.epochs or self.reached_max(step)

    def checkpoint_epoch(self, epoch: int, step: int) -> str | None:
        """The end-of-epoch checkpoint, every checkpoint_every_epochs epochs and at the last; its path, or None.

        The chief also keeps it as RUN/last-good/ (checked sane by `save`), which periodic saves never rotate out.
        """
        if self.last_epoch(epoch, step) or (epoch + 1) % self.checkpoint_every_epochs == 0:
            path = self.checkpoints.save(step)
            if self.chief:
                rundir.keep_last_good(self.run_dir, path)
            return path
        return None

    def log_epoch(self, row: dict) -> None:
        """The epoch's line in metrics.jsonl (the chief's)."""
        if self.chief:
            rundir.append_metrics(self.run_dir, row)
