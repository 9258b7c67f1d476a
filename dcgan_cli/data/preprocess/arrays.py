"""Array data sets (mnist.npz, IDX files) -> records, with their class labels: no decoding, no PNG round trip.

The driver treats an array folder like any other source: `listing()` names
each image (`train/00042`, `test/00007`) so resume, limits and reports work
unchanged, and `chunks()` turns a run of them into records in the main
process (the pixels are already decoded; worker processes would only copy
them). Each record carries the int64 feature `label` (the class id), which
the manifest declares as {"name": "label", "classes": [...]}.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from dcgan_cli.data.datasets import arrays
from dcgan_cli.errors import DcganError
from dcgan_cli.data.preprocess.sources import Listing
from dcgan_cli.data.shards import serialize_example

LABEL_FEATURE = "label"  # the class id of each image (int64)

_loaded: dict[tuple, arrays.Arrays] = {}  # (folder, split, its files' sizes and times) -> arrays: read once


def _load(root: str, split: str) -> arrays.Arrays:
    files = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(Path(root).iterdir())
                  if p.is_file())
    key = (root, split, files)
    if key not in _loaded:
        _loaded.clear()  # one data set at a time: 55 MB for MNIST, not more
        _loaded[key] = arrays.load(root, split)
    return _loaded[key]


def is_array_source(source: Path) -> bool:
    return arrays.is_array_folder(source)


def listing(source: Path, cfg) -> Listing:
    """The images of `cfg.split`, named SPLIT/INDEX (train images first with --split all)."""
    if cfg.crop == "celeba" or cfg.crop_size:
        raise DcganError(f"{source} holds whole square images as arrays; --crop celeba and --crop-size do not "
                         f"apply (leave them out: images are used whole, resized to --size)")
    names = [f"{split}/{i:05d}" for split, n in _load(str(source), cfg.split).splits for i in range(n)]
    return Listing("arrays", str(source), names, Counter())


def label_info(source: Path, cfg) -> list[dict]:
    """The manifest's "labels" entry: the class names from the data set's registry entry when known."""
    from dcgan_cli.data import datasets
    from dcgan_cli.data.datasets.install import read_marker

    labels = _load(str(source), cfg.split).labels
    if labels is None:
        return []
    marker = read_marker(source) or {}
    known = datasets.DATASETS.get(marker.get("dataset", ""))
    classes = list(known.classes) if known is not None and known.classes else \
        [str(i) for i in range(int(labels.max()) + 1 if len(labels) else 0)]
    return [{"name": LABEL_FEATURE, "dtype": "int64", "classes": classes}]


def _pixels(image, size: int, channels: int) -> bytes:
    """One uint8 (H, H[, C]) array -> (size, size, channels) bytes; Lanczos when the size changes."""
    import numpy as np
    from PIL import Image

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    grey = image.ndim == 2
    if image.shape[0] == size and grey == (channels == 1):
        return np.ascontiguousarray(image).tobytes()
    im = Image.fromarray(image, "L" if grey else "RGB").convert("L" if channels == 1 else "RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.LANCZOS)
    return im.tobytes()


def chunks(listing: Listing, cfg, start: int, chunk: int):
    """[(0, [record], note)] per chunk of `chunk` images from `start`, as the decoding workers give them."""
    images, labels, _ = _load(listing.root, cfg.split)
    for lo in range(start, len(listing.items), chunk):
        out = []
        for i in range(lo, min(lo + chunk, len(listing.items))):
            ints = {LABEL_FEATURE: int(labels[i])} if labels is not None else None
            out.append((0, [serialize_example(_pixels(images[i], cfg.size, cfg.channels), ints)], ""))
        yield out
