"""The run directory's layout: every entry's name, and the one way to read or write the run's own files.

    runs/00003-NAME/
      config.json          the frozen TrainConfig (`dcgan train` writes it, --resume and sample read it)
      checkpoints/         the checkpoints and their `checkpoint` index (checkpoints.py names, reads and writes them)
      last-good/           the newest end-of-epoch checkpoint (hard links), which periodic saves never rotate out
      healthy/             with --on-collapse rollback: the newest checkpoint the health monitor found healthy
      best/                with --eval-every-epochs: the best-scoring checkpoint, its generator.keras and best.json
      samples/             epoch-0001.png ... the fixed-noise grid after each epoch
      metrics.jsonl        one row per epoch ({"epoch", "d_loss", ...}), per evaluation ({"eval": {...}}) and
                           per health finding ({"health": {...}})
      losses.png           the loss curves so far
      tensorboard/         event files
      generator.keras      the final generator (stock Keras layers: loads without this package)
      eval-cache/, eval.png  `dcgan evaluate --all-checkpoints`' scores per checkpoint, and their curve
      audit-closest.png    `dcgan identity audit`'s closest pairs
      attribute-classifier.keras, attribute-classifier.json
                           `dcgan directions`' classifier of the data's attributes (trained once) and its accuracy
      directions.npz, directions.json
                           `dcgan directions`' boundaries in z (unit normals) and their accuracy; `dcgan edit` reads them
      .dcgan.lock          while a process writes the run: its PID (`lock_run`)
    an identity run (`dcgan identity train`) has identity_config.json, checkpoints/, split.json and embedding.keras.

Every module names an entry through here. What is inside the checkpoint folders
(checkpoints/, last-good/, healthy/, best/) is checkpoints.py's. Nothing here
imports TensorFlow, and nothing here trains or scores.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from dcgan_cli.config import HISTORY_KEY, FrozenConfig, TrainConfig
from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import DirLock, append_line, write_text

CONFIG_FILE = "config.json"
CKPT_DIR = "checkpoints"
LAST_GOOD_DIR = "last-good"
HEALTHY_DIR = "healthy"  # the newest checkpoint the health monitor found healthy (--on-collapse rollback)
BEST_DIR = "best"
BEST_FILE = "best.json"
SAMPLES_DIR = "samples"
METRICS_FILE = "metrics.jsonl"
LOSSES_FILE = "losses.png"
TENSORBOARD_DIR = "tensorboard"
GENERATOR_FILE = "generator.keras"
EVAL_CACHE_DIR = "eval-cache"
EVAL_PLOT_FILE = "eval.png"
AUDIT_GRID_FILE = "audit-closest.png"
SPLIT_FILE = "split.json"  # an identity run's training and held-out identities
ATTR_CLASSIFIER_FILE = "attribute-classifier.keras"  # `dcgan directions`' classifier of the data's attributes
ATTR_CLASSIFIER_INFO = "attribute-classifier.json"  # what it was trained on, its held-out accuracy per attribute
DIRECTIONS_FILE = "directions.npz"  # one unit normal in z per attribute (plain NumPy arrays)
DIRECTIONS_INFO = "directions.json"  # the same boundaries' accuracy and how they were fitted


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
    # a complete checkpoint has its .index file at the top of checkpoints/ (a save in progress is in a folder)
    usable = [p for p in runs if (p / GENERATOR_FILE).is_file() or any((p / CKPT_DIR).glob("*.index"))]
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


def resume_changes(saved_cfg: FrozenConfig, cfg: FrozenConfig) -> dict:
    """{field: [old, new]} for the RESUMABLE fields (and the data's place) that a resume changes."""
    return {k: [getattr(saved_cfg, k), getattr(cfg, k)] for k in sorted(saved_cfg.RESUMABLE | {"data"})
            if getattr(saved_cfg, k) != getattr(cfg, k)}


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


def resume_config(run_dir: str | Path, **changes) -> TrainConfig:
    """The GAN run's saved config with `changes` (None values ignored), under the resume rule."""
    return load_config(run_dir).resumed(run_dir, **changes)
