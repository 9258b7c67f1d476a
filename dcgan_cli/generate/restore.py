"""`dcgan restore`: a small, blurred or noisy face searched for in the generator's latent space (PULSE).

    dcgan restore tiny.png --run RUN -o OUT --degradation downsample
    dcgan restore old.jpg --run RUN -o OUT --degradation downsample:4+blur:1 --crop face

The degradation the input went through is named (`--degradation`, parts joined
by +): `downsample[:F]` (box-averaged F times; F from the input's size when not
given), `blur:SIGMA` (Gaussian, SIGMA in the input's pixels), `noise:SIGMA`
(additive, SIGMA in pixel levels 0-255). The search (generate/search.py, z on
the latent sphere, several starts) minimises MSE(degrade(G(z)), input) plus
lambda log(1 - D(G(z))), so the result is a sharp face that, degraded again,
is the input (Menon et al., "PULSE", CVPR 2020), not a blurred average of the
faces that would fit. Each result's consistency is reported: the RMS pixel
difference (0-255) between the input and the result degraded again; noise is
left out of that degradation, so about SIGMA is as close as it can get.

Inputs are crops in the run's framing (square, the run's size divided by the
downsampling factor), or with `--crop face` whole photos: each face found is
aligned at its own resolution (one search per resolution), restored at the run's, and pasted back as
`anonymize` pastes (photo_faces.paste_back).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.errors import DcganError, UsageError
from dcgan_cli.generate.anonymize import check_photos_and_out
from dcgan_cli.generate.search import RESTORE_PRIOR_WEIGHT, Search

DEGRADATION_HELP = "downsample[:F], blur:SIGMA, noise:SIGMA, joined by + (e.g. downsample:4+blur:1)"


@dataclass(frozen=True)
class Degradation:
    """factor: None (not downsampled), 0 (from the input's size) or F; blur, noise: sigmas (0: none)."""

    factor: float | None = None
    blur: float = 0.0
    noise: float = 0.0

    def side(self, size: int, given: int | None = None) -> int:
        """The degraded side for a run of `size`: the input's own (`given`) when the factor is left open."""
        if self.factor is None:
            return size
        if self.factor == 0:
            return int(given)
        return max(1, int(round(size / self.factor)))

    def __str__(self) -> str:
        parts = ([] if self.factor is None else [f"downsample:{self.factor:g}" if self.factor else "downsample"])
        return "+".join(parts + [f"{k}:{v:g}" for k, v in (("blur", self.blur), ("noise", self.noise)) if v]) or "none"


def parse_degradation(text: str) -> Degradation:
    parts: dict = {}
    for part in (text or "").split("+"):
        m = re.fullmatch(r"\s*(downsample|blur|noise)(?::\s*([0-9.]+))?\s*", part)
        if not m or m.group(1) in parts or (m.group(1) != "downsample" and m.group(2) is None):
            raise UsageError(f"{part!r} is not a degradation: use {DEGRADATION_HELP}", "--degradation")
        try:
            value = float(m.group(2)) if m.group(2) is not None else 0.0
        except ValueError:
            raise UsageError(f"{part!r} is not a degradation: use {DEGRADATION_HELP}", "--degradation") from None
        if not np.isfinite(value) or value < 0 or (m.group(1) == "downsample" and m.group(2) and value < 1):
            raise UsageError(f"{part!r}: the amount must be a finite number (a factor >= 1)", "--degradation")
        parts[m.group(1)] = value
    return Degradation(parts.get("downsample"), parts.get("blur", 0.0), parts.get("noise", 0.0))


def _gaussian(sigma: float) -> np.ndarray:
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def degrade_fn(deg: Degradation, side: int) -> Callable:
    """A TensorFlow function (rows, S, S, C) -> (rows, side, side, C): box-downsampled (antialiased bilinear for a
    factor that is not a whole number), then blurred (no noise)."""
    import tensorflow as tf

    k = _gaussian(deg.blur) if deg.blur > 0 else None

    def degrade(x):
        if deg.factor is not None and x.shape[1] != side:
            f = x.shape[1] // side
            if f * side == x.shape[1]:  # box averages (ResizeArea has no gradient)
                x = tf.nn.avg_pool2d(x, f, f, "VALID")
            else:
                x = tf.image.resize(x, (side, side), method="bilinear", antialias=True)
        if k is not None:
            c, r = int(x.shape[-1]), len(k) // 2
            x = tf.pad(x, [[0, 0], [r, r], [r, r], [0, 0]], mode="SYMMETRIC")
            kern = tf.constant(np.tile(k[:, None, None, None], (1, 1, c, 1)))
            x = tf.nn.depthwise_conv2d(x, kern, [1, 1, 1, 1], "VALID")
            x = tf.nn.depthwise_conv2d(x, tf.transpose(kern, [1, 0, 2, 3]), [1, 1, 1, 1], "VALID")
        return x

    return degrade


def degrade_images(images: np.ndarray, deg: Degradation, side: int, seed: int = 0) -> np.ndarray:
    """uint8 (N, S, S, C) -> uint8 (N, side, side, C), noise included (from `seed`): what an input looks like."""
    from dcgan_cli.pixels import to_signed, to_uint8

    x = np.asarray(degrade_fn(deg, side)(to_signed(images.astype(np.float32))))
    if deg.noise:
        x = x + np.random.default_rng([seed, 0x4E]).normal(0, deg.noise / 127.5, x.shape)
    return to_uint8(x)


def consistency(inputs: np.ndarray, results: np.ndarray, deg: Degradation) -> np.ndarray:
    """RMS difference in pixel levels (N,) between uint8 inputs and the uint8 results degraded again."""
    again = degrade_images(results, Degradation(deg.factor, deg.blur), inputs.shape[1])
    return np.sqrt(np.mean((again.astype(np.float64) - inputs) ** 2, axis=(1, 2, 3)))


def restore_arrays(models, inputs: np.ndarray, deg: Degradation, search: Search,
                   on_step: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(uint8 (N, S, S, C) restored, latents, terms incl. consistency and start_consistency) of uint8 inputs."""
    from dcgan_cli.generate.search import generate, search_latents, starts
    from dcgan_cli.pixels import to_signed, to_uint8

    side, nz = inputs.shape[1], int(models.generator.input_shape[-1])
    targets = to_signed(inputs.astype(np.float32)).astype(np.float32)
    weights = np.zeros((len(inputs), *models.shape), np.float32)
    z, terms = search_latents(models, targets, weights, "restore", search, on_step, degrade=degrade_fn(deg, side))
    out = to_uint8(generate(models, z))
    first = to_uint8(generate(models, starts(len(inputs), nz, search)[::search.restarts]))
    terms = {**terms, "consistency": consistency(inputs, out, deg), "start_consistency": consistency(inputs, first, deg)}
    return out, z, terms


@dataclass(frozen=True)
class RestoreRequest:
    """One `dcgan restore`, checked as a whole before anything loads."""

    photos: tuple[Path, ...]
    out: Path
    degradation: str
    run: Path | None = None
    crop: str | None = None
    min_face: int = 8
    search: Search = field(default_factory=lambda: Search(prior_weight=RESTORE_PRIOR_WEIGHT))
    force: bool = False
    runs_dir: Path = Path("runs")

    def __post_init__(self):
        check_photos_and_out(self.photos, self.out)
        self.search.check()
        parse_degradation(self.degradation)
        if self.crop not in (None, "face"):
            raise UsageError(f"restore takes crops in the run's framing as they are, or whole photos with --crop "
                             f"face; not --crop {self.crop}", "--crop")


def _crop_inputs(req: RestoreRequest, deg: Degradation, size: int, channels: int) -> tuple[np.ndarray, int]:
    """uint8 (N, L, L, C) crops as given, and L, refused when the degradation cannot explain their size."""
    from PIL import Image

    from dcgan_cli.generate.photo_faces import load_photos

    images = load_photos(list(req.photos))
    sizes = {im.size for im in images}
    if len(sizes) > 1 or next(iter(sizes))[0] != next(iter(sizes))[1]:
        raise DcganError(f"the inputs are {' and '.join(f'{w}x{h}' for w, h in sorted(sizes))}: crops must be square "
                         f"and of one size (the run's framing); pass whole photos with --crop face")
    side = next(iter(sizes))[0]
    expected = deg.side(size, side)
    if deg.factor is not None and side > size:
        raise DcganError(f"the inputs are {side}x{side}, larger than the run's {size}x{size}: downsample cannot "
                         f"explain them; resize them to at most {size}x{size}, or use a run of a larger size")
    if side != expected:
        fix = "add downsample to --degradation" if deg.factor is None else f"name downsample:{size / side:g}"
        raise DcganError(f"the inputs are {side}x{side} but {deg} of the run's {size}x{size} gives "
                         f"{expected}x{expected}; {fix}")
    mode = "L" if channels == 1 else "RGB"
    return np.stack([np.asarray(im.convert(mode), np.uint8).reshape(side, side, channels) for im in images]), side


def fulfil(req: RestoreRequest, *, say: Callable[[str], None] = print,
           bar: Callable[[str, int], Callable[[int], None]] | None = None) -> str:
    """Do what `req` asks; returns the one-line summary. Nothing is written until every check has passed."""
    from dcgan_cli.generate.repair import load_models
    from dcgan_cli.generate.search import search_steps

    deg = parse_degradation(req.degradation)
    _check_outputs(req)
    models = load_models(req.run, req.runs_dir, warn=lambda m: say(f"Warning: {m}"))
    size, _, channels = models.shape
    if req.crop == "face":
        return _restore_photos(req, deg, models, say, bar)
    inputs, side = _crop_inputs(req, deg, size, channels)
    say(f"Restoring {len(inputs)} crop(s) ({side}x{side}, {deg}) with {models.source}")
    on_step = bar("restore", search_steps(len(inputs), req.search)) if bar else None
    out, z, terms = restore_arrays(models, inputs, deg, req.search, on_step)
    _write(req, models, deg, [(i, out[i], None, None) for i in range(len(inputs))], z, terms)
    return (f"Restored {len(inputs)} crop(s) into {req.out}: consistency {np.mean(terms['consistency']):.2f} "
            f"levels RMS (start {np.mean(terms['start_consistency']):.2f})")


def _restore_photos(req, deg, models, say, bar) -> str:
    """--crop face: each face aligned at its own resolution, restored, pasted back."""
    from dcgan_cli.data.preprocess import faces as face_mod
    from dcgan_cli.generate import photo_faces
    from dcgan_cli.generate.anonymize import face_recipe
    from dcgan_cli.generate.search import search_steps

    recipe = face_recipe(models.config, "face")
    photos = photo_faces.load_photos(list(req.photos))
    found = photo_faces.find_faces(photos, req.min_face)
    if not any(found):
        raise DcganError(f"no face of at least {req.min_face} px found in any photo; name photos with faces, "
                         f"or lower --min-face")
    faces = [photo_faces.aligned(photos[i], i, f, recipe) for i, fs in enumerate(found) for f in fs]
    # each face at its own resolution in the photo (at most the run's): one search per resolution
    sides = [deg.side(recipe.size, min(recipe.size, max(4, round(recipe.size * face_mod.alignment(
        f.landmarks, recipe.size, recipe.box_side)[1])))) for fs in found for f in fs]
    lows = []
    for (i, f), side in zip([(i, f) for i, fs in enumerate(found) for f in fs], sides):
        im = face_mod.align(photos[i], f.landmarks, side, recipe.box_side)
        lows.append(np.asarray(im.convert("L") if recipe.channels == 1 else im, np.uint8)
                    .reshape(side, side, recipe.channels))
    for i, p in enumerate(req.photos):
        if not found[i]:
            say(f"{p}: no face of at least {req.min_face} px; nothing written for it")
    at = " and ".join(f"{s}x{s}" for s in sorted(set(sides)))
    say(f"Restoring {len(faces)} face(s) in {sum(map(bool, found))} photo(s) at {at} with {models.source}")
    total = sum(search_steps(sides.count(s), req.search) for s in set(sides))
    out, z, terms = _restore_by_side(models, lows, sides, deg, req.search, bar("restore", total) if bar else None)
    pasted = {}
    for k, face in enumerate(faces):
        pasted[face.photo] = photo_faces.paste_back(pasted.get(face.photo, np.asarray(photos[face.photo], np.uint8)),
                                                    out[k], face)
    _write(req, models, deg, [(f.photo, pasted[f.photo], f, k) for k, f in enumerate(faces)], z, terms)
    return (f"Restored {len(faces)} face(s) into {req.out}: consistency {np.mean(terms['consistency']):.2f} levels "
            f"RMS (start {np.mean(terms['start_consistency']):.2f})")


def _restore_by_side(models, lows: list, sides: list, deg: Degradation, search: Search, on_step):
    """restore_arrays on the inputs of each side apart, the results in the inputs' order; terms gain "side"."""
    n, size, channels = len(lows), models.shape[0], models.shape[2]
    out = np.zeros((n, size, size, channels), np.uint8)
    z = np.zeros((n, int(models.generator.input_shape[-1])), np.float32)
    terms: dict = {"side": np.asarray(sides, np.float64)}
    for side in sorted(set(sides)):
        idx = np.flatnonzero(np.asarray(sides) == side)
        out[idx], z[idx], t = restore_arrays(models, np.stack([lows[k] for k in idx]), deg, search, on_step)
        for key, v in t.items():
            terms.setdefault(key, np.zeros(n))[idx] = v
    return out, z, terms


def _check_outputs(req: RestoreRequest) -> None:
    if req.force:
        return
    for p in req.photos:
        for o in (Path(req.out) / f"{Path(p).stem}.png", Path(req.out) / f"{Path(p).stem}.json"):
            if o.exists():
                raise DcganError(f"{o} already exists; pass --force to replace it, or choose another -o folder")


def _write(req, models, deg, items, z, terms) -> None:
    """items: (photo index, its output image, AlignedFace or None, face row) per restored face."""
    from dcgan_cli.fsutil import atomic_path, write_text
    from dcgan_cli.images import save_image

    out = Path(req.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[int, list] = {}
    for k, (i, image, face, _) in enumerate(items):
        stem = Path(req.photos[i]).stem
        n = len(rows.setdefault(i, [])) + 1
        with atomic_path(out / f"{stem}-face{n}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, z[k:k + 1].astype(np.float32), allow_pickle=False)
        rows[i].append({**(face.report() if face else {}), "latents": f"{stem}-face{n}.npy",
                        **{t: int(v[k]) if t == "side" else float(v[k]) for t, v in terms.items()}})
        save_image(out / f"{stem}.png", image)
    s = req.search
    for i, faces in rows.items():
        record = {**models.facts, "photo": str(req.photos[i]), "image": f"{Path(req.photos[i]).stem}.png",
                  "degradation": str(deg), "faces": faces,
                  "settings": {"steps": s.steps, "restarts": s.restarts, "lr": s.lr, "seed": s.seed,
                               "prior_weight": s.prior_weight, "sphere": s.sphere}}
        write_text(out / f"{Path(req.photos[i]).stem}.json", json.dumps(record, indent=2) + "\n")
