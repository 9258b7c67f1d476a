"""One training run's lifecycle, the same for both trainers (`dcgan train`, `dcgan identity train`).

    place the run (numbered new, or the one --resume names)   place_run, run_name
      hold it: the lock, failed writes in one line, a new run  hold
        that died before its first checkpoint removed again
      reopen for --resume: checkpoints repaired, the rule       reopen, check_resume
      restore or initialise, the resume bookkeeping             checkpoints.Checkpoints.restore, announce_resume,
                                                                record
      epochs of steps, asked of Run by the trainer's loop,      Run: checkpoint_due, leave_epoch, epoch_complete,
        which saves where it is seen to save                    epoch_checkpoint_due; save_last_good,
                                                                save_and_stop
        Ctrl-C / SIGTERM: finish the step, checkpoint, exit 130 StopSignals
        never a checkpoint of NaN or exploding weights          checkpoints.Checkpoints.save
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

from dcgan_cli.config import FrozenConfig
from dcgan_cli.errors import DcganError, TrainingInterrupted
from dcgan_cli.fsutil import describe_os_error
from dcgan_cli.runs import checkpoints, layout
from dcgan_cli.runs.checkpoints import Checkpoints


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
        make = lambda: layout.new_run_dir(cfg.runs_dir, name)  # noqa: E731
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
    lock = layout.lock_run(run_dir) if chief else None
    try:
        try:
            yield
        except OSError as e:  # the checkpoints written so far are intact
            resumable = checkpoints.checkpoint_paths(run_dir / layout.CKPT_DIR)
            raise DcganError(describe_os_error(e, "writing the run failed")
                             + (f"; then continue: {resume_command(cfg, run_dir)}" if resumable else "")) from None
    except BaseException:
        if new and chief and not checkpoints.checkpoint_paths(run_dir / layout.CKPT_DIR):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            lock.release()


def reopen(run_dir: Path, cfg: FrozenConfig, log: Callable[[str], None], *, chief: bool = True) -> None:
    """Before resuming `run_dir` with `cfg`, holding its lock: repair its checkpoints, apply the resume rule.

    A damaged index is rebuilt from the files and what a killed save left removed (the chief
    only); then the run must have a checkpoint and `cfg` may differ from its config only as
    RESUMABLE allows (check_resume), whoever calls the trainer.
    """
    if chief:
        checkpoints.repair_checkpoints(run_dir / layout.CKPT_DIR, warn=lambda m: log(f"Warning: {m}"))
    check_resume(run_dir, cfg)


def check_resume(run_dir: str | Path, cfg: FrozenConfig) -> None:
    """Refuse to resume `run_dir` with `cfg` unless it has a checkpoint and the resume rule allows `cfg`.

    Either trainer's runs (the rule is `FrozenConfig.resumed`, with each config's RESUMABLE fields).
    The data may move (the trainer checks its shape against the config).
    """
    run_dir = Path(run_dir)
    checkpoints.find_resumable(run_dir / layout.CKPT_DIR, run_dir)
    type(cfg).of_run(run_dir).resumed(run_dir, **cfg.to_dict())


# ----------------------------------------------------------------------------
# config and history


def announce_resume(run: "Run", saved_cfg: FrozenConfig, cfg: FrozenConfig, restored: str, step: int,
                    log: Callable[[str], None]) -> dict:
    """Say where the run resumed and what changed; returns the history event (the trainer may add to it)."""
    where = f"epoch {step // run.steps_per_epoch + 1}/{run.epochs}" if not run.finished(step) \
        else f"all {run.epochs} epochs done"
    log(f"Resumed from {restored} at step {step} ({where})")
    changes = layout.resume_changes(saved_cfg, cfg)
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
    layout.save_config(run.run_dir, cfg, event)
    if event["event"] in ("resume", "rollback"):
        layout.forget_metrics_after(run.run_dir, event["step"])


# ----------------------------------------------------------------------------
# signals, checkpoints, the epoch's numbers


class StopSignals:
    """Ctrl-C and SIGTERM while training, as a context manager around the loop.

    The first signal asks the loop to stop after the current step (it checkpoints and raises
    TrainingInterrupted with the --resume command); a second one leaves at once, unless that
    checkpoint is being written (`saving`: it is finished first), and still says what was saved
    and the command that resumes from it (`left_at_once`, set by the Run). The previous handlers
    come back on exit.
    """

    def __init__(self) -> None:
        self.received: int | None = None  # the signal this process got, the moment it got it
        self.stop = False  # what the workers decided at the last check: `received` may come later
        self.saving = False  # the stop's checkpoint is being written: a second signal waits for it
        self.left_at_once: Callable[[str], str] | None = None  # signal name -> the message for leaving at once
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        self._previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, kind, value, tb) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        if kind is KeyboardInterrupt and self.received is not None and self.left_at_once is not None:
            raise TrainingInterrupted(self.left_at_once(self.name)) from None

    def _on_signal(self, signum, frame) -> None:
        if self.received is not None and not self.saving:  # a second Ctrl-C: leave now
            raise KeyboardInterrupt
        self.received = self.received or signum

    def stopping(self, share: Callable[[bool], bool] | None = None) -> bool:
        """Whether to stop after this step; `share` (several workers) stops every worker when any got one.

        The answer is what was shared, never `received` read again afterwards: a signal that lands
        during the all-reduce counts at the next step on every worker, not at this one on one worker
        (which would leave its peers waiting at the next step's collectives for a worker that has gone).
        """
        mine = self.received is not None
        self.stop = share(mine) if share is not None else mine
        if self.stop and self.received is None:
            self.received = signal.SIGTERM  # it came to another worker
        return self.stop

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name


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
    resume_command: str  # the command that continues it
    steps_per_epoch: int
    epochs: int
    checkpoints: Checkpoints
    max_steps: int | None = None
    chief: bool = True
    checkpoint_every_steps: int = 0
    checkpoint_every_epochs: int = 1
    signals: StopSignals = field(default_factory=StopSignals)

    def __post_init__(self) -> None:
        self.signals.left_at_once = self._left_at_once

    def _left_at_once(self, name: str) -> str:
        """A second signal left mid-step: what the newest checkpoint on disk is, and how to go on from it."""
        kept = checkpoints.checkpoint_paths(self.run_dir / layout.CKPT_DIR)
        saved = (f"the newest checkpoint is {kept[-1]} (step {checkpoints.checkpoint_step(kept[-1])})" if kept
                 else "no checkpoint was written yet")
        return (f"{name} twice: left at once, without the stop's checkpoint; {saved}. "
                f"Continue with: {self.resume_command}")

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

    def checkpoint_due(self, step: int) -> bool:
        """Whether a periodic checkpoint (--checkpoint-every-steps) falls on `step` (not on an epoch's end)."""
        return bool(self.checkpoint_every_steps and step % self.checkpoint_every_steps == 0
                    and step % self.steps_per_epoch)

    def leave_epoch(self, step: int, share: Callable[[bool], bool] | None = None) -> bool:
        """Whether to leave the epoch's loop after `step`: a signal (on any worker, with `share`), or max_steps."""
        return self.signals.stopping(share) or self.reached_max(step)

    def epoch_complete(self, step: int) -> bool:
        """Whether the epoch's loop ran to its end (not left by a signal or max_steps)."""
        return not self.signals.stop and step % self.steps_per_epoch == 0 and step > 0

    def last_epoch(self, epoch: int, step: int) -> bool:
        return epoch + 1 == self.epochs or self.reached_max(step)

    def epoch_checkpoint_due(self, epoch: int, step: int) -> bool:
        """Whether `epoch` ends with a checkpoint: every checkpoint_every_epochs epochs, and the last."""
        return self.last_epoch(epoch, step) or (epoch + 1) % self.checkpoint_every_epochs == 0

    def save_last_good(self, step: int) -> str:
        """Write the checkpoint of `step` (an epoch's end); the chief keeps it as RUN/last-good/ too. Returns its path.

        `Checkpoints.save` refuses NaN or exploding weights, so last-good/ only ever holds sane ones."""
        path = self.checkpoints.save(step)
        if self.chief:
            checkpoints.keep_copy(self.run_dir, path)
        return path

    def save_and_stop(self, step: int) -> None:
        """Left mid-epoch: checkpoint; after a signal, raise TrainingInterrupted with the command to continue."""
        self.signals.saving = self.signals.stop  # a second signal now would lose the steps since the last one
        try:
            path = self.checkpoints.save(step)
        finally:
            self.signals.saving = False
        if self.signals.stop:
            raise TrainingInterrupted(f"{self.signals.name} at step {step}: checkpoint written to {path}. "
                                      f"Continue with: {self.resume_command}")

    def log_epoch(self, row: dict) -> None:
        """The epoch's line in metrics.jsonl (the chief's)."""
        if self.chief:
            layout.append_metrics(self.run_dir, row)
