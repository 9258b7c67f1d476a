"""What `dcgan preprocess` does, checked once; the fields that shape pixels go into the manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dcgan_cli.errors import DcganError, UsageError
from dcgan_cli.data.preprocess.decoding import CELEBA_CROP, CROPS
from dcgan_cli.data.preprocess.labels import LABEL_MODES
from dcgan_cli.data.preprocess.sources import CELEBA_NAMES, SPLITS, resolve_source
from dcgan_cli.data.shards import SIZE_RULE, SIZES, processed_dir

DEFAULT_SIZE = 64
DEFAULT_CHANNELS = 3


@dataclass(frozen=True)
class PreprocessConfig:
    """What `dcgan preprocess` does; the fields that shape pixels go into the manifest.

    Attributes:
        source: folder of images (searched recursively) or a .zip of images.
        out: output directory (local or gs://).
        size: output side, one of shards.SIZES.
        crop: one of decoding.CROPS (what each does: decoding.CROP_HELP).
        crop_size: side of the crop box; 0 = 108 for celeba and face, the largest square for center.
            For face it is measured in CelebA's 178x218 aligned frame, whatever the photo's size.
        channels: 3 (RGB) or 1 (grayscale).
        split: all | train | test (CelebA: list_eval_partition.txt's partitions 0 and 2;
            mnist/fashion-mnist arrays: their own train and test sets).
        workers: decoding processes; 0 = one per available CPU core.
        limit: use only the first N images (after sorting and the split); 0 = all.
        force: replace an existing complete output.
        shard_mb: target shard size in MB.
        min_face: with crop face, leave out faces whose box is under N pixels in the photo (0: keep all).
        labels: per-image labels to store (labels.LABEL_MODES): auto | none | celeba | folders.
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
    min_face: int = 0
    labels: str = "auto"

    def __post_init__(self):
        if self.size not in SIZES:
            raise UsageError(f"{self.size} is not supported; use {SIZE_RULE}", "--size")
        if self.crop not in CROPS:
            raise UsageError(f"choose one of {', '.join(CROPS)}, not {self.crop!r}", "--crop")
        if self.crop_size and self.crop == "none":
            raise DcganError("--crop-size needs --crop celeba or center (--crop none resizes the whole image)")
        if self.crop_size and self.crop_size < self.size and self.crop != "face":
            raise UsageError(f"{self.crop_size} is smaller than --size {self.size}, so every image would be "
                             f"upscaled; use --crop-size {self.size} or more", "--crop-size")
        if self.channels not in (1, 3):
            raise UsageError(f"choose 3 (RGB) or 1 (grayscale), not {self.channels}", "--channels")
        if self.split not in SPLITS:
            raise UsageError(f"choose one of {', '.join(SPLITS)}, not {self.split!r}", "--split")
        if self.workers < 0 or self.limit < 0 or self.crop_size < 0:
            raise DcganError("--workers, --limit and --crop-size must be 0 or more")
        if self.labels not in LABEL_MODES:
            raise DcganError(f"--labels must be one of {', '.join(LABEL_MODES)}, got {self.labels!r}")
        if not self.shard_mb > 0:
            raise DcganError("--shard-mb must be positive")
        if self.min_face < 0:
            raise DcganError("--min-face must be 0 or more")
        if self.min_face and self.crop != "face":
            raise DcganError("--min-face applies to --crop face; add --crop face or leave it out")
        if self.crop == "face":
            from dcgan_cli.data.preprocess import faces  # no TensorFlow or mtcnn import: only whether it is there

            if not faces.available():
                raise DcganError(faces.MISSING)

    @property
    def box_side(self) -> int:
        """The requested crop side (0: the largest centred square)."""
        return self.crop_size or (CELEBA_CROP if self.crop in ("celeba", "face") else 0)

    @property
    def image_bytes(self) -> int:
        return self.size * self.size * self.channels


def resolve_config(source: str, data_dir: str | Path, *, out: str | None = None, size: int | None = None,
                   crop: str | None = None, channels: int | None = None, **rest) -> PreprocessConfig:
    """`dcgan preprocess SOURCE` as typed -> the checked config, with every default filled in.

    SOURCE is a data set name under `data_dir` or a folder/zip. An array data
    set (mnist.npz, IDX) keeps its own side and channels and is not cropped;
    CelebA gets its face box; anything else is centre-cropped, 64x64 RGB. The
    output defaults to DATA_DIR/processed/NAME-SIZE (NAME-faces-SIZE for --crop face).
    `rest`: the other `PreprocessConfig` fields.
    """
    from dcgan_cli.data.datasets.arrays import native_shape

    src, name = resolve_source(source, data_dir)
    native = native_shape(src)  # (side, channels) of an array data set, else None
    size = size or (native[0] if native else DEFAULT_SIZE)
    channels = channels or (native[1] if native else DEFAULT_CHANNELS)
    crop = crop or ("celeba" if name in CELEBA_NAMES else "none" if native else "center")
    out = out or str(processed_dir(data_dir, f"{name}-faces" if crop == "face" else name, size))
    return PreprocessConfig(source=str(src), out=out, size=size, crop=crop, channels=channels, **rest)
