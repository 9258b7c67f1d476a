"""Images -> training-ready shards, once (see pipeline.py for the format).

Decoding, cropping and resizing happen here and never again during training.
The output is built in a temporary folder beside the target and renamed into
place with `manifest.json` written last, so a half-written output is never
taken for a finished one.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dcgan_cli import __version__
from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import write_json
from dcgan_cli.pipeline import FORMAT, MANIFEST

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
SIZES = (28, 16, 32, 64, 128, 256)
CROPS = ("celeba", "center", "none")
SHARD_BYTES = 128 << 20


@dataclass(frozen=True)
class PreprocessConfig:
    source: str
    out: str
    size: int = 64
    crop: str = "center"
    crop_size: int = 0  # 0: 108 for celeba, the largest square for center
    channels: int = 3
    limit: int = 0
    force: bool = False

    def __post_init__(self):
        if self.size not in SIZES:
            raise DcganError(f"--size {self.size} is not supported; use 28 or a power of two from 16 to 256")
        if self.crop not in CROPS:
            raise DcganError(f"--crop must be one of {', '.join(CROPS)}")
        if self.channels not in (1, 3):
            raise DcganError("--channels must be 3 (RGB) or 1 (grayscale)")


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def crop_box(w: int, h: int, crop: str, crop_size: int) -> tuple[int, int, int, int] | None:
    if crop == "none":
        return None
    side = crop_size or (108 if crop == "celeba" else min(w, h))
    side = min(side, w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return left, top, left + side, top + side


def load_image(path: Path, cfg: PreprocessConfig):
    """Decode, convert, crop and resize one image to uint8 (size, size, channels)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB" if cfg.channels == 3 else "L")
        box = crop_box(im.width, im.height, cfg.crop, cfg.crop_size)
        if box:
            im = im.crop(box)
        im = im.resize((cfg.size, cfg.size), Image.Resampling.LANCZOS)
        a = np.asarray(im, dtype=np.uint8)
    return a.reshape(cfg.size, cfg.size, cfg.channels)


def preprocess(cfg: PreprocessConfig, progress=None) -> dict:
    import tensorflow as tf

    src, out = Path(cfg.source), Path(cfg.out)
    if not src.is_dir():
        raise DcganError(f"{src} is not a folder of images")
    if (out / MANIFEST).exists() and not cfg.force:
        raise DcganError(f"{out} already holds preprocessed data; pass --force to redo it")
    files = list_images(src)
    if cfg.limit:
        files = files[: cfg.limit]
    if not files:
        raise DcganError(f"no images (jpg, jpeg, png, bmp, webp) found in {src}")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial.", dir=out.parent))
    shards, skipped = [], []
    writer, shard_count, shard_bytes = None, 0, 0

    def close_shard():
        nonlocal writer
        if writer is not None:
            writer.close()
            path = tmp / f"shard-{len(shards):05d}.tfrecord"
            shards.append({"file": path.name, "count": shard_count, "sha256": _sha256(path)})
            writer = None

    try:
        for path in files:
            try:
                pixels = load_image(path, cfg)
            except Exception as e:  # one bad file never aborts the run
                skipped.append(f"{path}\t{type(e).__name__}: {e}")
                continue
            if writer is None:
                writer = tf.io.TFRecordWriter(str(tmp / f"shard-{len(shards):05d}.tfrecord"))
                shard_count, shard_bytes = 0, 0
            data = pixels.tobytes()
            ex = tf.train.Example(features=tf.train.Features(feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))}))
            writer.write(ex.SerializeToString())
            shard_count += 1
            shard_bytes += len(data)
            if progress:
                progress(1)
            if shard_bytes >= SHARD_BYTES:
                close_shard()
        close_shard()
        count = sum(s["count"] for s in shards)
        if count == 0:
            raise DcganError(f"none of the {len(files)} files in {src} could be read as an image")
        (tmp / "skipped.txt").write_text("".join(s + "\n" for s in skipped))
        manifest = {
            "format": FORMAT, "count": count, "size": cfg.size, "channels": cfg.channels,
            "crop": cfg.crop, "crop_size": cfg.crop_size, "source": str(src), "skipped": len(skipped),
            "tool_version": __version__, "shards": shards,
        }
        write_json(tmp / MANIFEST, manifest)  # last: its presence means complete
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        return manifest
    finally:
        if writer is not None:
            writer.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
