"""Images -> training-ready shards, once (pipeline.py reads them).

Decoding, cropping and resizing happen here and never again during training.

How a run goes:
  1. Resolve SOURCE (a known data set, a folder searched recursively, or a zip)
     and list its image files, sorted, so the output is the same on every run.
  2. Decode in worker processes, a chunk of files at a time, with at most a few
     chunks in flight: memory stays flat whatever the data set size.
  3. The main process appends each image (as a ready-serialised
     `tf.train.Example`) to the current shard; every closed shard is recorded in
     `.progress.json`, so an interrupted run resumes from the last closed shard.
  4. `manifest.json` is written last, atomically. It is the commit point: the
     output is complete exactly when the manifest is there, and it lists the
     shards that belong to it. A previous complete output stays valid until the
     new manifest replaces it (shard names carry a per-run tag, so old and new
     shards never collide); only then are the old shards deleted.

Nothing here renames directories, so the same steps work on `gs://` paths
through `tf.io.gfile`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import secrets
import signal
import stat
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from dcgan_cli import __version__
from dcgan_cli.datasets import IMAGE_EXTS
from dcgan_cli.errors import DcganError
from dcgan_cli.pipeline import FORMAT, MANIFEST

SIZES = (28, 16, 32, 64, 128, 256)
CROPS = ("celeba", "center", "none")
SPLITS = ("all", "train")
CELEBA_CROP = 108
PARTITION_FILE = "list_eval_partition.txt"
PROGRESS = ".progress.json"
SKIPPED = "skipped.txt"
SMALL = "small.txt"
# Data sets whose images sit in a sub-folder of DATA_DIR/NAME, for names the
# download registry (datasets.DATASETS) does not know (yet).
KNOWN_LAYOUTS = {"celeba": "img_align_celeba"}
CELEBA_NAMES = ("celeba", "img_align_celeba")
# Decoded bytes per chunk handed to a worker: big enough that inter-process
# overhead is noise, small enough that a few chunks in flight stay ~10s of MB.
CHUNK_BYTES = 4 << 20


@dataclass(frozen=True)
class PreprocessConfig:
    """What `dcgan preprocess` does; the fields that shape pixels go into the manifest.

    Attributes:
        source: folder of images (searched recursively) or a .zip of images.
        out: output directory (local or gs://).
        size: output side: 28 or a power of two from 16 to 256.
        crop: celeba (the DCGAN 108x108 face box) | center (largest centred
            square) | none (resize the whole image, aspect not kept).
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
            raise DcganError(f"--size {self.size} is not supported; use 28 or a power of two from 16 to 256")
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


# ----------------------------------------------------------------------------
# Where the images are


def resolve_source(source: str, data_dir: str | Path) -> tuple[Path, str]:
    """SOURCE as typed -> (folder or zip path, short name for the output dir).

    A known data set name wins over a same-named folder in the current
    directory (type ./NAME for that); anything else must be an existing
    folder or zip.
    """
    from dcgan_cli import datasets

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


def train_split(listing: Listing) -> tuple[set[str], str]:
    """Basenames in CelebA's training partition (0) and the file they came from."""
    candidates = [Path(listing.root) / PARTITION_FILE, Path(listing.root).parent / PARTITION_FILE]
    text, where = None, None
    if listing.kind == "zip":
        import zipfile

        with zipfile.ZipFile(listing.root) as zf:
            inside = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == PARTITION_FILE]
            if inside:
                text, where = zf.read(inside[0]).decode("utf-8", "replace"), f"{listing.root}:{inside[0]}"
        candidates = [Path(listing.root).parent / PARTITION_FILE]
    for c in candidates:
        if text is None and c.is_file():
            text, where = c.read_text(encoding="utf-8", errors="replace"), str(c)
    if text is None:
        looked = " or ".join(str(c) for c in candidates)
        raise DcganError(f"--split train needs CelebA's {PARTITION_FILE} (looked for {looked}); "
                         f"`dcgan download celeba` fetches it, or use --split all")
    train = set()
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DcganError(f"{where} line {n} is not `FILE PARTITION` ({line.strip()!r}); "
                             f"fetch it again with `dcgan download celeba --force`")
        if fields[1] == "0":
            train.add(fields[0])
    return train, where


# ----------------------------------------------------------------------------
# One image -> pixels (runs in the worker processes)


def crop_box(w: int, h: int, crop: str, side: int = 0) -> tuple[tuple[int, int, int, int], bool]:
    """The crop box (left, top, right, bottom) and whether the image was too small for it.

    `celeba` follows carpedm20/DCGAN-tensorflow's `center_crop` (utils.py),
    which TTUR's DCGAN_FID_batched/utils.py copies unchanged:
        j = int(round((h - crop_h) / 2.)); i = int(round((w - crop_w) / 2.))
    i.e. the box is centred on the image centre, with no offset: on the
    178x218 aligned CelebA images the 108x108 box is (35, 55, 143, 163), which
    is where the alignment put the face. `center` is the same rule with the
    largest square as the default side. An image smaller than the box gets its
    largest centred square instead (reported, not skipped).
    """
    if crop == "none":
        return (0, 0, w, h), False
    side = side or min(w, h)
    small = side > min(w, h)
    side = min(side, w, h)
    top, left = int(round((h - side) / 2.0)), int(round((w - side) / 2.0))
    return (left, top, left + side, top + side), small


def _to_mode(im, channels: int):
    """Any Pillow mode -> "RGB" or "L", without the classic conversion traps.

    - 16/32-bit integer images ("I;16", "I"): Pillow's own convert clips them
      at 255 (white); scale them down by their bit depth instead.
    - Float images ("F"): [0, 1] or [0, 255] ranges, scaled accordingly.
    - Alpha ("RGBA", "LA", "PA", palette with transparency): composited over
      white, as a viewer shows them, instead of exposing whatever colour the
      transparent pixels happen to hold.
    - CMYK, YCbCr, palette, 1-bit: Pillow's conversions.
    """
    from PIL import Image

    target = "RGB" if channels == 3 else "L"
    if im.mode.startswith("I") or im.mode == "F":
        import numpy as np  # here, not above: most images never need it, and workers start faster

        a = np.nan_to_num(np.asarray(im).astype(np.float64))
        top = float(a.max()) if a.size else 0.0
        if im.mode == "F":
            a = a * 255.0 if top <= 1.0 else a
        elif im.mode.startswith("I;16") or 255 < top <= 65535:
            a = a / 257.0  # 16-bit: 65535 -> 255
        elif top > 65535:  # genuinely 32-bit data: use its full range
            a = a * (255.0 / top)
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return im if im.mode == target else im.convert(target)


_EXIF_ORIENTATION = 0x0112


def process_image(fp, cfg: PreprocessConfig) -> tuple[bytes, str]:
    """Decode, crop and resize one image to uint8 (size, size, channels) bytes.

    Returns the pixels and a note ("" or why the image was a special case).
    Raises on anything unreadable; the caller turns that into a skipped line.

    Speed: JPEGs are decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling,
    Pillow's `draft`) when the crop box still has at least `size` pixels per
    side after the reduction, so the Lanczos resize that follows still
    downsamples and quality does not suffer. For 178x218 CelebA at 64x64 the
    108-pixel box allows no reduction (54 < 64); at 32x32 it decodes at 1/2.
    """
    from PIL import Image, ImageOps

    with Image.open(fp) as im:
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1) if im.format in ("JPEG", "WEBP", "PNG") else 1
        w0, h0 = im.size
        turned = orientation in (5, 6, 7, 8)
        w, h = (h0, w0) if turned else (w0, h0)
        box, small = crop_box(w, h, cfg.crop, cfg.box_side)
        box_w, box_h = box[2] - box[0], box[3] - box[1]
        if im.format == "JPEG":
            scale = 1
            while scale < 8 and min(box_w, box_h) // (scale * 2) >= cfg.size:
                scale *= 2
            # draft() picks the largest reduction s with size // s >= the request.
            im.draft("RGB" if cfg.channels == 3 else "L", (max(1, w0 // scale), max(1, h0 // scale)))
        im.load()
        if orientation != 1:
            im = ImageOps.exif_transpose(im)
        im = _to_mode(im, cfg.channels)
        fx, fy = im.width / w, im.height / h  # draft scale (1.0 when not reduced)
        scaled = (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy)
        # resize(box=...) crops and resizes in one antialiased step, and takes
        # the fractional box a reduced-scale decode gives.
        out = im.resize((cfg.size, cfg.size), Image.Resampling.LANCZOS, box=scaled)
        notes = []
        if small:
            notes.append(f"{w}x{h} is smaller than the {cfg.box_side}x{cfg.box_side} crop; "
                         f"used its largest centred square")
        if min(box_w, box_h) < cfg.size:
            notes.append(f"upscaled from {box_w}x{box_h} to {cfg.size}x{cfg.size}")
        return out.tobytes(), "; ".join(notes)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def example_prefix(n: int) -> bytes:
    """The bytes of a serialised `tf.train.Example` that come before an n-byte "image".

    The record is Example{features: {"image": bytes_list[data]}}; every length
    in it depends only on n, so one prefix serves every image of a run and the
    workers build records without TensorFlow or protobuf (tests check the
    bytes equal `tf.train.Example(...).SerializeToString()`).
    """
    bytes_list = b"\x0a" + _varint(n)  # BytesList.value (field 1)
    feature = b"\x0a" + _varint(len(bytes_list) + n)  # Feature.bytes_list (1)
    value = feature + bytes_list
    entry_key = b"\x0a\x05image"  # map entry key (1)
    entry = entry_key + b"\x12" + _varint(len(value) + n)  # map entry value (2)
    entry_len = len(entry) + len(value) + n
    features = b"\x0a" + _varint(entry_len)  # Features.feature (1)
    return b"\x0a" + _varint(len(features) + entry_len) + features + entry + value  # Example.features (1)


def serialize_example(pixels: bytes) -> bytes:
    return example_prefix(len(pixels)) + pixels


_zip_cache: dict[str, object] = {}


def _open_item(kind: str, root: str, name: str):
    if kind == "dir":
        return os.path.join(root, name)
    import zipfile

    zf = _zip_cache.get(root)
    if zf is None:
        zf = _zip_cache[root] = zipfile.ZipFile(root)
    return io.BytesIO(zf.read(name))


def _is_empty(fp) -> bool:
    if isinstance(fp, io.BytesIO):
        return fp.getbuffer().nbytes == 0
    st = os.stat(fp)  # only a regular file's size means anything (not a pipe's or /proc's)
    return stat.S_ISREG(st.st_mode) and st.st_size == 0


def _worker_init() -> None:
    # Ctrl-C goes to the whole process group; the main process handles it and
    # stops the pool, so workers must not each print a KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _strict_bombs()


def _strict_bombs() -> None:
    from PIL import Image

    # Pillow warns above MAX_IMAGE_PIXELS (~89 Mpx) and only raises above
    # twice that; refuse both.
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def _reason(e: BaseException) -> str:
    from PIL import Image, UnidentifiedImageError

    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"decompression bomb refused: {e}"
    if isinstance(e, UnidentifiedImageError):
        return "not an image Pillow can read (corrupt, empty or another format)"
    if isinstance(e, OSError) and "truncated" in str(e):
        return f"truncated image: {e}"
    return f"{type(e).__name__}: {e}"


def process_chunk(job: tuple) -> list[tuple[int, bytes | None, str]]:
    """Worker entry: (kind, root, names, cfg) -> [(status, record, text)] in order.

    status 0: record is a serialised Example and text a note ("" if none);
    status 1: the file is skipped and text says why.
    """
    kind, root, names, cfg = job
    prefix = example_prefix(cfg.image_bytes)
    out = []
    for name in names:
        try:
            fp = _open_item(kind, root, name)
            if _is_empty(fp):
                out.append((1, None, "empty file (0 bytes)"))
                continue
            pixels, note = process_image(fp, cfg)
            out.append((0, prefix + pixels, note))
        except MemoryError:
            out.append((1, None, "out of memory while decoding"))
        except Exception as e:  # one bad file never aborts the run
            out.append((1, None, _reason(e)))
    return out


# ----------------------------------------------------------------------------
# Output directory: progress, shards, manifest


def _fingerprint(cfg: PreprocessConfig, source: Path, listing: Listing) -> str:
    """What makes two runs' outputs identical: pixel settings, source and file names."""
    h = hashlib.sha256()
    settings = dict(format=FORMAT, version=__version__, size=cfg.size, crop=cfg.crop, box=cfg.box_side,
                    channels=cfg.channels, split=cfg.split, limit=cfg.limit, source=str(source.resolve()))
    h.update(json.dumps(settings, sort_keys=True).encode())
    for name in listing.items:
        h.update(name.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


def _join(out: str, name: str) -> str:
    return f"{out.rstrip('/')}/{name}"


def _is_local(path: str) -> bool:
    return "://" not in path


def _write_text(path: str, text: str) -> None:
    """Atomic replace: temp + rename locally (fsutil); one object write on gs://."""
    if _is_local(path):
        from dcgan_cli.fsutil import write_text

        write_text(path, text)
        os.chmod(path, 0o666 & ~_umask())  # the temp file was private (0600); data is for sharing
    else:
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "w") as f:
            f.write(text)


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _read_json(path: str) -> dict | None:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _sha256(path: str) -> str:
    import tensorflow as tf

    h = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def _is_shard(name: str) -> bool:
    return name.startswith("shard-") and name.endswith(".tfrecord")


class _Lock:
    """An exclusive lock on a local output dir, so two runs never share one.

    flock on the directory itself: no lock file to leave behind, and the
    kernel drops it when the process dies, however it dies.
    """

    def __init__(self, out: str):
        self.fd = None
        try:
            import fcntl
        except ImportError:  # Windows: no flock; run one preprocess per output there
            return
        if _is_local(out):
            self.fd = os.open(out, os.O_RDONLY)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self.fd)
                raise DcganError(f"another `dcgan preprocess` is writing {out}; wait for it or stop it") from None

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _ShardWriter:
    """Appends serialised records to `shard-TAG-NNNNN.tfrecord` files of about `limit` bytes."""

    def __init__(self, out: str, tag: str, limit: int, first_index: int):
        self.out, self.tag, self.limit, self.index = out, tag, limit, first_index
        self.writer, self.count, self.bytes = None, 0, 0

    def name(self) -> str:
        return f"shard-{self.tag}-{self.index:05d}.tfrecord"

    def add(self, record: bytes) -> dict | None:
        """Write one record; returns the shard's entry when this record closed it."""
        import tensorflow as tf

        if self.writer is None:
            self.writer = tf.io.TFRecordWriter(_join(self.out, self.name()))
            self.count, self.bytes = 0, 0
        self.writer.write(record)
        self.count += 1
        self.bytes += len(record) + 16  # TFRecord framing: length, two CRCs
        return self.close() if self.bytes >= self.limit else None

    def close(self) -> dict | None:
        if self.writer is None:
            return None
        self.writer.close()
        self.writer = None
        path = _join(self.out, self.name())
        entry = {"file": self.name(), "count": self.count, "sha256": _sha256(path), "bytes": self.bytes}
        self.index += 1
        return entry

    def abandon(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _clean_stale(out: str, keep: set[str], also: tuple[str, ...] = ()) -> None:
    """Delete our own shard files not in `keep` (never anything else)."""
    import tensorflow as tf

    for name in tf.io.gfile.listdir(out):
        name = name.rstrip("/")
        if (_is_shard(name) and name not in keep) or name in also:
            tf.io.gfile.remove(_join(out, name))


def _check_out(out: str, cfg: PreprocessConfig, fingerprint: str) -> dict | None:
    """Decide what an existing output means; returns an up-to-date manifest to reuse."""
    import tensorflow as tf

    if not tf.io.gfile.exists(out):
        return None
    if not tf.io.gfile.isdir(out):
        raise DcganError(f"{out} is a file, not a directory; choose another --out")
    names = [n.rstrip("/") for n in tf.io.gfile.listdir(out)]
    manifest = _read_json(_join(out, MANIFEST)) if MANIFEST in names else None
    if manifest is not None and manifest.get("format") == FORMAT:
        intact = all(tf.io.gfile.exists(_join(out, s["file"])) for s in manifest.get("shards", []))
        if manifest.get("fingerprint") == fingerprint and not cfg.force:
            return manifest if intact else None  # shards lost: nothing left to protect, rebuild
        if cfg.force:
            return None
        raise DcganError(
            f"{out} already holds preprocessed data ({manifest.get('count')} images at {manifest.get('size')}x"
            f"{manifest.get('size')}, crop {manifest.get('crop')}, from {manifest.get('source')}) made with other "
            f"settings or files; pass --force to replace it (it stays in place until the new output is complete), "
            f"or choose another --out")
    ours = {PROGRESS, SKIPPED, SMALL}
    foreign = [n for n in names if n not in ours and not _is_shard(n) and not n.startswith(".")]
    if foreign:
        raise DcganError(f"{out} exists and holds other files ({', '.join(sorted(foreign)[:3])}"
                         f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new --out")
    return None


def _chunks(items: list[str], size: int, start: int) -> Iterator[tuple[int, list[str]]]:
    for i in range(start, len(items), size):
        yield i, items[i:i + size]


def _run_chunks(listing: Listing, cfg: PreprocessConfig, start: int, workers: int) -> Iterator[list]:
    """Processed chunks in file order; at most 2 * workers + 1 chunks in flight."""
    chunk = max(8, min(256, CHUNK_BYTES // cfg.image_bytes))
    jobs = ((listing.kind, listing.root, names, cfg) for _, names in _chunks(listing.items, chunk, start))
    if workers <= 1:
        with warnings.catch_warnings():
            _strict_bombs()
            for job in jobs:
                yield process_chunk(job)
        return
    import multiprocessing as mp
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: the main process has TensorFlow loaded (threads), which
    # a fork would copy in an undefined state.
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init)
    pending = deque()
    try:
        for job in jobs:
            pending.append(pool.submit(process_chunk, job))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BrokenProcessPool:
        _stop(pool)
        raise DcganError("a decoding process died (out of memory, or a crash in an image decoder); "
                         "re-run the same command to resume, with fewer --workers if memory is short") from None
    except BaseException:  # Ctrl-C, or an error while writing: do not wait for the workers
        _stop(pool)
        raise
    pool.shutdown(wait=True)


def _stop(pool) -> None:
    """End the workers now: one may be stuck on a file that never finishes reading."""
    if hasattr(pool, "terminate_workers"):  # Python 3.14+
        pool.terminate_workers()
        return
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        p.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def preprocess(cfg: PreprocessConfig, progress: Callable[[int, int], None] | None = None,
               log: Callable[[str], None] | None = None) -> dict:
    """Run `cfg`; returns the manifest (plus "up_to_date": True when nothing needed doing).

    `progress(done, total)` is called after each chunk; `log(line)` gets
    what the user should know (resuming, discarding an old partial run).
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    source = Path(cfg.source)
    if not source.exists():
        raise DcganError(f"{source} does not exist; pass a folder of images, a .zip of images or a data set name")
    listing = list_images(source)
    found = len(listing.items)
    if not listing.items:
        raise DcganError(f"no images ({', '.join(e[1:] for e in IMAGE_EXTS)}) in {source}: found "
                         f"{describe_other(listing.other)}; point SOURCE at the folder that holds the images")
    split_note = ""
    if cfg.split == "train":
        train, where = train_split(listing)
        listing.items = [n for n in listing.items if n.rsplit("/", 1)[-1] in train]
        split_note = f" (train split from {where})"
        if not listing.items:
            raise DcganError(f"none of the {found} images in {source} is in the train split of {where}; "
                             f"is it the partition file of these images? Use --split all to take every image")
    if cfg.limit:
        listing.items = listing.items[:cfg.limit]

    import tensorflow as tf

    out = str(cfg.out)
    fingerprint = _fingerprint(cfg, source, listing)
    current = _check_out(out, cfg, fingerprint)
    if current is not None:
        return {**current, "up_to_date": True}
    try:
        tf.io.gfile.makedirs(out)
    except (OSError, tf.errors.OpError) as e:
        raise DcganError(f"cannot create {out} ({getattr(e, 'message', e)}); choose a writable --out") from None
    lock = _Lock(out)
    writer = None
    try:
        state = _resume_or_start(out, fingerprint, log)
        old = _read_json(_join(out, MANIFEST)) or {}  # a previous complete output stays valid till the end
        _clean_stale(out, {s["file"] for s in state["shards"] + old.get("shards", [])})  # half-written shards
        _write_text(_join(out, PROGRESS), json.dumps(state))

        # -- decode and write ------------------------------------------------
        total, done = len(listing.items), state["next"]
        workers = min(cfg.workers or default_workers(), max(1, math.ceil((total - done) / 64)))
        writer = _ShardWriter(out, state["tag"], int(cfg.shard_mb * (1 << 20)), len(state["shards"]))
        index = done
        # closing(): if writing fails, the workers stop now, not when the generator is collected
        with contextlib.closing(_run_chunks(listing, cfg, done, workers)) as chunks:
            for results in chunks:
                for status, record, text in results:
                    name = listing.items[index]
                    index += 1
                    if status:
                        state["skipped"].append(f"{name}\t{text}")
                        continue
                    if text:
                        state["small"].append(f"{name}\t{text}")
                    closed = writer.add(record)
                    if closed:
                        closed.update(end=index, skipped=len(state["skipped"]), small=len(state["small"]))
                        state["shards"].append(closed)
                        state["next"] = index
                        _write_text(_join(out, PROGRESS), json.dumps(state))
                if progress:
                    progress(index, total)
        closed = writer.close()
        if closed:
            closed.update(end=index, skipped=len(state["skipped"]), small=len(state["small"]))
            state["shards"].append(closed)

        count = sum(s["count"] for s in state["shards"])
        if count == 0:
            _clean_stale(out, {s["file"] for s in old.get("shards", [])}, also=(PROGRESS,))
            reasons = Counter(line.split("\t", 1)[1] for line in state["skipped"])
            summary = "; ".join(f"{n}x {r}" for r, n in reasons.most_common(3))
            raise DcganError(f"none of the {total} image files in {source} could be used ({summary}); "
                             f"check that the folder holds real images")

        # -- commit: reports, then the manifest, then clean up -------------
        _write_text(_join(out, SKIPPED), "".join(line + "\n" for line in state["skipped"]))
        _write_text(_join(out, SMALL), "".join(line + "\n" for line in state["small"]))
        manifest = {
            "format": FORMAT, "count": count, "size": cfg.size, "channels": cfg.channels,
            "crop": cfg.crop, "crop_size": cfg.box_side, "split": cfg.split, "limit": cfg.limit,
            "source": str(source.resolve()), "source_images": total, "skipped": len(state["skipped"]),
            "small": len(state["small"]), "tool_version": __version__, "fingerprint": fingerprint,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "shards": [{k: s[k] for k in ("file", "count", "sha256", "bytes")} for s in state["shards"]],
        }
        _write_text(_join(out, MANIFEST), json.dumps(manifest, indent=2) + "\n")  # the commit point
        _clean_stale(out, {s["file"] for s in manifest["shards"]}, also=(PROGRESS,))
        if split_note:
            log(f"Used {total} of {found} images{split_note}")
        return manifest
    except (OSError, tf.errors.OpError) as e:  # disk full, permissions, a bucket gone: the user can fix these
        raise DcganError(f"writing {out} failed ({getattr(e, 'message', None) or e}); fix that (space, "
                         f"permissions) and run the same command again to resume") from None
    finally:
        if writer is not None:
            writer.abandon()
        lock.release()


def _resume_or_start(out: str, fingerprint: str, log: Callable[[str], None]) -> dict:
    """The progress of an interrupted run with the same fingerprint, or a fresh one.

    Shards are resumed up to the first one that is missing or has the wrong
    size; everything after it (and the skip/small lines it did not reach) is redone.
    """
    state = _read_json(_join(out, PROGRESS))
    if state and state.get("fingerprint") == fingerprint:
        state["shards"] = _valid_prefix(out, state["shards"])
        last = state["shards"][-1] if state["shards"] else {"end": 0, "skipped": 0, "small": 0}
        state.update(next=last["end"], skipped=state["skipped"][:last["skipped"]], small=state["small"][:last["small"]])
        if state["shards"]:
            log(f"Resuming: {sum(s['count'] for s in state['shards'])} images already in "
                f"{len(state['shards'])} shards of an interrupted run in {out}")
        return state
    if state:
        log(f"Discarding an unfinished run in {out} that used other settings or files")
    return {"fingerprint": fingerprint, "tag": secrets.token_hex(3), "shards": [], "next": 0, "skipped": [],
            "small": []}


def _valid_prefix(out: str, shards: list[dict]) -> list[dict]:
    """The recorded shards that are still on disk with their recorded size."""
    import tensorflow as tf

    good = []
    for s in shards:
        path = _join(out, s["file"])
        if not tf.io.gfile.exists(path) or tf.io.gfile.stat(path).length != s["bytes"]:
            break
        good.append(s)
    return good
