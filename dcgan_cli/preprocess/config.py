"""What `dcgan preprocess` does, checked once; the fields that shape pixels go into the manifest."""

from __future__ import annotations

from dataclasses import dataclass

from dcgan_cli.errors import DcganError
from dcgan_cli.preprocess.decoding import CELEBA_CROP, CROPS
from dcgan_cli.preprocess.sources import SPLITS
from dcgan_cli.shards import SIZE_RULE, SIZES


@dataclass(frozen=True)
class PreprocessConfig:
    """What `dcgan preprocess` does; the fields that shape pixels go into the manifest.

    Attributes:
        source: folder of images (searched recursively) or a .zip of images.
        out: output directory (local or gs://).
        size: output side, one of shards.SIZES.
        crop: one of decoding.CROPS (what each does: decoding.CROP_HELP).
        crop_size: side of the crop box; 0 = 108 for celeba, the largest square for center.
        channels: 3 (RGB) or 1 (grayscale).
        split: all | train (CelebA's list_eval_partition.txt, partition 0).
        workers: decoding processes; 0 = one per available CPU core.
        limit: use only the first N images (after sorting and the split); 0 = all.
        force: replace an existing complete output.
        shard_mb: target shard size in MB.
    """

    source: str
    out: str
    size: int = 64
    crop: str = "center"
    crop_size: int = 0
    channels: int = 3
    split: str = "all"
    workers: int = 0
    limit: int = 0
    force: bool = False
    shard_mb: float = 128

    def __post_init__(self):
        if self.size not in SIZES:
            raise DcganError(f"--size {self.size} is not supported; use {SIZE_RULE}")
        if self.crop not in CROPS:
            raise DcganError(f"--crop must be one of {', '.join(CROPS)}, got {self.crop!r}")
        if self.crop_size and self.crop == "none":
            raise DcganError("--crop-size needs --crop celeba or center (--crop none resizes the whole image)")
        if self.crop_size and self.crop_size < self.size:
            raise DcganError(f"--crop-size {self.crop_size} is smaller than --size {self.size}, so every image "
                             f"would be upscaled; use --crop-size {self.size} or more")
        if self.channels not in (1, 3):
            raise DcganError("--channels must be 3 (RGB) or 1 (grayscale)")
        if self.split not in SPLITS:
            raise DcganError(f"--split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.workers < 0 or self.limit < 0 or self.crop_size < 0:
            raise DcganError("--workers, --limit and --crop-size must be 0 or more")
        if not self.shard_mb > 0:
            raise DcganError("--shard-mb must be positive")

    @property
    def box_side(self) -> int:
        """The requested crop side (0: the largest centred square)."""
        return self.crop_size or (CELEBA_CROP if self.crop == "celeba" else 0)

    @property
    def image_bytes(self) -> int:
        return self.size * self.size * self.channels
