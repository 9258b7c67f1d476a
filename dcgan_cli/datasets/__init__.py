"""Known data sets and where they land under the data dir.

`fetch(name, data_dir)` makes a data set available on disk and returns the
folder of images. Each entry of `DATASETS` says how.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dcgan_cli.errors import DcganError


def default_data_dir() -> Path:
    return Path(os.environ.get("DCGAN_DATA_DIR") or "data")


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    size: str
    source: str
    image_dir: str  # relative to DATA_DIR/name: where the images end up
    fetch: Callable[..., Path]


def _fetch_lfw_sample(data_dir: Path, force: bool = False, **_) -> Path:
    from dcgan_cli.datasets.lfw_sample import write_lfw_sample

    return write_lfw_sample(data_dir / "lfw-sample", force=force)


DATASETS: dict[str, Dataset] = {
    "lfw-sample": Dataset(
        name="lfw-sample",
        description="100 real faces (25x25 grayscale) shipped inside scikit-image; offline",
        size="~60 KB",
        source="scikit-image: skimage.data.lfw_subset()",
        image_dir=".",
        fetch=_fetch_lfw_sample,
    ),
}


def get(name: str) -> Dataset:
    if name not in DATASETS:
        raise DcganError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)} (or pass an http(s) URL)")
    return DATASETS[name]


def image_dir(name: str, data_dir: Path) -> Path:
    """Where a known data set's images are once fetched."""
    return (data_dir / name / get(name).image_dir).resolve()
