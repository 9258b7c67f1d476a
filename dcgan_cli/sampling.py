"""Faces from a trained generator: grids of reproducible samples.

A run's generator is rebuilt from its `config.json` and restored from the
newest checkpoint (the EMA weights when the run kept them), so sampling works
mid-training as well as after it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dcgan_cli.config import TrainConfig
from dcgan_cli.errors import DcganError


def load_generator(run_dir: str | Path, ema: bool = True):
    """(generator, config) from a run directory's newest checkpoint."""
    import tensorflow as tf

    from dcgan_cli.model import build_generator
    from dcgan_cli.training import CKPT_DIR, CONFIG_FILE

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise DcganError(f"{run_dir} is not a run directory (no {CONFIG_FILE}); pass a folder under runs/")
    cfg = TrainConfig.load(run_dir / CONFIG_FILE)
    manager_dir = run_dir / CKPT_DIR
    state = tf.train.get_checkpoint_state(str(manager_dir)) if manager_dir.is_dir() else None
    paths = list(state.all_model_checkpoint_paths) if state else []
    if not paths:
        raise DcganError(f"{run_dir} has no checkpoint yet; train it (`dcgan train --resume {run_dir}`) first")
    g = build_generator(cfg.image_size, cfg.channels, cfg.latent_dim, cfg.g_filters, cfg.init_std)
    key = "g_ema" if ema and cfg.ema > 0 else "generator"
    last_error = None
    for path in reversed(paths):
        try:
            tf.train.Checkpoint(**{key: g}).restore(path).expect_partial().assert_existing_objects_matched()
            return g, cfg
        except Exception as e:  # a corrupt newest checkpoint: fall back to the previous one
            last_error = e
    raise DcganError(f"no checkpoint of {run_dir} could be read ({type(last_error).__name__}); "
                     f"the run's checkpoints are damaged")


def latents(seeds: list[int], latent_dim: int) -> np.ndarray:
    """One N(0, I) latent per seed: image k depends on seed k only."""
    return np.stack([np.random.default_rng(s).standard_normal(latent_dim) for s in seeds]).astype(np.float32)


def sample_grid(generator, seeds: list[int], out: str | Path, nrow: int | None = None, batch_size: int = 256) -> Path:
    from dcgan_cli.images import check_image_path, make_grid, save_image
    from dcgan_cli.training import generate

    out = check_image_path(out)
    z = latents(seeds, generator.input_shape[-1])
    return save_image(out, make_grid(generate(generator, z, batch_size), nrow=nrow))
