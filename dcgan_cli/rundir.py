"""The run directory: its layout, and the one way to read or write each part of it.

    runs/00003-NAME/
      config.json          the frozen TrainConfig (`dcgan train` writes it, --resume and sample read it)
      checkpoints/         tf.train.CheckpointManager: ckpt-STEP.* and its `checkpoint` state file
      samples/             epoch-0001.png ... the fixed-noise grid after each epoch
      metrics.jsonl        one row per epoch ({"epoch", "d_loss", ...}) and per evaluation ({"eval": {...}})
      losses.png           the loss curves so far
      tensorboard/         event files
      generator.keras      the final generator (stock Keras layers: loads without this package)
      best/                with --eval-every: the best-scoring checkpoint, its generator.keras and best.json

Every module that touches a run goes through here: the trainer writes it,
`sample`, `export` and `evaluate` read it. Nothing here imports TensorFlow at
module level, and nothing here trains or scores.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dcgan_cli.config import TrainConfig
from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import append_line, atomic_path, write_json, write_text

CONFIG_FILE = "config.json"
CKPT_DIR = "checkpoints"
SAMPLES_DIR = "samples"
METRICS_FILE = "metrics.jsonl"
LOSSES_FILE = "losses.png"
TENSORBOARD_DIR = "tensorboard"
GENERATOR_FILE = "generator.keras"
BEST_DIR = "best"
BEST_FILE = "best.json"

# The config fields `--resume` may change: how long and how it trains, never what it trains.
RESUMABLE = frozenset({"epochs", "checkpoint_every", "precision", "xla", "strategy", "cache", "eval_every",
                       "eval_samples"})
# Fields that name where things are rather than what is trained (data may move; the run dir is given).
_PLACES = frozenset({"data", "runs_dir", "run_name"})


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
    """The newest numbered run under `runs_dir` that has a config."""
    runs_dir = Path(runs_dir)
    runs = sorted(p for p in runs_dir.glob("[0-9]" * 5 + "-*") if (p / CONFIG_FILE).exists()) if runs_dir.is_dir() else []
    if not runs:
        raise DcganError(f"no training runs under {runs_dir}/; train one with `dcgan train --data DIR` "
                         f"or name one with --run")
    return runs[-1]


def run_of(path: str | Path) -> Path | None:
    """The run directory a model file sits in (RUN/generator.keras, RUN/best/generator.keras), or None."""
    path = Path(path)
    for parent in (path.parent, path.parent.parent):
        if (parent / CONFIG_FILE).exists():
            return parent
    return None


def load_config(run_dir: str | Path) -> TrainConfig:
    """The run's frozen config; a folder without one is not a run."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise DcganError(f"{run_dir} is not a run directory (no {CONFIG_FILE}); pass a folder under runs/")
    return TrainConfig.load(run_dir / CONFIG_FILE)


def save_config(run_dir: str | Path, cfg: TrainConfig) -> None:
    write_text(Path(run_dir) / CONFIG_FILE, cfg.to_json())


def sample_grid_path(run_dir: str | Path, epoch: int) -> Path:
    """samples/epoch-0007.png: zero-padded so `ls` sorts them."""
    return Path(run_dir) / SAMPLES_DIR / f"epoch-{epoch:04d}.png"


def append_metrics(run_dir: str | Path, row: dict) -> None:
    """One JSON line in metrics.jsonl: an epoch's row, or {"eval": result}."""
    append_line(Path(run_dir) / METRICS_FILE, json.dumps(row))


# ----------------------------------------------------------------------------
# the resume rule


def check_resume(run_dir: str | Path, cfg: TrainConfig) -> None:
    """Refuse to resume `run_dir` with `cfg` unless it has a checkpoint and only RESUMABLE fields change.

    The data may move (the trainer checks its shape against the config).
    """
    run_dir = Path(run_dir)
    if not checkpoint_paths(run_dir / CKPT_DIR):
        raise DcganError(f"{run_dir} has no checkpoint to resume from; start a new run without --resume")
    _refuse_fixed_changes(run_dir, load_config(run_dir), cfg.to_dict())


def resume_config(run_dir: str | Path, **changes) -> TrainConfig:
    """The run's saved config with `changes` (None values ignored), under the same rule as `check_resume`."""
    saved = load_config(run_dir)
    given = {k: v for k, v in changes.items() if v is not None}
    _refuse_fixed_changes(Path(run_dir), saved, given)
    return saved.replace(**given)


def _refuse_fixed_changes(run_dir: Path, saved: TrainConfig, values: dict) -> None:
    fixed = sorted(k for k, v in values.items() if k not in RESUMABLE | _PLACES and v != getattr(saved, k))
    if fixed:
        raise DcganError(f"cannot change {', '.join('--' + k.replace('_', '-') for k in fixed)} when resuming "
                         f"{run_dir}; start a new run for a different setup")


# ----------------------------------------------------------------------------
# checkpoints


def checkpoint_paths(directory: str | Path) -> list[str]:
    """The checkpoints a CheckpointManager recorded in `directory`, oldest first."""
    import tensorflow as tf

    directory = Path(directory)
    state = tf.train.get_checkpoint_state(str(directory)) if directory.is_dir() else None
    return list(state.all_model_checkpoint_paths) if state else []


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

    from dcgan_cli.model import build_generator

    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    directory = run_dir / (BEST_DIR if best else CKPT_DIR)
    paths = checkpoint_paths(directory)
    if not paths:
        if best:
            raise DcganError(f"{run_dir} has no best checkpoint; train it with --eval-every N to keep one")
        raise DcganError(f"{run_dir} has no checkpoint yet; train it (`dcgan train --resume {run_dir}`) first")
    g = build_generator(cfg.image_size, cfg.channels, cfg.latent_dim, cfg.g_filters, cfg.init_std, fast=False)
    use_ema = ema and cfg.ema > 0
    key = "g_ema" if use_ema else "generator"  # the names training.GAN.checkpoint() saves under
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
    from dcgan_cli.model import portable

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
