"""Will it fit? Memory estimates for training and sampling, checked against what the machine has.

A DCGAN's size is mostly `latent_dim x the first layer`: `--latent-dim 100000`
makes a 0.8-billion-weight generator, about 18 GB once gradients and Adam's
two slots are counted. These estimates are lower bounds (TensorFlow's own
working memory comes on top), so a refusal is never a false alarm: training is
refused when the estimate exceeds the memory available, and warned about when
it takes more than half of it.

The parameter count follows model.py's architecture (tests check it against
the built models, so the two cannot drift apart silently).
"""

from __future__ import annotations

from typing import Callable

from dcgan_cli.config import TrainConfig
from dcgan_cli.errors import DcganError, UsageError

FLOAT = 4  # bytes: weights, gradients and optimizer slots are float32 whatever the compute precision


def available_memory() -> int | None:
    """Bytes the machine can give a new allocation without swapping (Linux's MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _plan(image_size: int) -> tuple[int, int]:
    """(side of the first feature map, number of 2x resamplings): model.py's rule."""
    import math

    base = 7 if image_size == 28 else 4
    return base, int(math.log2(image_size // base))


def generator_size(image_size: int, channels: int, latent_dim: int, filters: int) -> tuple[int, int]:
    """(parameters including batch-norm statistics, activation floats per image) of model.py's generator."""
    base, n_up = _plan(image_size)
    f = filters * 2 ** (n_up - 1)
    params = base * base * f * latent_dim + 4 * f  # project (no bias) + its batch norm
    side = base
    acts = latent_dim + 3 * side * side * f  # conv, batch norm, ReLU outputs
    for _ in range(n_up - 1):
        params += 16 * f * (f // 2) + 4 * (f // 2)
        f //= 2
        side *= 2
        acts += 3 * side * side * f
    params += 16 * f * channels
    acts += 2 * image_size * image_size * channels
    return params, acts


def discriminator_size(image_size: int, channels: int, filters: int) -> tuple[int, int]:
    """(parameters including batch-norm statistics, activation floats per image) of model.py's discriminator."""
    base, n_down = _plan(image_size)
    f = filters
    params = 16 * channels * f
    side = image_size // 2
    acts = image_size * image_size * channels + 2 * side * side * f
    for _ in range(1, n_down):
        params += 16 * f * (2 * f) + 4 * (2 * f)
        f *= 2
        side //= 2
        acts += 3 * side * side * f
    params += base * base * f
    return params, acts + 1


def training_bytes(cfg: TrainConfig) -> int:
    """A lower bound on training's memory: weights, gradients, Adam slots, EMA, and the step's activations."""
    g_params, g_acts = generator_size(cfg.image_size, cfg.channels, cfg.latent_dim, cfg.g_filters)
    d_params, d_acts = discriminator_size(cfg.image_size, cfg.channels, cfg.d_filters)
    copies = 4  # the weights, their gradients, Adam's m and v
    state = FLOAT * (g_params * (copies + (1 if cfg.ema > 0 else 0)) + d_params * copies)
    # One G forward and two D forwards per step, each kept for the backward pass, which needs as much again.
    activations = FLOAT * cfg.batch_size * (g_acts + 2 * d_acts) * 2
    return state + activations


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def check_training_memory(cfg: TrainConfig, log: Callable[[str], None] = print,
                          available: int | None = None) -> None:
    """Refuse a config whose training cannot fit in memory; warn when it takes over half of it."""
    need = training_bytes(cfg)
    have = available if available is not None else available_memory()
    if have is None:
        return
    fix = "lower --latent-dim, --batch-size or --g-filters/--d-filters"
    if need > have:
        raise DcganError(f"this model needs at least {_gb(need)} of memory to train (latent-dim {cfg.latent_dim}, "
                         f"batch {cfg.batch_size}, {cfg.image_size}x{cfg.image_size}) but only {_gb(have)} is "
                         f"available; {fix}")
    if need > have / 2:
        log(f"Warning: this model needs at least {_gb(need)} of the {_gb(have)} of memory available; "
            f"if the machine starts swapping, {fix}")


def check_sampling_memory(generator, batch_size: int, available: int | None = None, *, rows: int = 0,
                          rows_option: str = "--restarts", rows_per_unit: int = 1) -> None:
    """Refuse options whose memory cannot fit, naming a value that does: the one estimate for every command
    that runs a generator (sample, project, inpaint).

    batch_size: images through the generator at once (their activations). rows: latents held in memory for the
    whole command (project and inpaint draw every start up front and keep each one's result and losses), which
    grow with `rows_option` in steps of `rows_per_unit` rows (the photos, for --restarts).
    """
    import math

    nz = int(generator.inputs[0].shape[-1])
    per_image = nz + sum(math.prod(int(d) for d in layer.output.shape[1:]) for layer in generator.layers)
    per_row = FLOAT * (4 * nz + 5)  # the float64 draw, the float32 starts and results, the losses, the index
    need_batch, need_rows = FLOAT * per_image * batch_size, per_row * rows
    have = available if available is not None else available_memory()
    if have is None or need_batch + need_rows <= have / 2:
        return
    if need_rows > need_batch:
        fits = max(1, int((have / 2 - need_batch) // (per_row * rows_per_unit)))
        raise UsageError(f"{rows:,} latents held at once need about {_gb(need_batch + need_rows)} of memory, "
                         f"{_gb(have)} is available; use {rows_option} {fits:,} or less", rows_option)
    fits = max(1, int(have / 2 // (FLOAT * per_image)))
    raise UsageError(f"a batch of {batch_size:,} needs about {_gb(need_batch)} of memory, {_gb(have)} is available; "
                     f"use --batch-size {min(fits, 256)} or less", "--batch-size")
