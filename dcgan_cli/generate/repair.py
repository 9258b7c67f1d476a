"""Face repair with a trained DCGAN: project photos into its generator, fill in what is missing.

    dcgan project PHOTO... --run RUN -o OUT    find z with G(z) ~ the photo; OUT/NAME.png, latents.npy, project.json
    dcgan inpaint PHOTO... --mask-kind center --run RUN -o OUT
                                               fill the hole: Yeh et al. 2017, then Poisson blending

Both crop each photo the way the run's data was cropped (the data's manifest:
`--crop face` runs the same detector and alignment `dcgan preprocess` does;
`--crop` overrides), then search the latent space by gradient descent (Adam on
z, the generator and discriminator in inference mode), from several random
starts per photo, z kept on the sphere where Gaussian latents live, and keep
the start that fits best and looks most real (generate/search.py):

- project: pixel MSE + w * MSE of the discriminator's last hidden features
  (a perceptual term that knows faces; feature matching, Salimans et al. 2016);
- inpaint (Yeh et al., "Semantic image inpainting with deep generative
  models", CVPR 2017): the context loss ||W * (G(z) - y)||_1, where W_i is the
  share of unknown pixels in the 7x7 window around each known pixel i (known
  pixels next to the hole count most, those far from it not at all), plus the
  prior loss lambda * log(1 - D(G(z))) (lambda 0.003, theirs). Then G(z) is
  Poisson-blended into the hole (`poisson_blend`: the hole keeps G(z)'s
  gradients and meets the photo's known pixels at its edge), solved here by
  conjugate gradients on the discrete Laplacian, in NumPy.

The same photos, options and seed give the same bytes: each photo's starts
come from its own generator (seed, photo index), and the search runs through
one compiled step of one shape.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.errors import DcganError, UsageError
from dcgan_cli.generate.search import WINDOW, Search, generate, search_latents, search_steps  # noqa: F401
from dcgan_cli.images import unreadable

MASK_KINDS = ("center", "random", "eyes")
MaskKind = Enum("MaskKind", {k: k for k in MASK_KINDS}, type=str)
RANDOM_MISSING = 0.8  # Yeh et al.'s random mask: 80% of the pixels missing
EYES_ROWS = (0.38, 0.58)  # the eyes band: where aligned faces (and lfw crops) have their eyes, as shares of the side
EYES_COLS = (0.15, 0.85)
_RANDOM_MASK_STREAM = 0x4D41534B  # keeps the random masks' draws apart from the latents'


# ----------------------------------------------------------------------------
# the run's models


@dataclass
class RepairModels:
    """A run's generator (EMA weights when kept) and its discriminator, from the same checkpoint."""

    generator: object
    discriminator: object
    features: object  # image -> (D's last hidden features, D's logit)
    config: object  # the run's TrainConfig
    source: str  # for messages
    facts: dict  # for project.json / inpaint.json

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.config.image_size, self.config.image_size, self.config.channels


def load_models(run: Path | None, runs_dir: Path = Path("runs"), warn: Callable[[str], None] | None = None) \
        -> RepairModels:
    """The generator through `sampling.load_generator`; D restored from the checkpoint G came from."""
    import keras
    import tensorflow as tf

    from dcgan_cli.runs import checkpoints
    from dcgan_cli.gan.model import build_discriminator
    from dcgan_cli.generate.sampling import load_generator

    loaded = load_generator(run, runs_dir=runs_dir, warn=warn)
    cfg, restored = loaded.restored.config, loaded.restored
    if cfg.condition:
        raise DcganError(f"{loaded.run_dir} is a conditional run (--condition {cfg.condition}): project and inpaint "
                         f"search z of an unconditional generator; use a run trained without --condition")
    if not any(name.startswith(checkpoints.DISCRIMINATOR_SLOT + "/") for name, _ in
               tf.train.list_variables(restored.checkpoint)):
        raise DcganError(f"{restored.checkpoint} holds only the generator, but project and inpaint also need the "
                         f"discriminator (`sample` does not); use a checkpoint that training wrote")
    d = build_discriminator(cfg.image_size, cfg.channels, cfg.d_filters, cfg.init_std, fast=False, norm=cfg.d_norm)
    if cfg.spectral_norm:  # the run's D as it was trained, so that its checkpoint's weights land where they were
        from dcgan_cli.gan.regularize import with_spectral_norm

        d = with_spectral_norm(d)
    checkpoints.restore_first_readable(tf.train.Checkpoint(**{checkpoints.DISCRIMINATOR_SLOT: d}), [restored.checkpoint],
                                  restored.checkpoint, partial=True)
    hidden = [layer for layer in d.layers if layer.name.endswith("_lrelu")][-1]
    features = keras.Model(d.input, [hidden.output, d.output])
    return RepairModels(loaded.model, d, features, cfg, loaded.source, loaded.facts)


# ----------------------------------------------------------------------------
# photos, cropped as the run's data was


@dataclass(frozen=True)
class CropRecipe:
    crop: str  # preprocess.decoding.CROPS
    box_side: int  # 0: the largest centred square
    size: int
    channels: int


def crop_recipe(cfg, crop: str | None = None) -> CropRecipe:
    """How the run's data was cropped (its manifest), unless `crop` says otherwise; at the run's size."""
    from dcgan_cli.data.preprocess.decoding import CELEBA_CROP
    from dcgan_cli.data.shards import load_manifest

    manifest = None
    try:
        manifest = load_manifest(cfg.data, check_shards=False)
    except DcganError:
        if crop is None:
            raise DcganError(f"cannot tell how the run's data was cropped: {cfg.data} has no readable manifest; "
                             f"name the crop with --crop (e.g. --crop face)") from None
    if crop is None and manifest is not None and (manifest["size"], manifest["channels"]) != (cfg.image_size, cfg.channels):
        raise DcganError(f"the run's generator makes {cfg.image_size}x{cfg.image_size}x{cfg.channels} images but its "
                         f"data {cfg.data} holds {manifest['size']}x{manifest['size']}x{manifest['channels']}: photos "
                         f"cropped that way would not fit it; use the run trained on that data, or name --crop")
    if crop is None:
        return CropRecipe(manifest.get("crop", "center"), int(manifest.get("crop_size") or 0), cfg.image_size,
                          cfg.channels)
    side = CELEBA_CROP if crop in ("celeba", "face") else 0
    return CropRecipe(crop, side, cfg.image_size, cfg.channels)


def load_photos(paths: list[Path], recipe: CropRecipe) -> np.ndarray:
    """uint8 (N, S, S, C): each photo cropped and resized as `recipe` says (the largest face for `face`)."""
    from types import SimpleNamespace

    from dcgan_cli.data.preprocess.decoding import process_image

    for p in paths:
        if not Path(p).is_file():
            raise DcganError(f"no image at {p}; name photo files")
    if recipe.crop == "face":
        return _face_crops(paths, recipe)
    cfg = SimpleNamespace(crop=recipe.crop, box_side=recipe.box_side, size=recipe.size, channels=recipe.channels)
    out = []
    for p in paths:
        try:
            pixels, _ = process_image(str(p), cfg)
        except Exception as e:  # Pillow raises several types for unreadable files
            raise DcganError(unreadable(p, e)) from None
        out.append(np.frombuffer(pixels, np.uint8).reshape(recipe.size, recipe.size, recipe.channels))
    return np.stack(out)


def _face_crops(paths: list[Path], recipe: CropRecipe) -> np.ndarray:
    """`--crop face`: the detector and the alignment of `dcgan preprocess --crop face`, largest face per photo."""
    from dcgan_cli.data.preprocess import faces

    if not faces.available():
        raise DcganError(faces.MISSING)
    photos = []
    for p in paths:
        try:
            photos.append(faces.load_photo(str(p)))
        except Exception as e:  # Pillow raises several types for unreadable files
            raise DcganError(unreadable(p, e)) from None
    out = []
    for p, photo, found in zip(paths, photos, faces.detect(photos)):
        if not found:
            raise DcganError(f"no face found in {p}; use a photo with a face in it, or --crop center to use it as it is")
        face = max(found, key=lambda f: f.side)
        aligned = faces.align(photo, face.landmarks, recipe.size, recipe.box_side)
        if recipe.channels == 1:
            aligned = aligned.convert("L")
        out.append(np.asarray(aligned, np.uint8).reshape(recipe.size, recipe.size, recipe.channels))
    return np.stack(out)


# ----------------------------------------------------------------------------
# masks: True where a pixel is missing


def parse_box(text: str) -> tuple[int, int, int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*", text)
    if not m:
        raise UsageError(f"{text!r} is not x,y,w,h in pixels (e.g. 8,8,16,16)", "--box")
    return tuple(int(v) for v in m.groups())


def make_masks(n: int, size: int, *, mask_file: Path | None = None, box: str | None = None,
               kind: str | None = None, seed: int = 0) -> np.ndarray:
    """bool (n, size, size), True where missing; one mask for all photos except `random` (one per photo)."""
    if kind == "random":
        masks = np.stack([np.random.default_rng([seed, i, _RANDOM_MASK_STREAM]).random((size, size)) < RANDOM_MISSING
                          for i in range(n)])
    else:
        masks = np.repeat(_one_mask(size, mask_file, box, kind)[None], n, axis=0)
    for m in masks:
        check_mask(m, mask_file or box or kind)
    return masks


def _one_mask(size: int, mask_file: Path | None, box: str | None, kind: str | None) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    if mask_file is not None:
        return _read_mask(Path(mask_file), size)
    if box is not None:
        x, y, w, h = parse_box(box)
        if x + w > size or y + h > size:
            raise DcganError(f"--box {box} reaches past the {size}x{size} crop; keep x+w and y+h within {size}")
        mask[y:y + h, x:x + w] = True
    elif kind == "center":
        q = size // 4
        mask[q:size - q, q:size - q] = True
    elif kind == "eyes":
        r0, r1 = (round(f * size) for f in EYES_ROWS)
        c0, c1 = (round(f * size) for f in EYES_COLS)
        mask[r0:r1, c0:c1] = True
    else:
        raise UsageError(f"choose one of {', '.join(MASK_KINDS)}, not {kind!r}", "--mask-kind")
    return mask


def _read_mask(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise DcganError(f"no mask at {path}; name a PNG, white where pixels are missing")
    try:
        with Image.open(path) as im:
            im.load()
            mask = np.asarray(im.convert("L")) > 127
    except Exception as e:  # Pillow raises several types for unreadable files
        raise DcganError(unreadable(path, e, "name a PNG mask")) from None
    if mask.shape != (size, size):
        raise DcganError(f"the mask {path.name} is {mask.shape[1]}x{mask.shape[0]} but the photos after cropping are "
                         f"{size}x{size} (the run's size); draw it at {size}x{size}, white where pixels are missing")
    return mask


def check_mask(mask: np.ndarray, what) -> None:
    if not mask.any():
        raise DcganError(f"the mask ({what}) marks no pixel as missing: nothing to fill; white marks the hole")
    if mask.all():
        raise DcganError(f"the mask ({what}) marks every pixel as missing: nothing is known to fill from; "
                         f"leave some of the photo black (known)")


def _box_sum(a: np.ndarray, window: int) -> np.ndarray:
    """Sums of (N, H, W) over the window x window box around each pixel (cut at the image's edges)."""
    r = window // 2
    p = np.pad(a, ((0, 0), (r + 1, r), (r + 1, r)))
    c = p.cumsum(1).cumsum(2)
    return c[:, window:, window:] - c[:, :-window, window:] - c[:, window:, :-window] + c[:, :-window, :-window]


def context_weights(hole: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Yeh et al.'s W (N, H, W): for a known pixel, the share of unknown pixels in its window; 0 in the hole."""
    unknown = hole.astype(np.float64)
    share = _box_sum(unknown, window) / _box_sum(np.ones_like(unknown), window)
    return (share * ~hole).astype(np.float32)


# ----------------------------------------------------------------------------
# Poisson blending


def _neighbour_sum(a: np.ndarray) -> np.ndarray:
    """Sum of the 4 neighbours of each pixel of (N, H, W, C), neighbours outside the image left out."""
    s = np.zeros_like(a)
    s[:, 1:] += a[:, :-1]
    s[:, :-1] += a[:, 1:]
    s[:, :, 1:] += a[:, :, :-1]
    s[:, :, :-1] += a[:, :, 1:]
    return s


def poisson_blend(source: np.ndarray, target: np.ndarray, hole: np.ndarray, tol: float = 1e-9,
                  max_iter: int | None = None) -> np.ndarray:
    """Pérez et al. 2003: inside `hole`, the image whose Laplacian is `source`'s and which equals `target` outside.

    source, target: float (N, H, W, C); hole: bool (N, H, W). For each hole pixel p with
    neighbours N(p) (4-connected, inside the image):
        sum_{q in N(p)} (x_p - x_q) = sum_{q in N(p)} (s_p - s_q),   x_q = target_q outside the hole.
    A symmetric positive definite system per image and channel, solved by conjugate
    gradients on all of them at once, to a residual of `tol` times the right-hand side's.
    Returns float64 (N, H, W, C).
    """
    s, t = np.asarray(source, np.float64), np.asarray(target, np.float64)
    h = np.broadcast_to(hole[..., None], s.shape).astype(np.float64)
    count = _neighbour_sum(np.ones_like(s))

    def apply(x):  # A x on the hole (x is zero outside it)
        return (count * x - _neighbour_sum(x * h)) * h

    b = (count * s - _neighbour_sum(s) + _neighbour_sum(t * (1 - h))) * h
    x = s * h
    r = b - apply(x)
    p = r.copy()
    axes = (1, 2)
    rs = (r * r).sum(axes, keepdims=True)
    limit = tol ** 2 * np.maximum((b * b).sum(axes, keepdims=True), 1e-30)  # |r| <= tol |b|
    for _ in range(max_iter or int(hole.sum(axes).max()) * 2 + 10):
        if np.all(rs <= limit):
            break
        ap = apply(p)
        pap = (p * ap).sum(axes, keepdims=True)
        alpha = np.where(pap > 0, rs / np.where(pap > 0, pap, 1), 0.0)
        x += alpha * p
        r -= alpha * ap
        rs_new = (r * r).sum(axes, keepdims=True)
        p = r + np.where(rs > 0, rs_new / np.where(rs > 0, rs, 1), 0.0) * p
        rs = rs_new
    return np.where(h > 0, x, t)


def inpaint_arrays(models: RepairModels, photos: np.ndarray, holes: np.ndarray, search: Search,
                   on_step: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(uint8 repaired photos, their latents, loss terms): uint8 photos, holes bool (N, H, W)."""
    from dcgan_cli.pixels import to_signed, to_uint8

    known = to_signed(photos.astype(np.float32)) * ~holes[..., None]
    weights = np.broadcast_to(context_weights(holes, search.window)[..., None], photos.shape).astype(np.float32)
    z, terms = search_latents(models, known.astype(np.float32), weights, "inpaint", search, on_step)
    blended = poisson_blend(generate(models, z), known, holes)
    return to_uint8(blended), z, terms


def project_arrays(models: RepairModels, photos: np.ndarray, search: Search,
                   on_step: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(uint8 reconstructions, latents, loss terms) of uint8 photos."""
    from dcgan_cli.pixels import to_signed, to_uint8

    targets = to_signed(photos.astype(np.float32)).astype(np.float32)
    z, terms = search_latents(models, targets, np.ones_like(targets), "project", search, on_step)
    return to_uint8(generate(models, z)), z, terms


# ----------------------------------------------------------------------------
# the commands


@dataclass(frozen=True)
class RepairRequest:
    """One `dcgan project` or `dcgan inpaint`, checked as a whole before anything loads.

    Attributes:
        kind: "project" or "inpaint".
        photos: the photo files; their stems name the outputs, so they must differ.
        out: the output folder: NAME.png per photo, latents.npy (N, latent_dim), KIND.json.
        run: the run (default: the newest under runs_dir). crop: override the data's crop.
        mask / box / mask_kind: inpaint's hole (exactly one). search: the latent search.
        force: replace outputs already in OUT.
    """

    kind: str
    photos: tuple[Path, ...]
    out: Path
    run: Path | None = None
    crop: str | None = None
    mask: Path | None = None
    box: str | None = None
    mask_kind: str | None = None
    search: Search = field(default_factory=Search)
    force: bool = False
    runs_dir: Path = Path("runs")

    def __post_init__(self):
        self.search.check()
        if not self.photos:
            raise UsageError("name at least one photo", "PHOTO")
        stems = [Path(p).stem for p in self.photos]
        twice = sorted({s for s in stems if stems.count(s) > 1})
        if twice:
            raise UsageError(f"two photos are named {twice[0]}: outputs are named by the photo; rename one", "PHOTO")
        holes = [o for o, v in (("--mask", self.mask), ("--box", self.box), ("--mask-kind", self.mask_kind)) if v]
        if self.kind == "inpaint" and len(holes) != 1:
            raise UsageError("give exactly one of --mask MASK.png, --box x,y,w,h, --mask-kind "
                             + "|".join(MASK_KINDS), holes[1] if holes else "--mask")
        if self.box is not None:
            parse_box(self.box)
        if not str(self.out).strip():
            raise UsageError("-o is empty (an unset variable?); name a folder for the outputs", "-o")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise UsageError(f"{self.out} is a file; -o names a folder for the outputs", "-o")

    def outputs(self) -> list[Path]:
        out = Path(self.out)
        return [out / f"{Path(p).stem}.png" for p in self.photos] + [out / "latents.npy", out / f"{self.kind}.json"]


def fulfil(req: RepairRequest, *, say: Callable[[str], None] = print,
           bar: Callable[[str, int], Callable[[int], None]] | None = None) -> str:
    """Do what `req` asks; returns the one-line summary. Nothing is written until every check has passed."""
    from dcgan_cli.generate.sampling import check_writable
    from dcgan_cli.resources import check_sampling_memory

    missing = [p for p in req.photos if not Path(p).is_file()]
    if missing:
        raise DcganError(f"no image at {missing[0]}; name photo files")
    if not req.force:
        taken = [p for p in req.outputs() if p.exists()]
        if taken:
            raise DcganError(f"{taken[0]} already exists; pass --force to replace it, or choose another -o folder")
    check_writable(req.out, "dir", keep=False)
    models = load_models(req.run, req.runs_dir, warn=lambda m: say(f"Warning: {m}"))
    check_sampling_memory(models.generator, req.search.batch_size, rows=len(req.photos) * req.search.restarts,
                          rows_per_unit=len(req.photos))
    recipe = crop_recipe(models.config, req.crop)
    photos = load_photos(list(req.photos), recipe)
    holes = (make_masks(len(photos), recipe.size, mask_file=req.mask, box=req.box, kind=req.mask_kind,
                        seed=req.search.seed) if req.kind == "inpaint" else None)
    say(f"{'Projecting' if req.kind == 'project' else 'Inpainting'} {len(photos)} photo(s) ({recipe.crop} crop, "
        f"{recipe.size}x{recipe.size}x{recipe.channels}) with {models.source}")
    on_step = bar(req.kind, search_steps(len(photos), req.search)) if bar else None
    if req.kind == "project":
        images, z, terms = project_arrays(models, photos, req.search, on_step)
    else:
        images, z, terms = inpaint_arrays(models, photos, holes, req.search, on_step)
    _write(req, models, recipe, images, z, terms, holes)
    best = float(np.mean(terms["total"]))
    return f"Wrote {len(photos)} image(s), latents.npy and {req.kind}.json to {req.out} (mean loss {best:.4g})"


def _write(req: RepairRequest, models: RepairModels, recipe: CropRecipe, images: np.ndarray, z: np.ndarray,
           terms: dict, holes: np.ndarray | None) -> None:
    from dcgan_cli.fsutil import atomic_path, write_text
    from dcgan_cli.images import save_image

    out = Path(req.out)
    rows = []
    for i, (p, img) in enumerate(zip(req.photos, images)):
        save_image(out / f"{Path(p).stem}.png", img)
        row = {"photo": str(p), "image": f"{Path(p).stem}.png", "latent_row": i,
               "loss": {k: float(v[i]) for k, v in terms.items()}}
        if holes is not None:
            row["missing_share"] = float(holes[i].mean())
        rows.append(row)
    with atomic_path(out / "latents.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, z.astype(np.float32), allow_pickle=False)
    s = req.search
    settings = {"steps": s.steps, "restarts": s.restarts, "lr": s.lr, "seed": s.seed, "batch_size": s.batch_size,
                "sphere": s.sphere, "fit_slack": s.fit_slack,
                **({"feature_weight": s.feature_weight} if req.kind == "project" else
                   {"prior_weight": s.prior_weight, "window": s.window,
                    "mask": str(req.mask) if req.mask else req.box and f"box {req.box}" or req.mask_kind})}
    record = {**models.facts, "crop": recipe.crop, "image_shape": list(models.shape), "settings": settings,
              "photos": rows}
    write_text(out / f"{req.kind}.json", json.dumps(record, indent=2) + "\n")
