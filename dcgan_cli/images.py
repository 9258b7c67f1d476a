"""Pixels <-> files: [-1, 1] floats to uint8, grids, atomic image and GIF writes."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import atomic_path
from dcgan_cli.pixels import to_uint8

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
# Pillow's defaults (JPEG 75, WebP 80) smear small faces visibly; these keep them sharp. PNG level 3
# encodes a 3,000-face grid 3x faster than the default 6, at the same size on real faces (measured).
SAVE_OPTIONS = {"PNG": {"compress_level": 3}, "JPEG": {"quality": 95}, "WEBP": {"quality": 90}}
# Hard limits of the encoders: a larger image fails inside Pillow, after all the work.
MAX_SIDE = {"WEBP": 16383, "JPEG": 65500}
# A grid is held in memory whole; past this, one file per image (--individual) is the way.
MAX_GRID_BYTES = 4 << 30
GRID_PAD = 2


def grid_shape(n: int, nrow: int | None = None) -> tuple[int, int]:
    """(rows, cols) of a near-square grid for n images, or with `nrow` images per row."""
    if n < 1:
        raise DcganError("a grid needs at least one image")
    cols = min(nrow, n) if nrow else math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


class Grid:
    """A grid image filled a batch at a time: only the uint8 grid itself is held in memory.

    Layout: `pad` pixels of `pad_value` around and between the cells, row-major,
    empty cells of the last row left as padding.
    """

    def __init__(self, n: int, h: int, w: int, c: int, nrow: int | None = None, pad: int = GRID_PAD,
                 pad_value: int = 255):
        self.n, self.h, self.w, self.pad = n, h, w, pad
        self.rows, self.cols = grid_shape(n, nrow)
        self.pixels = np.full(grid_size(n, h, w, nrow, pad) + (c,), pad_value, dtype=np.uint8)

    def paste(self, start: int, images: np.ndarray) -> None:
        """Put uint8 (B, H, W, C) images into cells start .. start+B-1."""
        h, w, pad = self.h, self.w, self.pad
        for i, img in enumerate(images, start):
            r, col = divmod(i, self.cols)
            y, x = pad + r * (h + pad), pad + col * (w + pad)
            self.pixels[y:y + h, x:x + w] = img


def grid_size(n: int, h: int, w: int, nrow: int | None = None, pad: int = GRID_PAD) -> tuple[int, int]:
    """(height, width) in pixels of the grid of n images of h x w."""
    rows, cols = grid_shape(n, nrow)
    return rows * (h + pad) + pad, cols * (w + pad) + pad


def make_grid(images: np.ndarray, nrow: int | None = None, pad: int = GRID_PAD, pad_value: int = 255) -> np.ndarray:
    """uint8 (N, H, W, C) -> one uint8 (rows*(H+pad)+pad, cols*(W+pad)+pad, C) image."""
    n, h, w, c = images.shape
    grid = Grid(n, h, w, c, nrow, pad, pad_value)
    grid.paste(0, images)
    return grid.pixels


def check_image_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in IMAGE_FORMATS:
        raise DcganError(f"cannot write {path.name}: use one of {', '.join(IMAGE_FORMATS)} as the extension")
    return path


def unreadable(path: str | Path, e: BaseException, fix: str = "name an image file") -> str:
    """The message for an image Pillow would not open: an image over its pixel limit is said to be one."""
    from PIL import Image

    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        limit, size = Image.MAX_IMAGE_PIXELS, None
        try:
            Image.MAX_IMAGE_PIXELS = None  # read the header only, to say how large it is
            with Image.open(path) as im:
                size = im.size
        except Exception:  # noqa: BLE001 - the size is a courtesy
            pass
        finally:
            Image.MAX_IMAGE_PIXELS = limit
        what = f"{size[0]}x{size[1]} ({size[0] * size[1]:,} pixels)" if size else "larger than Pillow opens"
        return (f"{path} is an image of {what}, over Pillow's limit of {limit:,} pixels (a guard against "
                f"decompression bombs); shrink it first")
    return f"cannot read {path} as an image ({type(e).__name__}); {fix}"


def check_grid_fits(path: str | Path, n: int, h: int, w: int, c: int, nrow: int | None = None) -> None:
    """Refuse, before any image is generated, a grid its format or memory cannot hold."""
    path = check_image_path(path)
    height, width = grid_size(n, h, w, nrow)
    fmt = IMAGE_FORMATS[path.suffix.lower()]
    limit = MAX_SIDE.get(fmt)
    if limit and max(height, width) > limit:
        raise DcganError(f"a grid of {n} images is {width}x{height} pixels but {fmt} allows at most {limit} a side; "
                         f"write .png, fewer images, or one file per image with --individual DIR")
    if height * width * c > MAX_GRID_BYTES:
        raise DcganError(f"a grid of {n} images would take {height * width * c / 2**30:.1f} GiB of memory; "
                         f"write one file per image with --individual DIR instead")


@contextmanager
def _writing(path: Path) -> Iterator[Path]:
    """An atomic temp path for `path`; OS errors become one-line DcganErrors."""
    try:
        with atomic_path(path) as tmp:
            yield tmp
    except PermissionError:
        raise DcganError(f"cannot write {path}: permission denied; choose a writable location") from None
    except OSError as e:
        raise DcganError(f"cannot write {path}: {e.strerror or e}; choose a writable location") from None


def _pil(pixels: np.ndarray):
    from PIL import Image

    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    return Image.fromarray(pixels)


def save_image(path: str | Path, pixels: np.ndarray) -> Path:
    """Write a uint8 (H, W, C) array atomically; the format follows the extension."""
    path = check_image_path(path)
    with _writing(path) as tmp:
        fmt = IMAGE_FORMATS[path.suffix.lower()]
        _pil(pixels).save(tmp, format=fmt, **SAVE_OPTIONS.get(fmt, {}))
    return path


def save_gif(path: str | Path, frames: Iterable[np.ndarray], fps: float = 25.0) -> Path:
    """Write uint8 (H, W, C) frames as an animated GIF that loops forever, atomically.

    `frames` may be a lazy iterator: Pillow pulls from it while encoding. Pillow
    merges a frame identical to the one before into it (adding its duration).
    """
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise DcganError(f"cannot write {path.name}: an animation must end in .gif")
    frames = iter(frames)
    first = next(frames)
    with _writing(path) as tmp:
        # GIF delays count in 1/100 s, so fps is rounded to the nearest 10 ms delay.
        _pil(first).save(tmp, format="GIF", save_all=True, append_images=(_pil(f) for f in frames),
                         duration=max(10, round(100 / fps) * 10), loop=0)
    return path
