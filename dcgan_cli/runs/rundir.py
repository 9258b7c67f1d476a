"""The run directory: its layout, and the one way to read or write each part of it.

    runs/00003-NAME/
      config.json          the frozen TrainConfig (`dcgan train` writes it, --resume and sample read it)
      checkpoints/         tf.train.CheckpointManager: ckpt-STEP.* and its `checkpoint` state file
      samples/             epoch-0001.png ... the fixed-noise grid after each epoch
      metrics.jsonl        one row per epoch ({"epoch", "d_loss", ...}), per evaluation ({"eval": {...}}) and
                           per health finding ({"health": {...}})
      losses.png           the loss curves so far
      tensorboard/         event files
      generator.keras      the final generator (stock Keras layers: loads without this package)
      best/                with --eval-every-epochs: the best-scoring checkpoint, its generator.keras and best.json
      last-good/           the newest end-of-epoch checkpoint (hard links), which periodic saves never rotate out
      healthy/             with --on-collapse rollback: the newest checkpoint the health monitor found healthy
      .dcgan.lock          while a process writes the run: its PID (`lock_run`)

Every module that touches a run goes through here: the trainer writes it,
`sample`, `export` and `evaluate` read it. Nothing here imports TensorFlow at
module level, and nothing here trains or scores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dcgan_cli.config import HISTORY_KEY, FrozenConfig, TrainConfig
from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import DirLock, append_line, atomic_path, write_json, write_text

CONFIG_FILE = "config.json"
CKPT_DIR = "checkpoints"
SAMPLES_DIR = "samples"
METRICS_FILE = "metrics.jsonl"
LOSSES_FILE = "losses.png"
TENSORBOARD_DIR = "tensorboard"
GENERATOR_FILE = "generator.keras"
BEST_DIR = "best"
BEST_FILE = "best.json"
LAST_GOOD_DIR = "last-good"
HEALTHY_DIR = "healthy"  # the newest checkpoint the health monitor found healthy (--on-collapse rollback)
# The names a GAN checkpoint holds its two generators under: training.GAN.checkpoint() writes them,
# `restore` (sample, export, evaluate, stylize) reads one back out. Renaming one orphans every run.
GENERATOR_SLOT = "generator"
DISCRIMINATOR_SLOT = "discriminator"  # what repair restores beside the generator
EMA_SLOT = "g_ema"


# ----------------------------------------------------------------------------
# finding and naming runs


def new_run_dir(runs_dir: str | Path, name: str) -> Path:
    """runs/00003-NAME: numbered so `ls` sorts them; never reuses a number."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    ids = [int(m.group(1)) for p in runs_dir.iterdir() if (m := re.match(r"(\d{5})-", p.name))]
    n = max(ids, default=-1) + 1
    while True:
        path = runs_dir / f"{n:05d}-{name}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


def latest_run(runs_dir: str | Path) -> Path:
    """The newest numbered run under `runs_dir` that has something to sample: a checkpoint or generator.keras.

    A run that died before its first checkpoint (bad data, a full disk) is never "the newest run".
    """
    runs_dir = Path(runs_dir)
    runs = sorted(p for p in runs_dir.glob("[0-9]" * 5 + "-*") if (p / CONFIG_FILE).exists()) if runs_dir.is_dir() else []
    usable = [p for p in runs if (p / GENERATOR_FILE).is_file() or _checkpoint_files(p / CKPT_DIR)]
    if not usable:
        empty = f" ({len(runs)} without a checkpoint yet)" if runs else ""
        raise DcganError(f"no training runs with a checkpoint under {runs_dir}/{empty}; train one with `dcgan train --data DIR` "
                         f"or name one with --run")
    return usable[-1]


def lock_run(run_dir: str | Path) -> DirLock:
    """Lock a run directory for writing (one writer at a time: train, --resume, identity training...).

    A second writer gets a one-line error naming the holder's PID; a lock left by a
    dead process is taken over. Use as a context manager, or call `.release()`.
    """
    return DirLock(run_dir, "dcgan process writing this run")


def run_of(path: str | Path) -> Path | None:
    """The run directory a model file sits in (RUN/generator.keras, RUN/best/generator.keras), or None."""
    path = Path(path)
    for parent in (path.parent, path.parent.parent):
        if (parent / CONFIG_FILE).exists():
            return parent
    return None


def load_config(run_dir: str | Path) -> TrainConfig:
    """The GAN run's frozen config; a folder without one is not a run."""
    return TrainConfig.of_run(run_dir)


def read_history(run_dir: str | Path, file: str = CONFIG_FILE) -> list[dict]:
    """The run config's history: one entry per start or resume ({"event", "step", "time", "changed", "data"})."""
    try:
        history = json.loads((Path(run_dir) / file).read_text()).get(HISTORY_KEY, [])
    except (OSError, ValueError, AttributeError):
        return []
    return history if isinstance(history, list) else []


def save_config(run_dir: str | Path, cfg: FrozenConfig, event: dict | None = None) -> None:
    """Write the run's config file (config.json, identity_config.json: `cfg.FILE`) with its history, atomically.

    The file holds `cfg`, and the history so far plus `event` (when given).
    """
    history = read_history(run_dir, cfg.FILE) + ([{"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **event}]
                                                 if event else [])
    write_text(Path(run_dir) / cfg.FILE,
               json.dumps({**cfg.to_dict(), **({HISTORY_KEY: history} if history else {})}, indent=2) + "\n")


def resume_changes(saved: FrozenConfig, cfg: FrozenConfig) -> dict:
    """{field: [old, new]} for the RESUMABLE fields (and the data's place) that a resume changes."""
    return {k: [getattr(saved, k), getattr(cfg, k)] for k in sorted(saved.RESUMABLE | {"data"})
            if getattr(saved, k) != getattr(cfg, k)}


def recorded_data_id(run_dir: str | Path) -> str | None:
    """The identity (shards.data_id) of the data the run last trained on, from its history; None if unknown."""
    ids = [e.get("data_id") for e in read_history(run_dir) if isinstance(e, dict) and e.get("data_id")]
    return ids[-1] if ids else None


def sample_grid_path(run_dir: str | Path, epoch: int) -> Path:
    """samples/epoch-0007.png: zero-padded so `ls` sorts them."""
    return Path(run_dir) / SAMPLES_DIR / f"epoch-{epoch:04d}.png"


def append_metrics(run_dir: str | Path, row: dict) -> None:
    """One JSON line in metrics.jsonl: an epoch's row, or {"eval": result}."""
    append_line(Path(run_dir) / METRICS_FILE, json.dumps(row))


def forget_metrics_after(run_dir: str | Path, step: int) -> int:
    """Drop metrics.jsonl rows of steps after `step` (atomically); returns how many went.

    A run resumed from a checkpoint older than its last logged epoch (checkpoints
    every few epochs, then a crash) trains those epochs again and logs them again.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return 0
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    keep = []
    for ln in lines:
        try:
            row = json.loads(ln)
        except json.JSONDecodeError:  # a torn last line of a killed run
            continue
        if ((row.get("eval") or row.get("health") or row).get("step") or 0) <= step:
            keep.append(ln)
    if len(keep) != len(lines):
        write_text(path, "".join(ln + "\n" for ln in keep))
    return len(lines) - len(keep)


# ----------------------------------------------------------------------------
# the resume rule


def check_resume(run_dir: str | Path, cfg: FrozenConfig) -> None:
    """Refuse to resume `run_dir` with `cfg` unless it has a checkpoint and the resume rule allows `cfg`.

    Either trainer's runs (the rule is `FrozenConfig.resumed`, with each config's RESUMABLE fields).
    The data may move (the trainer checks its shape against the config).
    """
    run_dir = Path(run_dir)
    if not resume_checkpoints(run_dir / CKPT_DIR, run_dir)[0]:
        raise DcganError(f"{run_dir} has no checkpoint to resume from; start a new run without --resume")
    type(cfg).of_run(run_dir).resumed(run_dir, **cfg.to_dict())


def resume_config(run_dir: str | Path, **changes) -> TrainConfig:
    """The GAN run's saved config with `changes` (None values ignored), under the resume rule."""
    return load_config(run_dir).resumed(run_dir, **changes)


# ----------------------------------------------------------------------------
# checkpoints


_CKPT_INDEX = re.compile(r"ckpt-(\d+)\.index")


def _checkpoint_files(directory: Path) -> list[str]:
    """ckpt-N prefixes whose .index file is on disk, oldest first (the index is written last, so complete)."""
    if not directory.is_dir():
        return []
    steps = sorted(int(m.group(1)) for p in directory.iterdir() if (m := _CKPT_INDEX.fullmatch(p.name)))
    return [str(directory / f"ckpt-{n}") for n in steps]


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
    Call it holding the run's lock (`lock_run`).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    for p in directory.glob("ckpt-*_temp*"):
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
    for p in list(directory.glob(f"ckpt-{step}_temp*")) + list(directory.glob(f"ckpt-{step}.*")):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    for p in directory.glob("checkpoint.tmp*"):  # the index's own temp file
        p.unlink(missing_ok=True)


def resume_checkpoints(directory: str | Path, run_dir: str | Path,
                       warn: Callable[[str], None] | None = None) -> tuple[list[str], Path]:
    """(the checkpoints to restore, oldest first; the folder they are in).

    Those of `directory` (RUN/checkpoints/, or the chief's for another worker); when it
    has none (lost, emptied), RUN/last-good/'s: the newest end-of-epoch checkpoint,
    which periodic saves never rotate out.
    """
    paths = checkpoint_paths(directory, warn)
    if paths:
        return paths, Path(directory)
    return checkpoint_paths(Path(run_dir) / LAST_GOOD_DIR, warn), Path(run_dir) / LAST_GOOD_DIR


def keep_last_good(run_dir: str | Path, path: str, slot: str = LAST_GOOD_DIR) -> Path:
    """Make RUN/last-good/ (or RUN/`slot`/) hold the checkpoint `path` (hard links: no copy, no extra space).

    The trainer calls this after each end-of-epoch save, once the weights passed
    `training`'s sanity check; periodic saves (--checkpoint-every-steps) rotate the
    checkpoints/ folder but never this one, and a NaN never writes anything. The
    health monitor keeps the newest checkpoint it found healthy in RUN/healthy/ alike.
    """
    good = Path(run_dir) / slot
    tmp = good.with_name(f".{slot}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    src = Path(path)
    for f in src.parent.glob(src.name + ".*"):
        try:
            os.link(f, tmp / f.name)
        except OSError:  # a file system without hard links
            shutil.copy2(f, tmp / f.name)
    write_checkpoint_index(tmp, [str(tmp / src.name)])
    old = good.with_name(f".{slot}.old-{os.getpid()}")
    if good.exists():
        os.replace(good, old)
    os.replace(tmp, good)
    shutil.rmtree(old, ignore_errors=True)
    return good / src.name


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


@dataclass
class RunGenerator:
    """A generator restored from a run, and what it is (for the messages)."""

    model: object
    config: TrainConfig
    run_dir: Path
    checkpoint: str  # the path really restored (after any fall-back)
    ema: bool  # True when these are the EMA weights
    best: bool = False  # True when restored from RUN/best/

    @property
    def step(self) -> int | None:
        m = re.search(r"ckpt-(\d+)$", self.checkpoint)
        return int(m.group(1)) if m else None

    @property
    def checkpoint_name(self) -> str:
        return Path(self.checkpoint).name

    def describe(self) -> str:
        weights = "EMA weights" if self.ema else "raw weights"
        where = ", best checkpoint" if self.best else ""
        return f"{self.run_dir} at step {self.step} ({weights}{where})"


def restore(run_dir: str | Path, *, ema: bool = True, best: bool = False,
            warn: Callable[[str], None] | None = None) -> RunGenerator:
    """The generator of a run's newest readable checkpoint (RUN/best/'s with `best`).

    The EMA weights when the run kept them and `ema`. The generator is built from
    stock Keras layers (not training's fast ones, which hold the same weights under
    the same names): inference is the same, and a saved copy loads without this package.
    """
    import tensorflow as tf

    from dcgan_cli.gan.model import build_generator

    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    if best:
        directory = run_dir / BEST_DIR
        paths = checkpoint_paths(directory, warn)
    else:
        paths, directory = resume_checkpoints(run_dir / CKPT_DIR, run_dir, warn)
    if not paths:
        if best:
            raise DcganError(f"{run_dir} has no best checkpoint; train it with --eval-every-epochs N to keep one")
        raise DcganError(f"{run_dir} has no checkpoint yet; train it (`dcgan train --resume {run_dir}`) first")
    g = build_generator(cfg.image_size, cfg.channels, cfg.latent_dim, cfg.g_filters, cfg.init_std, fast=False,
                        activation=cfg.g_activation)
    use_ema = ema and cfg.ema > 0
    key = EMA_SLOT if use_ema else GENERATOR_SLOT
    path = restore_first_readable(tf.train.Checkpoint(**{key: g}), paths, directory, partial=True, warn=warn)
    return RunGenerator(g, cfg, run_dir, path, use_ema, best)


# ----------------------------------------------------------------------------
# generator files


def save_generator(generator, path: str | Path) -> Path:
    """Write `generator` as a .keras file of stock Keras layers in float32, atomically.

    The one way a generator is saved (RUN/generator.keras, RUN/best/generator.keras,
    `dcgan export`): the file loads with `keras.saving.load_model` in a process that
    never imports this package.
    """
    from dcgan_cli.gan.model import portable

    with atomic_path(path) as tmp:
        portable(generator, dtype="float32").save(tmp)
    return Path(path)


def load_generator_file(path: str | Path):
    """A generator saved as .keras (a run's generator.keras or `dcgan export`), checked to be one."""
    path = Path(path)
    if not path.is_file():
        raise DcganError(f"no model file at {path}; pass a run's generator.keras or one from `dcgan export`")
    if path.suffix != ".keras":
        raise DcganError(f"{path.name} is not a .keras file; pass a generator saved as .keras "
                         f"(a run's generator.keras, or `dcgan export RUN OUT.keras`)")
    import keras

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # a zip that is not a Keras archive, or one from an unknown Keras: several types
        first_line = (str(e).strip().splitlines() or [""])[0][:160]
        raise DcganError(f"cannot read {path} as a Keras model ({type(e).__name__}: {first_line}); "
                         f"pass a generator saved by `dcgan train` or `dcgan export`") from None
    check_generator(model, path)
    return model


def is_generator_file(path: str | Path) -> bool:
    """Whether `path` is a .keras file that `save_generator` wrote (read from its config, without loading it)."""
    import zipfile

    path = Path(path)
    if not path.is_file() or path.is_symlink():
        return False
    try:
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError):
        return False
    return isinstance(config, dict) and isinstance(config.get("config"), dict) \
        and config["config"].get("name") == "generator"


def check_generator(model, where) -> None:
    """A generator maps (None, latent_dim) to (None, H, W, 1 or 3); refuse anything else by name."""
    ins = [tuple(t.shape) for t in getattr(model, "inputs", None) or []]
    outs = [tuple(t.shape) for t in getattr(model, "outputs", None) or []]
    if len(ins) == 1 and len(ins[0]) == 2 and len(outs) == 1 and len(outs[0]) == 4 and outs[0][-1] in (1, 3):
        return
    shapes = f"it maps {', '.join(map(str, ins)) or 'nothing'} to {', '.join(map(str, outs)) or 'nothing'}"
    raise DcganError(f"{where} is not a generator ({shapes}); a generator maps latents (None, latent_dim) "
                     f"to images (None, H, W, C): pass a run's generator.keras")


# ----------------------------------------------------------------------------
# best/


def read_best(run_dir: str | Path) -> dict | None:
    """best.json ({"metric", "value", "epoch", "step", "checkpoint"}), or None when there is none."""
    try:
        return json.loads((Path(run_dir) / BEST_DIR / BEST_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def save_best(run_dir: str | Path, ckpt, generator, record: dict, step: int) -> Path:
    """Replace RUN/best/ with this checkpoint, its generator and `record`; returns best/.

    best.json is written last, so it only ever names a complete best/.
    """
    import tensorflow as tf

    best_dir = Path(run_dir) / BEST_DIR
    path = tf.train.CheckpointManager(ckpt, str(best_dir), max_to_keep=1).save(checkpoint_number=step)
    save_generator(generator, best_dir / GENERATOR_FILE)
    write_json(best_dir / BEST_FILE, {**record, "checkpoint": Path(path).name})
    return best_dir
