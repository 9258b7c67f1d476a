"""Faces in whole photos: found, aligned as the run's data was, and put back (anonymize, restore).

    found = find_faces(paths, min_face)       every face of every photo (MTCNN, as `--crop face`)
    face = aligned(photo, f, recipe)           the face at the run's size, its matrix, and its box there
    out = paste_back(pixels, new, face)        the new crop mapped back through the inverse alignment

The run's framing (CelebA's 108-pixel box) ends below the mouth: MTCNN's box
reaches past it by about a sixth of its height (the chin), where the generator
draws nothing. `paste_back(..., fill=True)` (anonymize) fills that part of the
box smoothly from the drawn face above it and the photo around the box (a
membrane, Laplace's equation), so that no pixel of the box keeps the original
face; without it (restore) that part keeps its pixels.

`paste_back` touches only the detector's box: each photo pixel inside it is
sampled (bilinear) from the new crop at the place the alignment sends it, and
mixed with the photo's own pixel by a weight that rises from 0 at the box's
edge to 1 a few pixels inside (the feather), and falls to 0 again at the
crop's edge (where nothing was drawn: `box_share_drawn` says how much was).
Every pixel outside the box keeps its bytes. A grey run's face goes into a colour photo as a change of
luminance: each pixel moves by (new grey - old grey) on all three channels, so
the photo keeps its colours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dcgan_cli.errors import DcganError

FEATHER = 0.06  # the feather's width, as a share of the box's shorter side (at least 1 px)
LUMA = np.array([0.299, 0.587, 0.114])


@dataclass
class AlignedFace:
    """One detected face at the run's size.

    Attributes:
        photo: the photo's index. box, confidence: the detector's, in photo pixels.
        matrix: 2x3, photo -> crop coordinates (pixel centres at .5).
        crop: uint8 (S, S, C), aligned as the run's data was.
        hole: bool (S, S), the crop's pixels whose centres fall inside the detector box.
        valid: bool (S, S), the crop's pixels that come from inside the photo.
    """

    photo: int
    box: tuple[float, float, float, float]
    confidence: float
    matrix: np.ndarray
    crop: np.ndarray
    hole: np.ndarray
    valid: np.ndarray

    def report(self) -> dict:
        return {"box": [round(v, 2) for v in self.box], "confidence": round(self.confidence, 4),
                "box_share_drawn": round(self.covered(), 4)}

    def covered(self) -> float:
        """The share of the box inside the aligned crop (the rest, past the run's framing, is kept)."""
        bx, by, bw, bh = self.box
        xs, ys = np.meshgrid(bx + (np.arange(16) + 0.5) * bw / 16, by + (np.arange(16) + 0.5) * bh / 16)
        m, s = self.matrix, self.crop.shape[0]
        u = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
        v = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
        return float(np.mean((u >= 0) & (u <= s) & (v >= 0) & (v <= s)))


def load_photos(paths: list[Path]) -> list:
    """Upright RGB PIL images; a file that is not an image is refused by name."""
    from dcgan_cli.data.preprocess import faces

    out = []
    for p in paths:
        if not Path(p).is_file():
            raise DcganError(f"no image at {p}; name photo files")
        try:
            out.append(faces.load_photo(str(p)))
        except Exception as e:  # Pillow raises several types for unreadable files
            raise DcganError(f"cannot read {p} as an image ({type(e).__name__}); name an image file") from None
    return out


def find_faces(photos: list, min_face: int) -> list[list]:
    """Every face of each photo of at least `min_face` px (the detector of `--crop face`), left to right."""
    from dcgan_cli.data.preprocess import faces

    if not faces.available():
        raise DcganError(faces.MISSING.replace("--crop face", "finding faces in photos"))
    return faces.detect(photos, min_face)


def _crop_to_photo(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]


def aligned(photo, index: int, face, recipe) -> AlignedFace:
    """`face` of the PIL `photo` aligned like the run's data (`recipe`: repair.CropRecipe with crop face)."""
    from dcgan_cli.data.preprocess import faces

    size, channels = recipe.size, recipe.channels
    image = faces.align(photo, face.landmarks, size, recipe.box_side)
    if channels == 1:
        image = image.convert("L")
    m, _ = faces.alignment(face.landmarks, size, recipe.box_side)
    inv = _crop_to_photo(m)
    c = np.arange(size) + 0.5
    u, v = np.meshgrid(c, c)
    x = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]
    y = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
    bx, by, bw, bh = face.box
    hole = (x >= bx) & (x <= bx + bw) & (y >= by) & (y <= by + bh)
    valid = (x >= 0) & (y >= 0) & (x <= photo.width) & (y <= photo.height)
    crop = np.asarray(image, np.uint8).reshape(size, size, channels)
    return AlignedFace(index, tuple(float(b) for b in face.box), float(face.confidence), m, crop, hole & valid, valid)


def _bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """img (S, S, C) float sampled at continuous (u, v) (pixel centres at .5), edges clamped: (..., C)."""
    s = img.shape[0]
    u, v = np.clip(u - 0.5, 0, s - 1), np.clip(v - 0.5, 0, s - 1)
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    u1, v1 = np.minimum(u0 + 1, s - 1), np.minimum(v0 + 1, s - 1)
    fu, fv = (u - u0)[..., None], (v - v0)[..., None]
    top = img[v0, u0] * (1 - fu) + img[v0, u1] * fu
    bottom = img[v1, u0] * (1 - fu) + img[v1, u1] * fu
    return top * (1 - fv) + bottom * fv


def paste_back(pixels: np.ndarray, new: np.ndarray, face: AlignedFace, fill: bool = False,
               feather: float = FEATHER) -> np.ndarray:
    """uint8 RGB (H, W, 3) photo with the box of `face` replaced by the uint8 crop `new`, feathered inward
    over `feather` of the box's shorter side.

    fill: the part of the box past the crop's edge (where nothing was drawn) is filled smoothly from
    the drawn face and the photo around the box (a membrane: Laplace's equation), not kept."""
    h, w = pixels.shape[:2]
    bx, by, bw, bh = face.box
    x0, y0 = max(0, int(np.floor(bx))), max(0, int(np.floor(by)))
    x1, y1 = min(w, int(np.ceil(bx + bw))), min(h, int(np.ceil(by + bh)))
    if x1 <= x0 or y1 <= y0:
        return pixels
    xs, ys = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
    m = face.matrix
    u = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    v = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    sampled = _bilinear(new.astype(np.float64), u, v)
    inside = np.minimum.reduce([xs - bx, bx + bw - xs, ys - by, by + bh - ys])  # distance to the box's edge
    s = new.shape[0]
    in_crop = np.minimum.reduce([u, s - u, v, s - v])  # crop pixels to the crop's edge: past it, nothing was drawn
    feather = np.clip(inside / max(1.0, feather * min(bw, bh)), 0.0, 1.0)[..., None]
    drawn = np.clip(in_crop / max(1.0, FEATHER * s), 0.0, 1.0)[..., None]
    old = pixels[y0:y1, x0:x1].astype(np.float64)
    if sampled.shape[-1] == 1:  # a grey face: move the luminance only
        sampled = old + (sampled - (old @ LUMA)[..., None])
    alpha = feather * drawn
    undrawn = (drawn[..., 0] < 1) & (inside > 0)
    if fill and undrawn.any():  # the membrane's edge: the drawn face inside the box, the photo outside it
        sampled = _membrane(pixels, np.where(feather > 0, old + drawn * (sampled - old), old), undrawn, x0, y0)
        alpha = feather
    mixed = np.clip(np.rint(old + alpha * (sampled - old)), 0, 255).astype(np.uint8)
    out = pixels.copy()
    region = out[y0:y1, x0:x1]
    region[:] = np.where(alpha > 0, mixed, region)
    return out


def _membrane(pixels: np.ndarray, inner: np.ndarray, hole: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """`inner` (the box's window of the photo, float) with its `hole` pixels solved from Laplace's equation,
    the pixels around the hole (the drawn face, the photo one pixel past the box) held."""
    from dcgan_cli.generate.repair import poisson_blend

    h, w = pixels.shape[:2]
    y1, x1 = y0 + inner.shape[0], x0 + inner.shape[1]
    wy0, wx0, wy1, wx1 = max(0, y0 - 1), max(0, x0 - 1), min(h, y1 + 1), min(w, x1 + 1)
    window = pixels[wy0:wy1, wx0:wx1].astype(np.float64)
    inner_at = (slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0))
    window[inner_at] = inner
    holes = np.zeros(window.shape[:2], bool)
    holes[inner_at] = hole
    return poisson_blend(np.zeros_like(window)[None], window[None], holes[None])[0][inner_at]
