"""Known data sets, where they come from, and where they land under the data dir.

A `Dataset` lists its `RemoteFile`s: each with its mirrors (tried in order),
size and checksums, and whether it is an archive to unpack or a file placed
beside the images. `fetch()` makes a data set available on disk: the download
machinery (http.py, drive.py, verify.py, extract.py, install.py) serves every
entry, including a user's own archive given by URL (`from_url`), and
progress.py draws their bars. lfw-sample is the exception: lfw_sample.py writes
it from scikit-image, offline. arrays.py reads the sets that come as arrays
((Fashion-)MNIST's npz and IDX files) rather than image files.

`DATASETS` is a plain dict, so tests (and users' own code) can register
entries, e.g. a CelebA-like set served by a local server with tiny archives.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlparse

from dcgan_cli.data.datasets import drive
from dcgan_cli.errors import DcganError, UsageError

# The image files a data set holds: what `download` counts and `dcgan preprocess` reads.
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


DATA_DIR_ENV = "DCGAN_DATA_DIR"  # where --data-dir points when not given
DEFAULT_DATA_DIR = "data"  # ... and when that is not set either: ./data


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: where to get it and how to recognise it."""

    filename: str  # its name in the downloads cache (and beside the images if not extracted)
    mirrors: tuple[str, ...]
    size: int | None = None  # bytes; checked before the checksum (and before a long download)
    md5: str | None = None
    sha256: str | None = None
    extract: bool = False  # True: an archive unpacked into the data set's folder
    manual: str = ""  # where a person downloads it by hand (shown when every mirror fails)

    @property
    def checksum(self) -> str | None:
        return self.sha256 or self.md5


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    size: str
    source: str
    image_dir: str  # relative to DATA_DIR/name: where the images end up
    files: tuple[RemoteFile, ...] = ()
    expected_images: int | None = None  # checked after extraction; None: at least one
    fetch: Callable[..., Path] | None = None  # a custom writer instead of the download machinery
    kaggle: str = ""  # a Kaggle page with a re-packed copy (other checksums), for the manual route
    arrays: bool = False  # images come as arrays (.npz or IDX files, see arrays.py), not image files
    classes: tuple[str, ...] = ()  # the class names of its labels, by class id (arrays data sets)


def _fetch_lfw_sample(data_dir: Path, force: bool = False, **_) -> Path:
    from dcgan_cli.data.datasets.lfw_sample import write_lfw_sample

    return write_lfw_sample(data_dir / "lfw-sample", force=force)


_GRAAL = "https://graal.ift.ulaval.ca/public/celeba/"  # a university mirror of the original files


def _celeba_file(name: str, drive_id: str, md5: str, **kw) -> RemoteFile:
    return RemoteFile(name, (drive.download_url(drive_id), _GRAAL + name), md5=md5, manual=drive.view_url(drive_id),
                      **kw)


# CelebA as published by CUHK MMLAB (ids, sizes and checksums as in torchvision's celeba.py and TFDS).
CELEBA = Dataset(
    name="celeba",
    description="CelebA: 202,599 aligned and cropped 178x218 celebrity faces, with annotations",
    size="1.4 GB",
    source="Google Drive (CUHK MMLAB), then graal.ift.ulaval.ca and Udacity's S3 copy",
    image_dir="img_align_celeba",
    expected_images=202_599,
    kaggle="https://www.kaggle.com/datasets/jessicali9530/celeba-dataset",
    files=(
        RemoteFile(
            "img_align_celeba.zip",
            (drive.download_url("0B7EVK8r0v71pZjFTYXZWM3FlRnM"), _GRAAL + "img_align_celeba.zip",
             # The same bytes (same MD5) under another name, outside Drive.
             "https://s3-us-west-1.amazonaws.com/udacity-dlnfd/datasets/celeba.zip"),
            size=1_443_490_838, md5="00d2c5bc6d35e252742224ab0c1e8fcb",
            sha256="46fb89443c578308acf364d7d379fe1b9efb793042c0af734b6112e4fd3a8c74",
            extract=True, manual=drive.view_url("0B7EVK8r0v71pZjFTYXZWM3FlRnM"),
        ),
        # The partition file lets users train on the train split only.
        _celeba_file("list_eval_partition.txt", "0B7EVK8r0v71pY0NSMzRuSXJEVkk", "d32c9cbf5e040fd4025c592c306e6668"),
        _celeba_file("identity_CelebA.txt", "1_ee_0u7vcNLOfNLegJRHmolfH5ICW-XS", "32bd1bd63d3c78cd57e08160ec5ed1e2"),
        _celeba_file("list_attr_celeba.txt", "0B7EVK8r0v71pblRyaVFSWGxPY0U", "75e246fa4810816ffd6ee81facbd244c"),
        _celeba_file("list_landmarks_align_celeba.txt", "0B7EVK8r0v71pd0FJY3Blby1HUTQ",
                     "cc24ecafdb5b50baae59b03474781f8c"),
    ),
)

# Keras' copy of MNIST (storage.googleapis.com, its own origin since Keras 2.2) and the older
# Keras origin on S3; the SHA-256 is keras/src/datasets/mnist.py's `file_hash`, the MD5 the one
# Keras 2.1 used for the S3 copy (the same bytes).
_KERAS_DATA = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
MNIST = Dataset(
    name="mnist",
    description="MNIST: 70,000 28x28 grayscale handwritten digits (60,000 train, 10,000 test), labels 0-9",
    size="11 MB",
    source="Keras' mnist.npz (storage.googleapis.com, then the old S3 copy)",
    image_dir=".",
    arrays=True,
    expected_images=70_000,
    classes=tuple(str(i) for i in range(10)),
    files=(RemoteFile("mnist.npz", (_KERAS_DATA + "mnist.npz", "https://s3.amazonaws.com/img-datasets/mnist.npz"),
                      size=11_490_434, md5="8a61469f7ea1b51cbae51d4f78837e45",
                      sha256="731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
                      manual=_KERAS_DATA + "mnist.npz"),),
)

# Zalando's Fashion-MNIST as four IDX files; SHA-256 from keras/src/datasets/fashion_mnist.py
# (FILE_HASHES), MD5 from the data set's README (also torchvision's).
_FASHION_MIRRORS = (_KERAS_DATA, "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/")


def _fashion_file(name: str, md5: str, sha256: str) -> RemoteFile:
    return RemoteFile(name, tuple(m + name for m in _FASHION_MIRRORS), md5=md5, sha256=sha256,
                      manual="https://github.com/zalandoresearch/fashion-mnist#get-the-data")


FASHION_MNIST = Dataset(
    name="fashion-mnist",
    description="Fashion-MNIST: 70,000 28x28 grayscale clothing photos (60,000 train, 10,000 test), 10 classes",
    size="30 MB",
    source="Keras' copy on storage.googleapis.com, then Zalando's S3 and GitHub",
    image_dir=".",
    arrays=True,
    expected_images=70_000,
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
             "Ankle boot"),
    files=(
        _fashion_file("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                      "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        _fashion_file("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
                      "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        _fashion_file("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
                      "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        _fashion_file("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
                      "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    ),
)

DATASETS: dict[str, Dataset] = {
    "celeba": CELEBA,
    "mnist": MNIST,
    "fashion-mnist": FASHION_MNIST,
    "lfw-sample": Dataset(
        name="lfw-sample",
        description="100 real faces (25x25 grayscale) shipped inside scikit-image; offline",
        size="~60 KB",
        source="scikit-image: skimage.data.lfw_subset()",
        image_dir=".",
        fetch=_fetch_lfw_sample,
    ),
}

# Names under the data dir that belong to other commands.
_RESERVED = {"processed", "downloads"}


def get(name: str) -> Dataset:
    if name not in DATASETS:
        raise DcganError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)} (or pass an http(s) URL "
                         f"of a zip/tar archive)")
    return DATASETS[name]


def is_url(name: str) -> bool:
    return name.lower().startswith(("http://", "https://"))


def resolve(dataset: str, name: str | None = None, sha256: str | None = None, md5: str | None = None) -> Dataset:
    """`dcgan download DATASET` as typed: a known data set, or the archive at a URL (with its name and checksums)."""
    if is_url(dataset):
        return from_url(dataset, name=name, sha256=sha256, md5=md5)
    if sha256 or md5 or name:
        raise UsageError("--sha256, --md5 and --name apply to a URL; known data sets carry their own", "DATASET")
    return get(dataset)


def from_url(url: str, name: str | None = None, sha256: str | None = None, md5: str | None = None) -> Dataset:
    """A data set made of one archive of images at `url` (a user's own data)."""
    url = drive.normalise_url(url)
    fid = drive.file_id(url)
    filename = f"{fid}.archive" if fid else unquote(Path(urlparse(url).path).name)
    if name is None:
        if fid or not filename:
            raise DcganError("cannot tell a name from this URL; pass --name NAME (the folder under the data dir)")
        name = re.sub(r"(\.tar)?\.[A-Za-z0-9]+$", "", filename)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name in _RESERVED or name in DATASETS:
        raise DcganError(f"--name {name!r} cannot be used: choose letters, digits, '.', '_' or '-' (not "
                         f"{', '.join(sorted(_RESERVED | set(DATASETS)))})")
    return Dataset(
        name=name, description=f"archive from {url}", size="?", source=url, image_dir=".",
        files=(RemoteFile(filename or f"{name}.archive", (url,), sha256=_hex(sha256, 64, "--sha256"),
                          md5=_hex(md5, 32, "--md5"), extract=True, manual=url),),
    )


def _hex(value: str | None, length: int, flag: str) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if not re.fullmatch(f"[0-9a-f]{{{length}}}", value):
        raise DcganError(f"{flag} must be {length} hex digits, got {value!r}")
    return value


def fetch(dataset: Dataset, data_dir: Path, force: bool = False, **options):
    """Make `dataset` available under `data_dir`; returns install.Result (see install.py for the options).

    A filesystem error (a read-only data dir, a disk that fills while
    extracting) is one line naming the path and the fix; what was there before
    is untouched and the half-built folder is gone (install.py builds aside).
    """
    from dcgan_cli.data.datasets.install import Result, install
    from dcgan_cli.errors import resume_hint
    from dcgan_cli.fsutil import os_error

    # What a download keeps when stopped (the .part files) is what the next run resumes from.
    with resume_hint("Interrupted: run the same command again to resume the download."):
        try:
            if dataset.fetch is not None:
                if options.get("urls") or options.get("archives"):
                    raise DcganError(f"{dataset.name} is written offline; --url and --archive do not apply to it")
                from dcgan_cli.data.datasets.extract import count_images

                path = dataset.fetch(data_dir, force=force)
                return Result(dataset=dataset.name, path=path, images=count_images(path))
            return install(dataset, data_dir, force=force, **options)
        except OSError as e:  # the network's errors are handled (and worded) by http.py
            raise os_error(e, e.filename or data_dir, elsewhere="--data-dir") from None


def image_dir(name: str, data_dir: Path) -> Path:
    """Where a known data set's images are once fetched."""
    return (data_dir / name / get(name).image_dir).resolve()
