"""One frozen training config, from the command line to the trainer.

No TensorFlow import here: the CLI builds and validates a `TrainConfig` before
TensorFlow is loaded, `--dry-run` prints it, the trainer saves it as
`config.json` in the run directory, and `sample` / `--resume` read it back.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any

from dcgan_cli.errors import DcganError, UsageError
from dcgan_cli.data.shards import check_size, find_data, load_manifest, processed_name

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ON_COLLAPSE = ("warn", "stop", "rollback")  # --on-collapse: what the health monitor (health.py) does on a finding
G_ACTIVATIONS = ("relu", "leaky_relu")  # the generator's hidden activation; the paper's is relu
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
AUGMENTS = ("auto", "none", "diffaug", "ada")  # augmentation of what D sees (augment.py)
LOSSES = ("nonsaturating", "hinge")  # the GAN loss (gan/regularize.py); the paper's is nonsaturating
D_NORMS = ("batch", "none")  # D's hidden normalisation (gan/model.py); the paper's is batch
# The command line's choices, built from the tuples above so its help and these checks cannot drift.
Precision = Enum("Precision", {p: p for p in PRECISIONS}, type=str)
Strategy = Enum("Strategy", {s: s for s in STRATEGIES}, type=str)
GActivation = Enum("GActivation", {a: a for a in G_ACTIVATIONS}, type=str)
OnCollapse = Enum("OnCollapse", {a: a for a in ON_COLLAPSE}, type=str)
Augment = Enum("Augment", {a: a for a in AUGMENTS}, type=str)
Loss = Enum("Loss", {a: a for a in LOSSES}, type=str)
DNorm = Enum("DNorm", {a: a for a in D_NORMS}, type=str)


# ADA's speed (TrainConfig.ada_kimg): p can move by 1 over this many thousand images. The paper's 500
# is ~15,600 steps at batch 32 for p to move by 1: too slow for the few thousand steps a small data set
# trains here (docs/training.md, "Small data sets").
ADA_KIMG = 100.0

# Settings renamed so that a count of steps or of epochs says which (0.1 names on the left): a run
# started under the old names must still resume and sample, so its config.json's keys read as the new ones.
RENAMED_KEYS = {"checkpoint_every": "checkpoint_every_steps", "checkpoint_epochs": "checkpoint_every_epochs",
                "sample_every": "sample_every_epochs", "eval_every": "eval_every_epochs"}


def upgrade_keys(d: dict[str, Any]) -> dict[str, Any]:
    """A saved config's keys under today's names (RENAMED_KEYS); a new name wins over an old one."""
    return {**{RENAMED_KEYS.get(k, k): v for k, v in d.items() if k in RENAMED_KEYS},
            **{k: v for k, v in d.items() if k not in RENAMED_KEYS}}


# config.json's list of what changed on each start and --resume (layout.save_config writes it); not a setting.
HISTORY_KEY = "history"


class FrozenConfig:
    """What every frozen config dataclass offers: a changed copy, a dict, its file in the run dir, the resume rule.

    A subclass names its file in the run directory (FILE), the command that writes such runs
    (COMMAND, for the messages) and the fields a --resume may change (RESUMABLE): how long and
    how it trains, never what it trains. The PLACES name where things are, not what is trained
    (the data may move; the run dir is given), so a resume may change them too.
    """

    FILE = "config.json"
    COMMAND = "dcgan train"
    RESUMABLE: frozenset = frozenset()
    PLACES = frozenset({"data", "runs_dir", "run_name"})

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        if not isinstance(d, dict):
            raise DcganError(f"a config is a JSON object of settings, got {type(d).__name__}")
        d = upgrade_keys(d)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {HISTORY_KEY})
        if unknown:
            raise DcganError(f"config has unknown keys {unknown}; was it written by a newer dcgan?")
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def load(cls, path: str | Path):
        """The config saved at `path`: a JSON file, or a run directory (its FILE)."""
        path = Path(path)
        if path.is_dir():
            path = path / cls.FILE
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise DcganError(f"no config at {path}; is this a run directory written by `{cls.COMMAND}`?") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DcganError(f"{path} is not valid JSON ({e}); restore it or start a new run") from None
        except DcganError as e:
            raise DcganError(f"{path}: {e}; fix it by hand (see `{cls.COMMAND} --dry-run` for a valid one) "
                             f"or start a new run") from None
        except OSError as e:
            raise DcganError(f"cannot read {path} ({e.strerror or e}); check its permissions") from None

    @classmethod
    def of_run(cls, run_dir: str | Path):
        """The frozen config of the run in `run_dir`; a folder without one is not such a run."""
        if not (Path(run_dir) / cls.FILE).exists():
            raise DcganError(f"{run_dir} is not a run directory (no {cls.FILE}); pass a folder made by "
                             f"`{cls.COMMAND}` (under --runs-dir)")
        return cls.load(Path(run_dir) / cls.FILE)

    def resumed(self, run_dir: str | Path, **changes: Any):
        """This saved config with `changes` (None values ignored), for a --resume of `run_dir`.

        The resume rule: only RESUMABLE fields and the PLACES may differ; anything else is refused
        in one line naming the flags, because it would be another model or another recipe.
        """
        given = {k: v for k, v in changes.items() if v is not None}
        fixed = sorted(k for k, v in given.items() if k not in self.RESUMABLE | self.PLACES and v != getattr(self, k))
        if fixed:
            raise DcganError(f"cannot change {', '.join('--' + k.replace('_', '-') for k in fixed)} when resuming "
                             f"{run_dir}; start a new run for a different setup")
        return self.replace(**given)

    @classmethod
    def start_or_resume(cls, resume: str | Path | None, settings: dict[str, Any], *, data: str | Path | None,
                        data_dir: str | Path | None = None, runs_dir: str | Path = "runs", run_name: str = "",
                        **new: Any):
        """The config a trainer's command runs with, `settings` being the options the user gave (None: not given).

        With `resume` (a run directory): its saved config with `settings` and a moved `data`, under the
        resume rule (`resumed`). Else a new config for the data, found as `resolve_data` does, from its
        manifest (`for_data`, which takes `new`, e.g. the preset). Both trainers' commands come here, so
        they cannot disagree on what --resume keeps.
        """
        if resume is not None:
            return cls.of_run(resume).resumed(resume, **settings, data=absolute_data(data) if data else None)
        data = resolve_data(data, data_dir, new.get("preset"))
        return cls.for_data(load_manifest(data), data=absolute_data(data), runs_dir=str(runs_dir),
                            run_name=run_name, **new, **settings)

    @classmethod
    def for_data(cls, manifest: dict, **settings: Any):
        """A new config for the data of `manifest`: its shape, then `settings`."""
        return cls(image_size=manifest["size"], channels=manifest["channels"], **settings)


@dataclass(frozen=True)
class TrainConfig(FrozenConfig):
    """Everything that decides a training run.

    Attributes:
        data: preprocessed data directory (holds `manifest.json` and shards).
        runs_dir: parent of the numbered run directories.
        run_name: optional suffix of the run directory's name.
        preset: the preset this config started from.
        image_size: side of the square images; taken from the data's manifest.
        channels: 3 (RGB) or 1 (grayscale); taken from the data's manifest.
        latent_dim: size of the generator's input noise z ~ N(0, I).
        g_filters: filters of the generator's last hidden layer (ngf); the first has
            g_filters * 2**(blocks - 1): 8x at 64x64, 2x at 28x28.
        g_activation: relu (the paper) | leaky_relu (slope 0.2) in the generator's hidden layers.
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
        checkpoint_every_steps: also checkpoint every N steps, mid-epoch (0 = at epoch ends only).
        checkpoint_every_epochs: checkpoint at the end of every N epochs (0 = auto, see `with_cadence`);
            the last epoch, Ctrl-C/SIGTERM and `max_steps` always checkpoint.
        sample_every_epochs: write the grid, the loss plot and TensorBoard's image every N epochs
            (0 = auto); the last epoch always does. Losses are logged every epoch.
        keep_checkpoints: how many recent checkpoints to keep.
        num_samples: images in the fixed-noise grid written each epoch.
        cache: keep the decoded data set in memory after the first epoch.
        eval_every_epochs: evaluate FID/KID every N epochs (0 = never).
        eval_samples: generated images per evaluation.
        on_collapse: warn | stop | rollback: what the health monitor does when D wins, the samples
            collapse or training diverges (health.py; docs/training.md).
        augment: auto | none | diffaug | ada: differentiable augmentation of everything D sees
            (augment.py); auto is resolved from the data's size (`with_augment`).
        augment_p: each augmentation's per-sample probability: diffaug's fixed p, ada's starting p
            (-1: the mode's own, 1.0 for diffaug, 0.0 for ada).
        ada_target: the r_t = E[sign(D(x_real))] that ADA steers towards.
        ada_kimg: ADA's speed: thousands of images over which p can move by 1.
        ada_interval: ADA adjusts p every this many steps, from r_t over them.
        condition: "" (unconditional) | classes | attributes | attributes:NAME,NAME: train G(z, y) and a
            projection D on the shards' labels (data/conditions.py; docs/conditional.md).
        loss: nonsaturating (BCE on logits, the paper) | hinge (SNGAN's) (gan/regularize.py).
        spectral_norm: spectral normalisation of every kernel and embedding of D (Miyato et al. 2018).
        d_norm: batch (the paper's batch norm in D's hidden layers) | none (biases instead, as SNGAN's D: a
            gradient penalty through batch statistics is not one image's, and spectral norm then bounds D).
        r1_gamma: weight of the R1 penalty gamma/2 * |grad_x D(x)|^2 on real images (0 = off).
        r1_interval: lazy R1 (StyleGAN2): the penalty, times this interval, on every this many steps.
        bcr: weight of balanced consistency regularisation (Zhang et al. 2020) on real and fake images (0 = off).
    """

    # Optimiser-only knobs: a resume may change them (lowering the rates is how a NaN is recovered from);
    # the change is recorded in config.json's history. Label smoothing and instance noise are not among
    # them: they change what D is taught (the recipe), not how big the steps are.
    OPTIMISER = frozenset({"lr_g", "lr_d", "beta1", "beta2"})
    RESUMABLE = frozenset({"epochs", "checkpoint_every_steps", "precision", "xla", "strategy", "cache",
                           "eval_every_epochs", "eval_samples", "checkpoint_every_epochs",
                           "sample_every_epochs", "on_collapse"}) | OPTIMISER

    data: str = ""
    runs_dir: str = "runs"
    run_name: str = ""
    preset: str = "dcgan"
    image_size: int = 64
    channels: int = 3
    latent_dim: int = 100
    g_filters: int = 64
    g_activation: str = "relu"
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
    checkpoint_every_steps: int = 0
    checkpoint_every_epochs: int = 0
    sample_every_epochs: int = 0
    keep_checkpoints: int = 3
    num_samples: int = 64
    cache: bool = False
    eval_every_epochs: int = 0
    eval_samples: int = 10000
    # -- the training-health monitor (health.py): what to do when a detector fires ----------------------
    on_collapse: str = "warn"
    # -- augmentation of what D sees: DiffAugment with ADA's adaptive p (augment.py, docs/training.md)
    augment: str = "auto"
    augment_p: float = -1.0
    ada_target: float = 0.6
    ada_kimg: float = ADA_KIMG
    ada_interval: int = 4
    # -- conditional training on the shards' labels (data/conditions.py): fixed for the run's life
    condition: str = ""
    # -- the loss and D's regularisers (gan/regularize.py; docs/quality.md's ablation): off by default
    loss: str = "nonsaturating"
    spectral_norm: bool = False
    d_norm: str = "batch"
    r1_gamma: float = 0.0
    r1_interval: int = 16
    bcr: float = 0.0

    def __post_init__(self) -> None:
        validate(self)


    @classmethod
    def for_data(cls, manifest: dict, preset: str = "dcgan", **settings: Any) -> "TrainConfig":
        """The preset's config for the data of `manifest`, then `settings` (`preset_for_data`)."""
        return preset_for_data(preset, manifest, **settings)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        # A config.json without `augment` trained without augmentation, so its resume does too: the default
        # (auto) could turn ADA on mid-run, which changes what D is taught (the recipe, never resumable).
        return super().from_dict({"augment": "none", **d} if isinstance(d, dict) else d)

    @classmethod
    def start_or_resume(cls, resume, settings: dict[str, Any], **kwargs: Any):
        if settings.get("augment") == "none" and (settings.get("augment_p") or 0) > 0:
            raise UsageError("--augment none augments nothing, so --augment-p would be ignored; drop --augment-p "
                             "or choose --augment ada or diffaug", "--augment-p")
        return super().start_or_resume(resume, settings, **kwargs)

    def resumed(self, run_dir: str | Path, **changes: Any):
        # auto was resolved to ada or none when the run started (with_augment): asking for auto again is no change
        if changes.get("augment") == "auto" and self.augment in ("ada", "none"):
            changes = {**changes, "augment": None}
        return super().resumed(run_dir, **changes)

    def with_augment(self, n_images: int) -> "TrainConfig":
        """This config with `augment` auto resolved for a data set of `n_images` (ADA under
        SMALL_DATA_BELOW images, none from there on) and `augment_p` -1 made the mode's own (none keeps it)."""
        mode = self.augment
        if mode == "auto":
            mode = "ada" if n_images < SMALL_DATA_BELOW else "none"
        p = self.augment_p
        if p < 0 and mode != "none":
            p = AUGMENT_P[mode]
        return self.replace(augment=mode, augment_p=p)

    def epoch_steps(self, n_images: int) -> int:
        """Steps per epoch on a data set of `n_images`."""
        return self.steps_per_epoch or max(1, n_images // self.batch_size)

    def with_cadence(self, n_images: int) -> "TrainConfig":
        """This config with `checkpoint_every_epochs` and `sample_every_epochs` resolved (0 = auto) for `n_images`.

        Auto: every epoch when an epoch has AUTO_CADENCE_STEPS steps or more, else
        every ceil(AUTO_CADENCE_STEPS / steps) epochs. A small data set's epoch is
        a few seconds, and the end-of-epoch work (a checkpoint, the loss plot, the
        grid: about a second on 2 CPU cores) would otherwise take a large share of
        it. Resolved once from the data's size, so it is the same on every worker
        and on resume, and saved in config.json.
        """
        auto = math.ceil(AUTO_CADENCE_STEPS / self.epoch_steps(n_images))
        return self.replace(checkpoint_every_epochs=self.checkpoint_every_epochs or auto, sample_every_epochs=self.sample_every_epochs or auto)


# Small data: under this many images `augment auto` is ADA (TrainConfig.with_augment) and a preset trains
# with its SMALL_DATA recipe (preset_for_data). ADA: MEASURED on 80 faces at 6,000 steps (docs/quality.md,
# "Small data: faces80"); it is unmeasured on sklearn's 1,797 digits, where the plain step is the measured
# recipe: sets of that size and up train without augmentation until a measurement says otherwise
# (docs/training.md). The recipe: see SMALL_DATA.
SMALL_DATA_BELOW = 1_000

# `augment_p` -1 (TrainConfig.with_augment): each mode's own p. DiffAugment applies every augmentation to
# every image; ADA starts from none and raises p only as far as D's overfitting asks.
AUGMENT_P = {"diffaug": 1.0, "ada": 0.0}

# End-of-epoch work happens about once per this many steps at least (see TrainConfig.with_cadence):
# on 2 CPU cores that is a minute or more of training per second of writing.
AUTO_CADENCE_STEPS = 200

# Each preset is a set of overrides on the TrainConfig defaults (which are the
# paper's). Command-line flags override the preset.
PRESETS: dict[str, dict[str, Any]] = {
    # Radford et al. 2015: batch 128, Adam / beta1 0.5, BCE on logits, D at 2e-4.
    # Plus (measured by `dcgan bench --parts quality`, docs/quality.md): D updated
    # first and G through the updated D (the PyTorch example's order), a ramped 0.999 EMA of G,
    # and G at 3x D's rate: 6e-4 took the FD ratio to the plain-Keras reference from 0.96 to
    # 0.57 on the digits (300 steps, 3 seeds; 4e-4: 0.74), where a faster D (TTUR's usual
    # 4e-4 / 1e-4) made it 7x worse.
    # And SNGAN's D (the hinge loss, spectral normalisation of every kernel and embedding, no batch norm)
    # with StyleGAN2's lazy R1 (gamma 1 every 16 steps): on the 1,797 digits at equal wall-clock 0.55 ->
    # 0.48 of the reference's FD (better on each of 3 seeds), and in a 10x longer run 0.45x -> 0.16x with
    # FD falling at every point (docs/quality.md, "Tuning for the long run"). Under SMALL_DATA_BELOW images
    # it keeps the paper's D (SMALL_DATA).
    "dcgan": dict(batch_size=128, epochs=25, lr_g=6e-4, lr_d=2e-4, beta1=0.5, alternate=True, ema=0.999,
                  loss="hinge", spectral_norm=True, r1_gamma=1.0, r1_interval=16, d_norm="none"),
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
        # auto would pick ADA for the demo's 100 faces: unmeasured at this size and step count, and `make demo`'s
        # PNGs are compared byte for byte, so the demo trains the plain step.
        augment="none",
    ),
    # MNIST / Fashion-MNIST, 28x28x1 from the model's 7x7 base: G 7x7x128 -> 14x14x64 -> 28x28x1,
    # D 64 -> 128 -> logit. The paper's optimiser at batch 64, with a generator EMA for the samples.
    # MEASURED (docs/training.md, "MNIST and Fashion-MNIST"): digits are clean after ~1,000 steps; 5 epochs of the 60,000
    # training digits are ~4,700 steps, a few minutes on a 2-core CPU.
    "mnist": dict(
        image_size=28, channels=1, batch_size=64, g_filters=64, d_filters=64, lr_g=2e-4, lr_d=2e-4, beta1=0.5,
        ema=0.999, epochs=5,
    ),
    # The "celebrity faces" DCGAN example: CelebA's 108x108 face box at 28x28x3; G from 1024 channels
    # (7x7x1024 -> 14x14x512 -> 28x28x3) through transposed convs with batch norm and leaky ReLU, tanh
    # out; D with batch norm and leaky ReLU; Adam 2e-4 / beta1 0.5, batch 64.
    "celeba28": dict(
        image_size=28, channels=3, batch_size=64, g_filters=512, g_activation="leaky_relu", d_filters=64,
        lr_g=2e-4, lr_d=2e-4, beta1=0.5, epochs=1,
    ),
    # The DCGAN paper's exact recipe, for people following it (Radford et al. 2015 and its Torch code):
    # batch 128, Adam 2e-4 for both, beta1 0.5, BCE, D then G on the same fakes, no EMA, no augmentation.
    "paper": dict(batch_size=128, epochs=25, lr_g=2e-4, lr_d=2e-4, beta1=0.5, alternate=True, ema=0.0,
                  augment="none"),
}

# The data set a preset trains on when --data is not given: DATA_DIR/processed/NAME-SIZE at the
# preset's size (resolve_data below).
PRESET_DATA = {"mnist": "mnist", "celeba28": "celeba"}


def absolute_data(data: str | Path) -> str:
    """The data path a run's config keeps: absolute, so that sample, project and a resume find it (and no
    other data set at the same relative path) from any directory; a gs:// URL as it is."""
    text = str(data)
    return text if "://" in text else os.path.abspath(text)


def resolve_data(data: str | Path | None, data_dir: str | Path | None = None, preset: str | None = None) -> Path:
    """--data as given, else the data set under DATA_DIR/processed/ to train on (`shards.find_data`).

    `data_dir` defaults to ./data or $DCGAN_DATA_DIR; `preset` (a GAN preset's
    name) prefers the data it was made for. Both trainers resolve --data here.
    """
    if data is not None:
        return Path(data)
    from dcgan_cli.data.datasets import default_data_dir

    size = PRESETS[preset].get("image_size") if preset else None
    own = PRESET_DATA.get(preset) if preset else None
    return find_data(data_dir or default_data_dir(), size, processed_name(own, size) if own else None)


# What a preset trains with on data sets under SMALL_DATA_BELOW images, over its own values (flags still win).
# MEASURED (docs/quality.md, "Tuning for the long run"): on the 100 faces the dcgan preset's D without batch
# norm collapses G (2.3-15.5x the reference's FD, recall 0.14-0.69; with a minibatch-stddev feature too),
# and with batch norm R1 makes FD climb in a 10x longer run (0.17 -> 0.35 by 4,000 steps) where the
# paper's D falls (0.14 -> 0.03): small sets keep the paper's D and loss.
SMALL_DATA: dict[str, dict[str, Any]] = {
    "dcgan": dict(loss="nonsaturating", spectral_norm=False, r1_gamma=0.0, d_norm="batch"),
}


Preset = Enum("Preset", {p: p for p in PRESETS}, type=str)


def preset_values(field: str, small_data: bool = False) -> dict[str, Any]:
    """{preset: the value of TrainConfig's `field` it trains with}, the TrainConfig default where it sets none;
    `small_data`: on data sets under SMALL_DATA_BELOW images."""
    default = next(f.default for f in fields(TrainConfig) if f.name == field)
    return {name: {**recipe, **(SMALL_DATA.get(name, {}) if small_data else {})}.get(field, default)
            for name, recipe in PRESETS.items()}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The preset's config with `overrides` (None values are ignored)."""
    if name not in PRESETS:
        raise DcganError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(preset=name, **values)


def preset_for_data(name: str, manifest: dict, **overrides: Any) -> TrainConfig:
    """The preset's config for the data of `manifest`: its shape (where the preset does not fix it), its
    SMALL_DATA recipe on a set under SMALL_DATA_BELOW images, then `overrides` (None values ignored), with
    the end-of-epoch cadence resolved for its image count.

    What `dcgan train --dry-run` prints is what config.json records.
    """
    fixed = PRESETS.get(name, {})
    shape = {k: v for k, v in (("image_size", manifest["size"]), ("channels", manifest["channels"]))
             if k not in fixed}
    small = SMALL_DATA.get(name, {}) if manifest["count"] < SMALL_DATA_BELOW else {}
    return preset(name, **{**shape, **small, **{k: v for k, v in overrides.items() if v is not None}}
                  ).with_cadence(manifest["count"]).with_augment(manifest["count"])


# What each field must hold, checked before any range (a hand-edited config.json can hold anything).
_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}
_KINDS = {"str": "a string", "int": "a whole number", "float": "a number", "bool": "true or false"}
MAX_SEED = 2**31 - 1  # keras.utils.set_random_seed and the stateless RNG take it


def _check_types(c: TrainConfig) -> None:
    for f in fields(c):
        v = getattr(c, f.name)
        want = _TYPES[str(f.type)]
        if not isinstance(v, want) or (bool not in want and isinstance(v, bool)):
            raise DcganError(f"{f.name} must be {_KINDS[str(f.type)]}, got {json.dumps(v)[:40]}")
        if f.type == "float" and not math.isfinite(v):
            raise DcganError(f"{f.name.replace('_', '-')} must be a finite number, got {v}")


def validate(c: TrainConfig) -> None:
    def bad(msg: str) -> None:
        raise DcganError(msg)

    _check_types(c)
    if not 0 <= c.seed <= MAX_SEED:
        bad(f"seed must be between 0 and {MAX_SEED}, got {c.seed}")
    if c.run_name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", c.run_name):
        bad(f"name {c.run_name!r} is not a run name: use up to 64 letters, digits, '.', '_' or '-' "
            f"(no '/'), starting with a letter or digit")
    check_size(c.image_size, "re-run `dcgan preprocess ... --size 64`")
    if c.channels not in (1, 3):
        bad(f"{c.channels} channels is not supported; preprocess with --channels 3 or 1")
    for name in ("latent_dim", "g_filters", "d_filters", "batch_size", "epochs", "keep_checkpoints", "num_samples"):
        if getattr(c, name) < 1:
            bad(f"{name.replace('_', '-')} must be at least 1, got {getattr(c, name)}")
    for name in ("steps_per_epoch", "checkpoint_every_steps", "checkpoint_every_epochs", "sample_every_epochs", "eval_every_epochs"):
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
    if c.g_activation not in G_ACTIVATIONS:
        bad(f"g-activation must be one of {', '.join(G_ACTIVATIONS)}, got {c.g_activation!r}")
    if c.precision not in PRECISIONS:
        bad(f"precision must be one of {', '.join(PRECISIONS)}, got {c.precision!r}")
    if c.on_collapse not in ON_COLLAPSE:
        bad(f"on-collapse must be one of {', '.join(ON_COLLAPSE)}, got {c.on_collapse!r}")
    if c.strategy not in STRATEGIES:
        bad(f"strategy must be one of {', '.join(STRATEGIES)}, got {c.strategy!r}")
    _check_augment(c, bad)
    if c.condition:
        from dcgan_cli.data.conditions import check_spec

        check_spec(c.condition)
    _check_regularisers(c, bad)


def _check_regularisers(c: TrainConfig, bad) -> None:
    if c.loss not in LOSSES:
        bad(f"loss must be one of {', '.join(LOSSES)}, got {c.loss!r}")
    if c.loss == "hinge" and c.label_smoothing > 0:
        bad("label-smoothing applies to the nonsaturating loss only: use --label-smoothing 0, or "
            f"--loss nonsaturating (the dcgan preset trains with the hinge loss from {SMALL_DATA_BELOW:,} images)")
    if c.r1_gamma < 0:
        bad(f"r1-gamma must be 0 (off) or more, got {c.r1_gamma}")
    if c.r1_interval < 1:
        bad(f"r1-interval must be at least 1 (1: R1 on every step), got {c.r1_interval}")
    if c.bcr < 0:
        bad(f"bcr must be 0 (off) or more, got {c.bcr}")
    if c.d_norm not in D_NORMS:
        bad(f"d-norm must be one of {', '.join(D_NORMS)}, got {c.d_norm!r}")
    if c.r1_gamma > 0 and c.sync_bn and c.r1_interval > 1 and c.d_norm == "batch":
        # Lazy R1 runs D inside a tf.cond, where a synchronised batch norm cannot all-reduce across replicas
        # (G's can: R1 does not run G). Two replicas against one device: test_conditional.py.
        bad("lazy R1 cannot run with synchronised batch norm in D: use --r1-interval 1 (R1 on every step), "
            "--d-norm none, --no-sync-bn, or --r1-gamma 0")


def _check_augment(c: TrainConfig, bad) -> None:
    if c.augment not in AUGMENTS:
        bad(f"augment must be one of {', '.join(AUGMENTS)}, got {c.augment!r}")
    if not (0 <= c.augment_p <= 1 or c.augment_p == -1):
        bad(f"augment-p must be a probability in [0, 1], got {c.augment_p}")
    if not 0 < c.ada_target < 1:
        bad(f"ada-target must be in (0, 1), got {c.ada_target}")
    if not c.ada_kimg > 0:
        bad(f"ada-kimg must be positive, got {c.ada_kimg}")
    if c.ada_interval < 1:
        bad(f"ada-interval must be at least 1, got {c.ada_interval}")
