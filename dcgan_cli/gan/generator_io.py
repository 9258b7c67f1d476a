"""A run's generator, out of its checkpoints or into and out of a .keras file.

`restore` builds the generator a run's config describes (stock Keras layers) and restores it from the
newest readable checkpoint (checkpoints.py finds it, with its fall-backs); `save_generator` is the one
way a generator is written as .keras (RUN/generator.keras, RUN/best/generator.keras, `dcgan export`),
`load_generator_file` the one way one is read back. `sample`, `export`, `evaluate`, `stylize` and
`repair` get their generator here; the trainer writes its files here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dcgan_cli.config import TrainConfig
from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import atomic_path
from dcgan_cli.runs.checkpoints import (EMA_SLOT, GENERATOR_SLOT, checkpoint_paths, checkpoint_step,
                                        find_resumable, restore_first_readable)
from dcgan_cli.runs.layout import BEST_DIR, CKPT_DIR, load_config


# ----------------------------------------------------------------------------
# out of a run's checkpoints


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
        return checkpoint_step(self.checkpoint)

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
        if not paths:
            raise DcganError(f"{run_dir} has no best checkpoint; train it with --eval-every-epochs N to keep one")
    else:
        first = f"has no checkpoint yet; train it (`dcgan train --resume {run_dir}`) first"
        paths, directory = find_resumable(run_dir / CKPT_DIR, run_dir, warn, none=first)
    from dcgan_cli.data.conditions import CONDITION_FILE, load_table

    table = load_table(run_dir / CONDITION_FILE) if cfg.condition else None  # G(z, y) of a conditional run
    g = build_generator(cfg.image_size, cfg.channels, cfg.latent_dim, cfg.g_filters, cfg.init_std, fast=False,
                        activation=cfg.g_activation, labels=table.condition.dim if table else 0)
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
    if len(ins) in (1, 2) and all(len(i) == 2 for i in ins) and len(outs) == 1 and len(outs[0]) == 4 and outs[0][-1] in (1, 3):
        return
    shapes = f"it maps {', '.join(map(str, ins)) or 'nothing'} to {', '.join(map(str, outs)) or 'nothing'}"
    raise DcganError(f"{where} is not a generator ({shapes}); a generator maps latents (None, latent_dim) "
                     f"to images (None, H, W, C): pass a run's generator.keras")
