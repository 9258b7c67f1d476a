"""One image -> pixels, in the worker processes: crop box, mode conversion, resize, records.

Nothing here imports TensorFlow: workers start fast and build records with
`shards.example_prefix`. faces.py (`--crop face`) reads the same files the same
way: `open_item` opens one, `to_mode` converts it, `skip_reason` says why it is left out.
"""

from __future__ import annotations

import io
import os
import signal
import stat
import warnings
from enum import Enum

from dcgan_cli.data.shards import example_prefix

CELEBA_CROP = 108
# Each crop and what it does; CROPS, the Crop choices and --crop's help all come from here.
CROP_HELP = {
    "celeba": f"the DCGAN {CELEBA_CROP}x{CELEBA_CROP} face box",
    "center": "the largest centred square",
    "none": "the whole image (aspect not kept)",
    "face": "every face found, aligned like CelebA, then the celeba box (needs the faces extra)",
}
CROPS = tuple(CROP_HELP)
Crop = Enum("Crop", [(c.upper(), c) for c in CROPS], type=str)


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


def to_mode(im, channels: int):
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


def process_image(fp, cfg) -> tuple[bytes, str]:
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
        im = to_mode(im, cfg.channels)
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


def open_oriented(fp):
    """The whole image, decoded and turned upright by its EXIF orientation (any mode)."""
    from PIL import Image, ImageOps

    with Image.open(fp) as im:
        im.load()
        return ImageOps.exif_transpose(im)


_zip_cache: dict[str, object] = {}
# A zip member is read into memory to be decoded; a larger one is skipped with
# a reason (a picture this large is rare; unpacked into a folder it is decoded
# from disk, never held whole). Its header's size is checked first, and the
# reading stops at the limit too, so a header that lies cannot get past it.
MAX_ZIP_MEMBER_BYTES = 64 << 20


class Skip(Exception):
    """This file is left out without being decoded; the message is its line in skipped.txt."""


_FILE_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"))


def open_item(kind: str, root: str, name: str):
    """A path (dir) or the member's bytes (zip), ready for Pillow; raises Skip for what must not be read."""
    if kind == "dir":
        path = os.path.join(root, name)
        st = os.stat(path)  # follows links (a link to a pipe is a pipe), and never blocks on a pipe
        if not stat.S_ISREG(st.st_mode):  # a pipe would hang the run, a device never end: never open them
            what = next((say for test, say in _FILE_KINDS if test(st.st_mode)), "a special file")
            raise Skip(f"{what}, not a regular file (not opened)")
        if st.st_size == 0:
            raise Skip("empty file (0 bytes)")
        return path
    import zipfile

    zf = _zip_cache.get(root)
    if zf is None:
        zf = _zip_cache[root] = zipfile.ZipFile(root)
    data = read_zip_member(zf, name, MAX_ZIP_MEMBER_BYTES)
    if not data:
        raise Skip("empty file (0 bytes)")
    return io.BytesIO(data)


def read_zip_member(zf, name: str, limit: int) -> bytes:
    """A zip member's bytes; Skip when it is over `limit` bytes, by its header or while reading."""
    info = zf.getinfo(name)
    fix = "too large to read from a zip; unpack the zip and pass the folder"
    if info.file_size > limit:
        raise Skip(f"{info.file_size / (1 << 20):.1f} MB unpacked, over the {limit / (1 << 20):g} MB limit: {fix}")
    parts, size = [], 0
    with zf.open(info) as f:  # zipfile checks the CRC at the end
        while chunk := f.read(min(1 << 20, limit + 1 - size)):
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                raise Skip(f"unpacks to more than its header says, over the {limit / (1 << 20):g} MB limit: {fix}")
    return b"".join(parts)


def worker_init() -> None:
    # Ctrl-C goes to the whole process group; the main process handles it and
    # stops the pool, so workers must not each print a KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    strict_bombs()


def strict_bombs() -> None:
    from PIL import Image

    # Pillow warns above MAX_IMAGE_PIXELS (~89 Mpx) and only raises above
    # twice that; refuse both.
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def skip_reason(e: BaseException) -> str:
    """Why a file whose decoding raised `e` is skipped, in a few words: its line in skipped.txt."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"decompression bomb refused: {e}"
    if isinstance(e, UnidentifiedImageError):
        return "not an image Pillow can read (corrupt, empty or another format)"
    if isinstance(e, OSError) and "truncated" in str(e):
        return f"truncated image: {e}"
    return f"{type(e).__name__}: {e}"


def process_chunk(job: tuple) -> list[tuple[int, list[bytes], str]]:
    """Worker entry: (kind, root, names, cfg) -> [(status, records, text)] in order, one per file.

    status 0: records holds the file's serialised Examples (one here; `--crop face`
    gives one per face, faces.process_chunk) and text a note ("" if none);
    status 1: the file is skipped (records is empty) and text says why.
    """
    kind, root, names, cfg = job
    prefix = example_prefix(cfg.image_bytes)
    out = []
    for name in names:
        try:
            fp = open_item(kind, root, name)
            pixels, note = process_image(fp, cfg)
            out.append((0, [prefix + pixels], note))
        except Skip as e:
            out.append((1, [], str(e)))
        except MemoryError:
            out.append((1, [], "out of memory while decoding"))
        except Exception as e:  # one bad file never aborts the run
            out.append((1, [], skip_reason(e)))
    return out

