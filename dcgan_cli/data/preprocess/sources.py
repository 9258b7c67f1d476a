"""Where the images are: SOURCE as typed -> a sorted list of image files (folder or zip), CelebA's split.

The list is sorted, so the output is the same on every run.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from dcgan_cli.data import datasets
from dcgan_cli.data.datasets import IMAGE_EXTS
from dcgan_cli.errors import DcganError

SPLITS = ("all", "train", "test")
# CelebA's list_eval_partition.txt: 0 train, 1 validation, 2 test. (Array data sets carry their own splits.)
PARTITIONS = {"train": "0", "test": "2"}
Split = Enum("Split", [(s.upper(), s) for s in SPLITS], type=str)  # --split's choices, from SPLITS
PARTITION_FILE = "list_eval_partition.txt"
# Data sets whose images sit in a sub-folder of DATA_DIR/NAME, for names the
# download registry (datasets.DATASETS) does not know (yet).
KNOWN_LAYOUTS = {"celeba": "img_align_celeba"}
CELEBA_NAMES = ("celeba", "img_align_celeba")


def resolve_source(source: str, data_dir: str | Path) -> tuple[Path, str]:
    """SOURCE as typed -> (folder or zip path, short name for the output dir).

    A known data set name wins over a same-named folder in the current
    directory (type ./NAME for that); anything else must be an existing
    folder or zip.
    """
    data_dir = Path(data_dir)
    if source in datasets.DATASETS:
        path = datasets.image_dir(source, data_dir)
        if not path.is_dir():
            raise DcganError(f"{source} is not downloaded yet ({path} is missing); run `dcgan download {source}` first")
        return path, source
    if source in KNOWN_LAYOUTS:
        path = data_dir / source / KNOWN_LAYOUTS[source]
        if not path.is_dir():
            raise DcganError(f"{source} is not downloaded yet ({path} is missing); run `dcgan download {source}` first")
        return path, source
    path = Path(source).expanduser()
    if path.is_dir():
        return path, path.resolve().name
    if path.is_file():
        if path.suffix.lower() != ".zip":
            raise DcganError(f"{path} is a file but not a .zip; pass a folder of images, a .zip of images, "
                             f"or a data set name ({', '.join(sorted(datasets.DATASETS))})")
        return path, path.stem
    known = ", ".join(sorted(set(datasets.DATASETS) | set(KNOWN_LAYOUTS)))
    raise DcganError(f"{source} is neither a known data set ({known}) nor an existing folder or .zip of images")


@dataclass
class Listing:
    kind: str  # "dir" or "zip"
    root: str
    items: list[str]  # relative paths (dir) or member names (zip), sorted
    other: Counter  # what else was found, by extension, for error messages


def list_images(source: str | Path) -> Listing:
    """All image files under a folder (recursively) or in a zip, sorted.

    Extensions match in any case. Hidden files and folders (".DS_Store",
    "._x.jpg" from macOS) and zip metadata ("__MACOSX/") are not images and
    are left out.
    """
    source = Path(source)
    items, other = [], Counter()
    if source.is_dir():
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, source)
            for f in filenames:
                if f.startswith("."):
                    continue
                ext = os.path.splitext(f)[1].lower()
                if ext in IMAGE_EXTS:
                    items.append(f if rel == "." else f"{rel}/{f}".replace(os.sep, "/"))
                else:
                    other[ext or "(no extension)"] += 1
        return Listing("dir", str(source), sorted(items), other)
    import zipfile

    try:
        with zipfile.ZipFile(source) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as e:
        raise DcganError(f"{source} is not a readable zip ({e}); download it again or unpack it") from None
    for name in names:
        base = name.rsplit("/", 1)[-1]
        if name.startswith("__MACOSX/") or base.startswith("."):
            continue
        ext = os.path.splitext(base)[1].lower()
        if ext in IMAGE_EXTS:
            items.append(name)
        else:
            other[ext or "(no extension)"] += 1
    return Listing("zip", str(source), sorted(items), other)


def describe_other(other: Counter) -> str:
    if not other:
        return "nothing (it is empty)"
    parts = [f"{n} {ext}" for ext, n in other.most_common(5)]
    rest = sum(other.values()) - sum(n for _, n in other.most_common(5))
    return f"{sum(other.values())} other files ({', '.join(parts)}{f', {rest} more' if rest else ''})"


def train_split(listing: Listing, partition: str = "0") -> tuple[set[str], str]:
    """Basenames in a partition of CelebA's (0: train, the default; 2: test) and the file they came from."""
    candidates = [Path(listing.root) / PARTITION_FILE, Path(listing.root).parent / PARTITION_FILE]
    text, where = None, None
    if listing.kind == "zip":
        import zipfile

        with zipfile.ZipFile(listing.root) as zf:
            inside = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == PARTITION_FILE]
            if inside:
                from dcgan_cli.data.preprocess.decoding import MAX_ZIP_MEMBER_BYTES, Skip, read_zip_member

                try:
                    data = read_zip_member(zf, inside[0], MAX_ZIP_MEMBER_BYTES)
                except Skip as e:
                    raise DcganError(f"{listing.root}:{inside[0]} is not CelebA's partition file ({e})") from None
                text, where = data.decode("utf-8", "replace"), f"{listing.root}:{inside[0]}"
        candidates = [Path(listing.root).parent / PARTITION_FILE]
    for c in candidates:
        if text is None and c.is_file():
            text, where = c.read_text(encoding="utf-8", errors="replace"), str(c)
    if text is None:
        looked = " or ".join(str(c) for c in candidates)
        split = next((k for k, v in PARTITIONS.items() if v == partition), partition)
        raise DcganError(f"--split {split} needs CelebA's {PARTITION_FILE} (looked for {looked}); "
                         f"`dcgan download celeba` fetches it, or use --split all")
    train = set()
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DcganError(f"{where} line {n} is not `FILE PARTITION` ({line.strip()!r}); "
                             f"fetch it again with `dcgan download celeba --force`")
        if fields[1] == partition:
            train.add(fields[0])
    return train, where

