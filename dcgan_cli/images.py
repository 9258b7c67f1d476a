"""Pixels <-> files: [-1, 1] floats to uint8, grids, atomic image writes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import atomic_path

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def to_uint8(images) -> np.ndarray:
    """(N, H, W, C) floats in [-1, 1] -> uint8, rounded, clipped."""
    x = np.asarray(images, dtype=np.float32)
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid_shape(n: int, nrow: int | None = None) -> tuple[int, int]:
    """(rows, cols) of a near-square grid for n images, or with `nrow` per row."""
    if n < 1:
        raise DcganError("a grid needs at least one image")
    cols = nrow or math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def make_grid(images: np.ndarray, nrow: int | None = None, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """uint8 (N, H, W, C) -> one uint8 (rows*(H+pad)+pad, cols*(W+pad)+pad, C) image."""
    n, h, w, c = images.shape
    rows, cols = grid_shape(n, nrow)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), pad_value, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y:y + h, x:x + w] = images[i]
    return grid


def check_image_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in IMAGE_FORMATS:
        raise DcganError(f"cannot write {path.name}: use one of {', '.join(IMAGE_FORMATS)} as the extension")
    return path


def save_image(path: str | Path, pixels: np.ndarray) -> Path:
    """Write a uint8 (H, W, C) array atomically; the format follows the extension."""
    from PIL import Image

    path = check_image_path(path)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    try:
        with atomic_path(path) as tmp:
            Image.fromarray(pixels).save(tmp, format=IMAGE_FORMATS[path.suffix.lower()])
    except PermissionError:
        raise DcganError(f"cannot write {path}: permission denied; choose a writable location") from None
    except OSError as e:
        raise DcganError(f"cannot write {path}: {e.strerror or e}; choose a writable location") from None
    return path
