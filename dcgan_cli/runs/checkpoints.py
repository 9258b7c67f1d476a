"""Checkpoints: the one owner of everything about them, for both trainers.

    RUN/checkpoints/   ckpt-STEP.index, ckpt-STEP.data-*, and the `checkpoint` index file
                       (a tf.train.CheckpointManager's), the newest few kept
    RUN/last-good/     the newest end-of-epoch checkpoint (hard links), never rotated out
    RUN/healthy/       with --on-collapse rollback: the newest checkpoint found healthy
    RUN/best/          with --eval-every-epochs: the best-scoring checkpoint and best.json

Here: the ckpt-STEP names (`checkpoint_name`, `checkpoint_step`); finding them (`checkpoint_paths`, from the
index or, when it is damaged, from the files); repairing the index and removing what a killed save left;
the rule that no NaN or exploding weights are ever saved (`weight_problem`); saving (`Checkpoints.save`)
and restoring with its fall-backs (checkpoints/ -> last-good/, a damaged checkpoint -> the one before:
`find_resumable`, `restore_first_readable`); the kept copies (`keep_copy`: last-good/, healthy/); best/.
Files and tf.train.Checkpoint objects only: what is restored into them (a generator, a whole GAN) is the
caller's. TensorFlow is imported inside the functions that need it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import os_error_reason, write_json, write_text
from dcgan_cli.runs.layout import BEST_DIR, BEST_FILE, LAST_GOOD_DIR

# The names a GAN checkpoint holds its networks under: gan/step.GAN.checkpoint() writes them, a generator
# is restored out of one by slot (sample, export, evaluate, stylize, repair). Renaming one orphans every run.
GENERATOR_SLOT = "generator"
DISCRIMINATOR_SLOT = "discriminator"
EMA_SLOT = "g_ema"

_PREFIX = "ckpt-"
_CKPT_INDEX = re.compile(re.escape(_PREFIX) + r"(\d+)\.index")
_CKPT_PATH = re.compile(re.escape(_PREFIX) + r"(\d+)$")


class NonFiniteLoss(DcganError):
    """A loss became NaN/Inf, or the weights blew up; nothing is checkpointed, the last good checkpoint is kept."""


# Trainable weights past this size are not a model any more (DCGAN's start at N(0, 0.02); Adam at a
# sane rate moves each by about the rate per step): a checkpoint of them would only lead to NaN again.
WEIGHT_LIMIT = 1e4


# ----------------------------------------------------------------------------
# names


def checkpoint_name(step: int) -> str:
    """The checkpoint of step `step`: 'ckpt-STEP' (the prefix of its .index and .data files)."""
    return f"{_PREFIX}{step}"


def checkpoint_step(path: str | Path) -> int | None:
    """The step a checkpoint path (DIR/ckpt-STEP) holds, or None when it is not one."""
    m = _CKPT_PATH.search(str(path))
    return int(m.group(1)) if m else None


# ----------------------------------------------------------------------------
# finding them, and the index


def _checkpoint_files(directory: Path) -> list[str]:
    """ckpt-N prefixes whose .index file is on disk, oldest first (the index is written last, so complete)."""
    if not directory.is_dir():
        return []
    steps = sorted(int(m.group(1)) for p in directory.iterdir() if (m := _CKPT_INDEX.fullmatch(p.name)))
    return [str(directory / checkpoint_name(n)) for n in steps]


def _scan_checkpoints(directory: Path) -> tuple[list[str], str | None]:
    """(the checkpoints, oldest first; what is wrong with the `checkpoint` index file, or None)."""
    import tensorflow as tf

    if not directory.is_dir():
        return [], None
    found = _checkpoint_files(directory)
    try:
        state = tf.train.get_checkpoint_state(str(directory))
    except Exception as e:  # empty, garbage, not UTF-8: ValueError, UnicodeDecodeError, protobuf's ParseError
        return found, f"is unreadable ({type(e).__name__})"
    listed = list(state.all_model_checkpoint_paths) if state else []
    if not listed:
        return found, (("is missing" if not (directory / "checkpoint").exists() else "lists no checkpoint")
                       if found else None)
    missing = [Path(p).name for p in listed if not Path(p + ".index").exists()]
    if missing:
        return found, f"names {', '.join(missing)}, which is not on disk"
    return listed, None


def checkpoint_paths(directory: str | Path, warn: Callable[[str], None] | None = None) -> list[str]:
    """The checkpoints in `directory`, oldest first.

    From the `checkpoint` index file a CheckpointManager keeps; when that file is
    damaged (empty after a power cut, garbage, naming files that are gone), from
    the ckpt-N.index files themselves, with a warning. Never writes.
    """
    directory = Path(directory)
    paths, problem = _scan_checkpoints(directory)
    if problem and paths and warn:
        warn(f"{directory / 'checkpoint'} {problem}; using the checkpoints found on disk "
             f"({', '.join(Path(p).name for p in paths)})")
    return paths


def repair_checkpoints(directory: str | Path, warn: Callable[[str], None] | None = None) -> list[str]:
    """Make `directory` safe for a CheckpointManager; returns its checkpoints, oldest first.

    A damaged `checkpoint` index is rewritten from the ckpt-N.index files (with a
    warning), and `ckpt-N_temp` folders that a kill left mid-save are removed.
    Call it holding the run's lock (`layout.lock_run`).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    for p in directory.glob(f"{_PREFIX}*_temp*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    paths, problem = _scan_checkpoints(directory)
    if problem and paths:
        if warn:
            warn(f"{directory / 'checkpoint'} {problem}; rebuilt it from the checkpoints on disk "
                 f"({', '.join(Path(p).name for p in paths)})")
        write_checkpoint_index(directory, paths)
    elif problem:  # an index naming nothing usable: without it the manager starts clean
        (directory / "checkpoint").unlink(missing_ok=True)
    return paths


def write_checkpoint_index(directory: str | Path, paths: list[str]) -> None:
    """The `checkpoint` file of a CheckpointManager listing `paths` (oldest first), written atomically."""
    names = [Path(p).name for p in paths]
    # The timestamps tell a CheckpointManager that these are its own to rotate (not preserved forever).
    times = [os.stat(Path(directory) / f"{n}.index").st_mtime for n in names]
    lines = ([f'model_checkpoint_path: "{names[-1]}"'] + [f'all_model_checkpoint_paths: "{n}"' for n in names]
             + [f"all_model_checkpoint_timestamps: {t!r}" for t in times]
             + [f"last_preserved_timestamp: {min(times) - 1!r}"])
    write_text(Path(directory) / "checkpoint", "\n".join(lines) + "\n")


def remove_partial_checkpoint(directory: str | Path, step: int) -> None:
    """Delete what a failed save of ckpt-`step` left (its temp folder, its files), nothing else."""
    directory = Path(directory)
    name = checkpoint_name(step)
    for p in list(directory.glob(f"{name}_temp*")) + list(directory.glob(f"{name}.*")):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    for p in directory.glob("checkpoint.tmp*"):  # the index's own temp file
        p.unlink(missing_ok=True)


def find_resumable(directory: str | Path, run_dir: str | Path, warn: Callable[[str], None] | None = None, *,
                   none: str = "has no checkpoint to resume from; start a new run without --resume",
                   ) -> tuple[list[str], Path]:
    """(the checkpoints to restore, oldest first; the folder they are in); none is a one-line error.

    Those of `directory` (RUN/checkpoints/, or the chief's for another worker); when it
    has none (lost, emptied), RUN/last-good/'s: the newest end-of-epoch checkpoint,
    which periodic saves never rotate out. None is the error "RUN `none`": the one place it is checked.
    """
    paths = checkpoint_paths(directory, warn)
    if paths:
        return paths, Path(directory)
    last_good = Path(run_dir) / LAST_GOOD_DIR
    paths = checkpoint_paths(last_good, warn)
    if not paths:
        raise DcganError(f"{run_dir} {none}")
    return paths, last_good


# ----------------------------------------------------------------------------
# restoring


def restore_first_readable(ckpt, paths: list[str], where, *, partial: bool = False,
                           warn: Callable[[str], None] | None = None) -> str | None:
    """Restore the newest of `paths` that reads; a corrupt one falls back to the one before.

    Returns the path really restored (None when there are no paths). `partial`:
    `ckpt` holds only part of what was saved (a generator out of a whole GAN).
    """
    last_error = None
    for path in reversed(paths):
        try:
            status = ckpt.restore(path)
            (status.expect_partial() if partial else status).assert_existing_objects_matched()
            return path
        except Exception as e:  # truncated or unreadable files: tf raises several types
            last_error = e
            if warn:
                warn(f"checkpoint {path} could not be read ({type(e).__name__}); trying the previous one")
    if paths:
        raise DcganError(f"no checkpoint in {where} could be read ({type(last_error).__name__}); "
                         f"the run's checkpoints are damaged: start a new run")
    return None


# ----------------------------------------------------------------------------
# what may be saved


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
# a run's checkpoints/


class Checkpoints:
    """A run's checkpoints/ through a tf.train.CheckpointManager, with the rules of writing and reading them.

    `save` refuses NaN or exploding weights of `models` (NonFiniteLoss, with `advice(last
    checkpoint)` saying what to run), calls `before_save` (state the checkpoint must hold fresh),
    and turns a full or read-only disk into one line, leaving the earlier checkpoints as they were.
    `restore` falls back from checkpoints/ to last-good/ and from a damaged checkpoint to the one before.
    """

    def __init__(self, ckpt, directory: Path, run_dir: Path, *, keep: int, resume_command: str, models=(),
                 advice: Callable[[str | None], str], before_save: Callable[[], None] | None = None):
        import tensorflow as tf

        self.ckpt, self.directory, self.run_dir = ckpt, Path(directory), Path(run_dir)
        self.keep, self.resume_command = keep, resume_command
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
        paths, where = find_resumable(source, self.run_dir)
        return restore_first_readable(self.ckpt, paths, where, warn=lambda m: log(f"Warning: {m}"))

    def restore_path(self, path: str) -> None:
        """Restore exactly the checkpoint `path` (a rollback's healthy one)."""
        restore_first_readable(self.ckpt, [path], Path(path).parent)

    def drop_after(self, step: int) -> None:
        """Delete the checkpoints after `step` (a rollback: they hold the training that went wrong).

        The index is rewritten from the ones kept and the manager re-made from it, so the next
        save is the newest and a --resume never picks a dropped one.
        """
        import tensorflow as tf

        kept = []
        for path in checkpoint_paths(self.directory):
            n = checkpoint_step(path)
            if n > step:
                remove_partial_checkpoint(self.directory, n)
            else:
                kept.append(path)
        if kept:
            write_checkpoint_index(self.directory, kept)
        else:
            (self.directory / "checkpoint").unlink(missing_ok=True)
        self.manager = tf.train.CheckpointManager(self.ckpt, str(self.directory), max_to_keep=self.keep)

    def save(self, step: int) -> str:
        """Write ckpt-`step`; returns its path."""
        import tensorflow as tf

        problem = weight_problem(self.models)
        if problem:
            raise NonFiniteLoss(f"not checkpointing step {step}: {problem}; {self.recovery()}")
        if self.before_save is not None:
            self.before_save()
        name = checkpoint_name(step)
        existed = f"{self.directory}/{name}" in self.manager.checkpoints
        try:
            return self.manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as e:  # disk full, read-only, quota: the earlier checkpoints stay
            if not existed:
                remove_partial_checkpoint(self.directory, step)
            raise DcganError(f"writing checkpoint {name} into {self.directory} failed ({os_error_reason(e)}); free "
                             f"some space there or make it writable, then continue from "
                             f"{Path(self.latest or 'no checkpoint').name}: {self.resume_command}") from None


# ----------------------------------------------------------------------------
# kept copies: last-good/, healthy/


def keep_copy(run_dir: str | Path, path: str, slot: str = LAST_GOOD_DIR) -> Path:
    """Make RUN/last-good/ (or RUN/`slot`/) hold the checkpoint `path` (hard links: no copy, no extra space).

    The trainers keep each end-of-epoch save as last-good/, once `Checkpoints.save` found
    the weights sane; periodic saves (--checkpoint-every-steps) rotate the checkpoints/
    folder but never this one, and a NaN never writes anything. The health monitor keeps
    the newest checkpoint it found healthy in RUN/healthy/ alike. Returns the copy's path.
    """
    kept = Path(run_dir) / slot
    tmp = kept.with_name(f".{slot}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    src = Path(path)
    for f in src.parent.glob(src.name + ".*"):
        try:
            os.link(f, tmp / f.name)
        except OSError:  # a file system without hard links
            shutil.copy2(f, tmp / f.name)
    write_checkpoint_index(tmp, [str(tmp / src.name)])
    old = kept.with_name(f".{slot}.old-{os.getpid()}")
    if kept.exists():
        os.replace(kept, old)
    os.replace(tmp, kept)
    shutil.rmtree(old, ignore_errors=True)
    return kept / src.name


# ----------------------------------------------------------------------------
# best/


def read_best(run_dir: str | Path) -> dict | None:
    """best.json ({"metric", "value", "epoch", "step", "checkpoint"}), or None when there is none."""
    try:
        return json.loads((Path(run_dir) / BEST_DIR / BEST_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def save_best(run_dir: str | Path, ckpt, record: dict, step: int,
              also: Callable[[Path], None] | None = None) -> Path:
    """Replace RUN/best/ with this checkpoint, what `also(best/)` writes beside it, and `record`; returns best/.

    best.json is written last, so it only ever names a complete best/.
    """
    import tensorflow as tf

    best_dir = Path(run_dir) / BEST_DIR
    path = tf.train.CheckpointManager(ckpt, str(best_dir), max_to_keep=1).save(checkpoint_number=step)
    if also is not None:
        also(best_dir)
    write_json(best_dir / BEST_FILE, {**record, "checkpoint": Path(path).name})
    return best_dir
