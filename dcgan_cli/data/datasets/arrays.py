"""Data sets that come as arrays, not image files: Keras' `mnist.npz` and the IDX files of (Fashion-)MNIST.

A folder is an array data set when it holds either
  mnist.npz (or any one .npz) with x_train, y_train, x_test, y_test  (Keras' layout), or
  train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz] and/or
  t10k-images-idx3-ubyte[.gz]  + t10k-labels-idx1-ubyte[.gz]          (LeCun's IDX format).
`dcgan download` counts them (`count`) and `dcgan preprocess` reads them
(`load`) straight into shards, with their class labels: no PNG round trip.

IDX (http://yann.lecun.com/exdb/mnist/): a big-endian header, magic
0x00000801 (labels, 1 dim) or 0x00000803 (images, 3 dims), one uint32 per
dimension, then the uint8 values. The .gz copies are read through gzip; the
format is told from the first two bytes, not the name. numpy only.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import NamedTuple

from dcgan_cli.errors import DcganError

SPLITS = ("train", "test")
# IDX file stems per split (images, labels), as published.
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
NPZ_KEYS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}
_IDX_UBYTE = 0x08  # the only element type (uint8) these data sets use
_FIX = "download it again with `dcgan download NAME --force`"


def _open(path: Path):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _idx_path(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _npz_path(folder: Path) -> Path | None:
    found = sorted(folder.glob("*.npz"))
    return found[0] if len(found) == 1 else None


def is_array_folder(folder: Path) -> bool:
    """Does `folder` hold a .npz or at least one split of IDX files?"""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    return _npz_path(folder) is not None or any(_idx_path(folder, IDX_FILES[s][0]) for s in SPLITS)


def _idx_header(f, path: Path) -> tuple[int, ...]:
    head = f.read(4)
    if len(head) != 4 or head[:2] != b"\0\0" or head[2] != _IDX_UBYTE or head[3] not in (1, 3):
        raise DcganError(f"{path} is not an IDX file of uint8 images or labels (it starts with {head!r}); {_FIX}")
    dims = f.read(4 * head[3])
    if len(dims) != 4 * head[3]:
        raise DcganError(f"{path} ends inside its IDX header; {_FIX}")
    return struct.unpack(f">{head[3]}I", dims)


def read_idx(path: str | Path):
    """An IDX file (raw or .gz) -> uint8 array of its shape; errors name the file and the fix."""
    import numpy as np

    path = Path(path)
    try:
        with _open(path) as f:
            shape = _idx_header(f, path)
            data = f.read()
    except (OSError, EOFError) as e:  # a truncated or damaged .gz
        raise DcganError(f"{path} is damaged ({e}); {_FIX}") from None
    need = int(np.prod(shape))
    if len(data) != need:
        raise DcganError(f"{path} holds {len(data):,} values, its header says {need:,} {shape}; {_FIX}")
    return np.frombuffer(data, np.uint8).reshape(shape)


def _idx_count(path: Path) -> int:
    try:
        with _open(path) as f:
            return _idx_header(f, path)[0]
    except (OSError, EOFError) as e:
        raise DcganError(f"{path} is damaged ({e}); {_FIX}") from None


def _load_npz(path: Path) -> dict:
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DcganError(f"{path} is not a readable .npz ({e}); {_FIX}") from None


def _npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """{array name: shape} of an .npz, from the .npy headers alone (nothing is decompressed beyond them)."""
    import zipfile

    import numpy as np

    shapes = {}
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if name.endswith(".npy"):
                    with z.open(name) as f:
                        major, _ = np.lib.format.read_magic(f)
                        read = np.lib.format.read_array_header_1_0 if major == 1 else \
                            np.lib.format.read_array_header_2_0
                        shapes[name[:-4]] = read(f)[0]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DcganError(f"{path} is not a readable .npz ({e}); {_FIX}") from None
    return shapes


def available_splits(folder: Path) -> tuple[str, ...]:
    folder = Path(folder)
    npz = _npz_path(folder)
    if npz is not None:
        keys = set(_npz_shapes(npz))
        return tuple(s for s in SPLITS if NPZ_KEYS[s][0] in keys)
    return tuple(s for s in SPLITS if _idx_path(folder, IDX_FILES[s][0]))


def _load_split(folder: Path, split: str, npz: dict | None):
    """(images (N, H, W[, C]) uint8, labels (N,) int64 or None) of one split."""
    import numpy as np

    if npz is not None:
        xk, yk = NPZ_KEYS[split]
        x, y = npz[xk], npz.get(yk)
        where = f"{_npz_path(folder)}[{xk}]"
    else:
        images, labels = (_idx_path(folder, stem) for stem in IDX_FILES[split])
        x, y = read_idx(images), (read_idx(labels) if labels is not None else None)
        where = str(images)
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or x.shape[1] != x.shape[2] or \
            (x.ndim == 4 and x.shape[3] not in (1, 3)):
        raise DcganError(f"{where} is {x.dtype} {x.shape}, not uint8 square images (N, H, H[, 1 or 3]); {_FIX}")
    if y is not None:
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise DcganError(f"the labels of {where} are {y.dtype} {y.shape}, not one integer per image "
                             f"({len(x):,}); {_FIX}")
        y = y.astype(np.int64)
    return x, y


class Arrays(NamedTuple):
    images: "np.ndarray"  # noqa: F821 - uint8 (N, H, H) or (N, H, H, C)
    labels: "np.ndarray | None"  # noqa: F821 - int64 (N,), None when the files have none
    splits: tuple[tuple[str, int], ...]  # (split, count) in the order the images come


def load(folder: str | Path, split: str = "all") -> Arrays:
    """Images and labels of `split` (train, test, or all: train then test); labels None if absent."""
    import numpy as np

    folder = Path(folder)
    npz_path = _npz_path(folder)
    if npz_path is None and not is_array_folder(folder):
        raise DcganError(f"{folder} holds neither one .npz nor IDX files (train-images-idx3-ubyte[.gz], ...)")
    npz = _load_npz(npz_path) if npz_path is not None else None
    have = tuple(s for s in SPLITS if (NPZ_KEYS[s][0] in npz if npz is not None
                                      else _idx_path(folder, IDX_FILES[s][0])))
    wanted = have if split == "all" else (split,)
    if split not in ("all", *SPLITS) or not set(wanted) <= set(have) or not wanted:
        raise DcganError(f"{folder} has no {split} split (it has: {', '.join(have) or 'none'}); "
                         f"use --split {' or '.join(('all',) + have)}")
    parts = [_load_split(folder, s, npz) for s in wanted]
    shapes = {x.shape[1:] for x, _ in parts}
    if len(shapes) > 1:
        raise DcganError(f"the splits of {folder} have different image shapes ({sorted(shapes)}); {_FIX}")
    x = np.concatenate([x for x, _ in parts])
    labels = None if any(y is None for _, y in parts) else np.concatenate([y for _, y in parts])
    return Arrays(x, labels, tuple((s, len(p[0])) for s, p in zip(wanted, parts)))


def count(folder: str | Path) -> int:
    """How many images the arrays in `folder` hold (all splits); 0 when it holds none."""
    folder = Path(folder)
    npz = _npz_path(folder)
    if npz is not None:
        shapes = _npz_shapes(npz)
        return sum(shapes[NPZ_KEYS[s][0]][0] for s in SPLITS if shapes.get(NPZ_KEYS[s][0]))
    paths = [_idx_path(folder, IDX_FILES[s][0]) for s in SPLITS]
    return sum(_idx_count(p) for p in paths if p is not None)


def native_shape(folder: str | Path) -> tuple[int, int] | None:
    """(side, channels) of the images of an array folder, from its first split; None if it is not one."""
    folder = Path(folder)
    if not is_array_folder(folder) or not available_splits(folder):
        return None
    split = available_splits(folder)[0]
    npz = _npz_path(folder)
    if npz is not None:
        shape = _npz_shapes(npz)[NPZ_KEYS[split][0]][1:]
    else:
        path = _idx_path(folder, IDX_FILES[split][0])
        with _open(path) as f:
            shape = _idx_header(f, path)[1:]
    if len(shape) not in (2, 3):
        return None  # load() explains what is wrong
    return shape[0], (shape[2] if len(shape) == 3 else 1)
