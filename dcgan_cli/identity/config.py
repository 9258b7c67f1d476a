"""`dcgan identity train`'s frozen config: checked by the CLI before TensorFlow loads, saved in the run dir."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from dcgan_cli.config import FrozenConfig
from dcgan_cli.errors import DcganError
from dcgan_cli.data.shards import check_size

LOSSES = ("arcface", "triplet")
MININGS = ("semi-hard", "batch-hard")
CLASS_AUGMENTS = ("none", "dihedral")
Loss = Enum("Loss", {x: x for x in LOSSES}, type=str)
Mining = Enum("Mining", [(x.replace("-", "_"), x) for x in MININGS], type=str)
ClassAugment = Enum("ClassAugment", {x: x for x in CLASS_AUGMENTS}, type=str)
CONFIG_FILE = "identity_config.json"  # not layout.CONFIG_FILE: `dcgan sample` never mistakes this run for a GAN


@dataclass(frozen=True)
class IdentityConfig(FrozenConfig):
    """Everything that decides an identity training run.

    Attributes:
        data: preprocessed data with identity labels (`dcgan preprocess ... --labels celeba|folders`).
        runs_dir, run_name: where the numbered run directory goes, and its name's suffix.
        image_size, channels: taken from the data's manifest.
        loss: arcface (additive angular margin softmax) | triplet (online mining).
        mining: semi-hard (FaceNet) | batch-hard (Hermans et al.): which triplets the triplet loss uses.
        margin: the triplet margin, in embedding (Euclidean) distance on the unit sphere.
        arc_margin, arc_scale: ArcFace's additive angle m (radians) and logit scale s.
        embedding_dim: length of the L2-normalised embedding.
        width: filters of the first stage (doubling each stage).
        p_identities, k_images: a batch holds P identities x K images of each.
        epochs: passes; steps_per_epoch: 0 means (training images) / (P x K).
        lr: Adam's learning rate (cosine-decayed to 0 over the run).
        holdout: identities held out of training for evaluation: a share (< 1) or a count (>= 1).
        flip: random horizontal flips (faces: yes; digits: no).
        augment: random shifts and zooms of up to this share of the side, rotations of up to half
            that many turns (0: none).
        class_augment: none | dihedral: each training identity's images turned by 90, 180 and 270
            degrees and mirrored become 7 new identities (Omniglot's class augmentation, as in
            Vinyals et al. 2016): more classes to learn from when there are few. For digits or
            characters, never for faces (a mirrored face is the same person); needs flip off.
        seed: seeds the weights and the batches; the held-out identities do not depend on it.
        checkpoint_every_steps: also checkpoint every N steps (0: per epoch only).
        keep_checkpoints: how many recent checkpoints to keep.
    """

    FILE = CONFIG_FILE
    COMMAND = "dcgan identity train"
    RESUMABLE = frozenset({"epochs", "checkpoint_every_steps"})  # how long it trains, never what

    data: str = ""
    runs_dir: str = "runs"
    run_name: str = ""
    image_size: int = 64
    channels: int = 3
    loss: str = "arcface"
    mining: str = "batch-hard"
    margin: float = 0.2
    arc_margin: float = 0.3
    arc_scale: float = 16.0
    embedding_dim: int = 128
    width: int = 32
    p_identities: int = 16
    k_images: int = 4
    epochs: int = 10
    steps_per_epoch: int = 0
    lr: float = 2e-3
    holdout: float = 0.1
    flip: bool = True
    augment: float = 0.1
    class_augment: str = "none"
    seed: int = 0
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 3

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise DcganError(msg)

        check_size(self.image_size, "re-run `dcgan preprocess ... --size 64`")
        if self.channels not in (1, 3):
            bad(f"{self.channels} channels is not supported; preprocess with --channels 3 or 1")
        if self.loss not in LOSSES:
            bad(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.mining not in MININGS:
            bad(f"--mining must be one of {', '.join(MININGS)}, got {self.mining!r}")
        if self.class_augment not in CLASS_AUGMENTS:
            bad(f"--class-augment must be one of {', '.join(CLASS_AUGMENTS)}, got {self.class_augment!r}")
        if self.class_augment == "dihedral" and self.flip:
            bad("--class-augment dihedral makes mirror images new identities, which random flips would undo; "
                "add --no-flip")
        for name in ("embedding_dim", "width", "p_identities", "epochs", "keep_checkpoints"):
            if getattr(self, name) < 1:
                bad(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.k_images < 2:
            bad(f"--k-images must be at least 2 (a positive pair needs two images of one person), got {self.k_images}")
        if self.p_identities < 2:
            bad(f"--p-identities must be at least 2 (a negative needs another person), got {self.p_identities}")
        for name in ("steps_per_epoch", "checkpoint_every_steps"):
            if getattr(self, name) < 0:
                bad(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(self, name)}")
        for name in ("margin", "lr", "arc_scale"):
            if not getattr(self, name) > 0:
                bad(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not 0 <= self.arc_margin < 1.5:
            bad(f"--arc-margin is an angle in radians in [0, 1.5), got {self.arc_margin}")
        if not 0 <= self.augment < 0.5:
            bad(f"--augment must be in [0, 0.5), got {self.augment}")
        if not self.holdout > 0 or (self.holdout >= 1 and self.holdout != int(self.holdout)):
            bad(f"--holdout is a share in (0, 1) or a whole number of identities, got {self.holdout}")

    @property
    def batch_size(self) -> int:
        return self.p_identities * self.k_images


def resume_config(run_dir: str | Path, **changes) -> IdentityConfig:
    """The identity run's saved config with `changes` (None values ignored), under the resume rule."""
    return IdentityConfig.of_run(run_dir).resumed(run_dir, **changes)
