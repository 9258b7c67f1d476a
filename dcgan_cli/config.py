"""One frozen training config, from the command line to the trainer.

No TensorFlow import here: the CLI builds and validates a `TrainConfig` before
TensorFlow is loaded, `--dry-run` prints it, the trainer saves it as
`config.json` in the run directory, and `sample` / `--resume` read it back.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any

from dcgan_cli.errors import DcganError
from dcgan_cli.shards import check_size

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
# The command line's choices, built from the tuples above so its help and these checks cannot drift.
Precision = Enum("Precision", {p: p for p in PRECISIONS}, type=str)
Strategy = Enum("Strategy", {s: s for s in STRATEGIES}, type=str)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run.

    Attributes:
        data: preprocessed data directory (holds `manifest.json` and shards).
        runs_dir: parent of the numbered run directories.
        run_name: optional suffix of the run directory's name.
        preset: the preset this config started from.
        image_size: side of the square images; taken from the data's manifest.
        channels: 3 (RGB) or 1 (grayscale); taken from the data's manifest.
        latent_dim: size of the generator's input noise z ~ N(0, I).
        g_filters: filters of the generator's last hidden layer (ngf).
        d_filters: filters of the discriminator's first layer (ndf).
        batch_size: global batch, split across replicas.
        epochs: passes over the data (or of `steps_per_epoch` steps).
        steps_per_epoch: 0 means one pass over the data per epoch.
        lr_g, lr_d: Adam learning rates of the generator and discriminator.
        beta1, beta2: Adam betas.
        init_std: stddev of the N(0, std) weight initialiser.
        label_smoothing: one-sided; real labels drawn from U(1 - s, 1) each step.
        instance_noise: Gaussian noise on real inputs, stddev drawn from U(0, s).
        ema: decay of the generator's weight average (0 = off); samples use it.
        alternate: update D first, then G through the updated D (one more D forward per step).
        flip: random horizontal flips of the real images.
        seed: seeds the weights, the noise and the data order.
        precision: auto | fp32 | bf16 | fp16 (auto picks by hardware).
        xla: compile the train step with XLA (`jit_compile`).
        strategy: auto | default | mirrored | multiworker | tpu.
        sync_bn: synchronise batch-norm statistics across replicas.
        checkpoint_every: also checkpoint every N steps (0 = per epoch only).
        keep_checkpoints: how many recent checkpoints to keep.
        num_samples: images in the fixed-noise grid written each epoch.
        cache: keep the decoded data set in memory after the first epoch.
        eval_every: evaluate FID/KID every N epochs (0 = never).
        eval_samples: generated images per evaluation.
    """

    data: str = ""
    runs_dir: str = "runs"
    run_name: str = ""
    preset: str = "dcgan"
    image_size: int = 64
    channels: int = 3
    latent_dim: int = 100
    g_filters: int = 64
    d_filters: int = 64
    batch_size: int = 128
    epochs: int = 25
    steps_per_epoch: int = 0
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    init_std: float = 0.02
    label_smoothing: float = 0.0
    instance_noise: float = 0.0
    ema: float = 0.0
    alternate: bool = False
    flip: bool = False
    seed: int = 0
    precision: str = "auto"
    xla: bool = False
    strategy: str = "auto"
    sync_bn: bool = False
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    num_samples: int = 64
    cache: bool = False
    eval_every: int = 0
    eval_samples: int = 10000

    def __post_init__(self) -> None:
        validate(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DcganError(f"config has unknown keys {unknown}; was it written by a newer dcgan?")
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise DcganError(f"no config at {path}; is this a run directory written by `dcgan train`?") from None
        except json.JSONDecodeError as e:
            raise DcganError(f"{path} is not valid JSON ({e}); restore it or start a new run") from None


# Each preset is a set of overrides on the TrainConfig defaults (which are the
# paper's). Command-line flags override the preset.
PRESETS: dict[str, dict[str, Any]] = {
    # Radford et al. 2015: batch 128, Adam 2e-4 / beta1 0.5, BCE on logits.
    # Plus (issue 12, measured by `dcgan bench --parts quality`): D updated first and G
    # through the updated D (the PyTorch example's order), and a ramped 0.999 EMA of G.
    "dcgan": dict(batch_size=128, epochs=25, lr_g=2e-4, lr_d=2e-4, beta1=0.5, alternate=True, ema=0.999),
    # The DCGAN face-generator article's 128x128 recipe: slower D, one-sided
    # label smoothing U(0.9, 1.0) and instance noise sigma ~ U(0, 0.1).
    "face128": dict(
        image_size=128, batch_size=64, latent_dim=100, lr_d=4e-5, lr_g=2e-4, beta1=0.5,
        init_std=0.02, label_smoothing=0.1, instance_noise=0.1, epochs=60,
    ),
    # Small and quick for `make demo`: 100 faces at 32x32 on 2 CPU cores.
    "demo": dict(
        image_size=32, batch_size=32, g_filters=64, d_filters=64, epochs=25, steps_per_epoch=100,
        lr_g=2e-4, lr_d=2e-4, flip=True, ema=0.99, num_samples=64, label_smoothing=0.1,
    ),
}


Preset = Enum("Preset", {p: p for p in PRESETS}, type=str)


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The preset's config with `overrides` (None values are ignored)."""
    if name not in PRESETS:
        raise DcganError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(preset=name, **values)


def validate(c: TrainConfig) -> None:
    def bad(msg: str) -> None:
        raise DcganError(msg)

    check_size(c.image_size, "re-run `dcgan preprocess ... --size 64`")
    if c.channels not in (1, 3):
        bad(f"{c.channels} channels is not supported; preprocess with --channels 3 or 1")
    for name in ("latent_dim", "g_filters", "d_filters", "batch_size", "epochs", "keep_checkpoints", "num_samples"):
        if getattr(c, name) < 1:
            bad(f"{name.replace('_', '-')} must be at least 1, got {getattr(c, name)}")
    for name in ("steps_per_epoch", "checkpoint_every", "eval_every"):
        if getattr(c, name) < 0:
            bad(f"{name.replace('_', '-')} must be 0 or more, got {getattr(c, name)}")
    for name in ("lr_g", "lr_d", "init_std"):
        if not getattr(c, name) > 0:
            bad(f"{name.replace('_', '-')} must be positive, got {getattr(c, name)}")
    for name in ("beta1", "beta2"):
        if not 0 <= getattr(c, name) < 1:
            bad(f"{name} must be in [0, 1), got {getattr(c, name)}")
    if not 0 <= c.label_smoothing < 1:
        bad(f"label-smoothing must be in [0, 1), got {c.label_smoothing}")
    if c.instance_noise < 0:
        bad(f"instance-noise must be 0 or more, got {c.instance_noise}")
    if not 0 <= c.ema < 1:
        bad(f"ema must be in [0, 1) (0 turns it off), got {c.ema}")
    if c.precision not in PRECISIONS:
        bad(f"precision must be one of {', '.join(PRECISIONS)}, got {c.precision!r}")
    if c.strategy not in STRATEGIES:
        bad(f"strategy must be one of {', '.join(STRATEGIES)}, got {c.strategy!r}")
