"""What the studio's tabs do, as plain functions over the library the commands call.

Every image comes from the same function its command uses, so a tab and the
command give the same bytes: Draw writes through `sampling.sample` (the PNG of
seed 7 is `dcgan sample --seeds 7 --individual DIR`'s seed-0007.png), Walk
through `sampling.interpolate`, Repair through `repair.inpaint_arrays` and
`project_arrays` on photos cropped by `repair.load_photos`, Verify through
`verification.verify`. Bad input raises the commands' `DcganError`s (the app
shows their one line). Outputs go to `Studio.workdir`, a temporary folder,
never into the run.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.errors import DcganError
from dcgan_cli.generate import repair, sampling
from dcgan_cli.runs import layout

MAX_DRAW = 64  # images per Draw: one batch of the sampler
MAX_FRAMES = 120  # frames per leg of a Walk
MAX_SEED = 2**32 - 1
EDITOR_SIDE = 256  # the Repair brush canvas: the crop scaled up (nearest) to about this many pixels
Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class Studio:
    """One run's generator, ready for every tab; the models the other tabs need are loaded on first use."""

    run: Path
    loaded: sampling.LoadedGenerator
    sampler: sampling.Sampler
    workdir: Path
    identity_model: Path | None = None
    _repair: repair.RepairModels | None = field(default=None, repr=False)

    @classmethod
    def open(cls, run: Path | None, runs_dir: Path, identity_model: Path | None = None,
             workdir: Path | None = None, warn: Callable[[str], None] | None = None) -> "Studio":
        loaded = sampling.load_generator(run, runs_dir=runs_dir, warn=warn)
        if loaded.restored.config.condition:
            raise DcganError(f"{loaded.run_dir} is a conditional run (--condition {loaded.restored.config.condition}): "
                             f"the studio opens unconditional runs; draw its classes with `dcgan sample --class`")
        sampler = sampling.Sampler(loaded.model, sampling.DEFAULT_BATCH)  # the batch `dcgan sample` uses
        workdir = Path(workdir or tempfile.mkdtemp(prefix="dcgan-studio-"))
        return cls(loaded.run_dir, loaded, sampler, workdir, identity_model)

    def new_dir(self, what: str) -> Path:
        d = self.workdir / f"{what}-{uuid.uuid4().hex[:8]}"
        d.mkdir(parents=True)
        return d

    def repair_models(self) -> repair.RepairModels:
        if self._repair is None:
            self._repair = repair.load_models(self.run)
        return self._repair

    def crop(self) -> repair.CropRecipe:
        """How photos are cropped: as the run's data was (its manifest), else the centre square."""
        cfg = self.loaded.restored.config
        try:
            return repair.crop_recipe(cfg)
        except DcganError:  # the data is not on this machine: its manifest cannot say
            return repair.crop_recipe(cfg, "center")


# ----------------------------------------------------------------------------
# Draw, Walk


def _int(value, what: str, least: int, most: int) -> int:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DcganError(f"{what} must be a whole number, got {value!r}") from None
    if v != int(v) or not least <= v <= most:
        raise DcganError(f"{what} must be a whole number from {least} to {most}, got {value}")
    return int(v)


def draw(studio: Studio, seed, count, truncation, progress: Progress | None = None) -> tuple[Path, list[Path]]:
    """Seeds seed..seed+count-1 through `sampling.sample`: (the grid, or the one image for count 1; the PNGs).

    Each PNG is the file `dcgan sample --seeds S --individual DIR` writes (seed-SSSS.png), byte for byte.
    """
    seed = _int(seed, "the seed", 0, MAX_SEED)
    count = _int(count, "the count", 1, MAX_DRAW)
    truncation = float(truncation)
    sampling.check_truncation(truncation)
    out = studio.new_dir("draw")
    seeds = sampling.Seeds.count(seed, count)
    grid = out / "grid.png" if count > 1 else None
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], count)

    sampling.sample(studio.sampler, seeds, grid, out, truncation=truncation, on_progress=advance)
    files = [out / sampling.seed_file_name(s) for s in seeds]
    return grid or files[0], files


def walk(studio: Studio, seed_a, seed_b, frames, truncation, progress: Progress | None = None) -> Path:
    """A looping GIF from seed A to seed B and back (`dcgan sample --seeds A,B --interpolate 2`)."""
    a, b = _int(seed_a, "seed A", 0, MAX_SEED), _int(seed_b, "seed B", 0, MAX_SEED)
    frames = _int(frames, "frames", 1, MAX_FRAMES)
    out = studio.new_dir("walk") / f"walk-{a}-{b}.gif"
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], 2 * frames)

    sampling.interpolate(studio.sampler, [a, b], frames, out, truncation=float(truncation), on_progress=advance)
    return out


# ----------------------------------------------------------------------------
# Repair: a photo cropped as the run's data, a brush mask, inpaint or project


def _photo_path(photo) -> Path:
    if photo is None:
        raise DcganError("no photo given; upload a photo first")
    return Path(photo)


def crop_photo(studio: Studio, photo) -> np.ndarray:
    """uint8 (S, S, C): the photo cropped as `dcgan inpaint` crops it (the same messages for a bad file)."""
    return repair.load_photos([_photo_path(photo)], studio.crop())[0]


def canvas(crop: np.ndarray) -> np.ndarray:
    """The crop scaled up by a whole factor (nearest) to paint on, RGB."""
    k = max(1, EDITOR_SIDE // crop.shape[0])
    big = crop.repeat(k, 0).repeat(k, 1)
    return np.repeat(big, 3, axis=2) if big.shape[2] == 1 else big


def brush_mask(layers: list, side: int) -> np.ndarray:
    """bool (side, side), True where the brush painted (any layer's alpha), shrunk to the crop's side.

    A crop pixel is missing when at least half of the canvas pixels over it were painted.
    """
    painted = None
    for layer in layers or []:
        a = np.asarray(layer)
        if a.ndim != 3 or a.shape[2] != 4:
            raise DcganError(f"the brush layer is not an RGBA image (shape {a.shape}); paint the hole with the brush")
        hit = a[..., 3] > 0
        painted = hit if painted is None else painted | hit
    if painted is None:
        raise DcganError("no brush strokes: paint the part to fill in over the photo, then press Inpaint")
    if painted.shape[0] % side or painted.shape[1] % side or painted.shape[0] != painted.shape[1]:
        raise DcganError(f"the painted canvas is {painted.shape[1]}x{painted.shape[0]}, not a whole multiple of "
                         f"the {side}x{side} crop; load the photo again and paint on it as shown")
    k = painted.shape[0] // side
    return painted.reshape(side, k, side, k).mean(axis=(1, 3)) >= 0.5


def search_of(steps, restarts, seed) -> repair.Search:
    s = repair.Search(steps=_int(steps, "steps", 1, 10_000), restarts=_int(restarts, "restarts", 1, 64),
                      seed=_int(seed, "the seed", 0, MAX_SEED))
    s.check()
    return s


def _counting(total: int, progress: Progress | None) -> Callable[[int], None]:
    """step(n): the search's progress callback, reporting steps done out of `total` to `progress` (if any)."""
    done = [0]

    def step(n: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], total)

    return step


def inpaint(studio: Studio, photo, layers: list, search: repair.Search,
            progress: Progress | None = None) -> tuple[Path, Path]:
    """Fill what the brush marked (as `dcgan inpaint --mask`): (the repaired crop .png, the mask .png)."""
    from dcgan_cli.images import save_image

    crop = crop_photo(studio, photo)
    hole = brush_mask(layers, crop.shape[0])
    repair.check_mask(hole, "the brush")
    models = studio.repair_models()
    step = _counting(repair.search_steps(1, search), progress)
    images, _, _ = repair.inpaint_arrays(models, crop[None], hole[None], search, step)
    out = studio.new_dir("inpaint")
    name = _photo_path(photo).stem
    mask_file = save_image(out / f"{name}-mask.png", np.where(hole, 255, 0).astype(np.uint8)[..., None])
    return save_image(out / f"{name}.png", images[0]), mask_file


def project(studio: Studio, photo, search: repair.Search, progress: Progress | None = None) -> tuple[Path, Path]:
    """The generator's closest face to the photo (as `dcgan project`): (its .png, latents.npy)."""
    from dcgan_cli.fsutil import atomic_path
    from dcgan_cli.images import save_image

    crop = crop_photo(studio, photo)
    step = _counting(repair.search_steps(1, search), progress)
    images, z, _ = repair.project_arrays(studio.repair_models(), crop[None], search, step)
    out = studio.new_dir("project")
    with atomic_path(out / "latents.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, z.astype(np.float32), allow_pickle=False)
    return save_image(out / f"{_photo_path(photo).stem}.png", images[0]), out / "latents.npy"


# ----------------------------------------------------------------------------
# Verify, Run


def verify(studio: Studio, photo_a, photo_b) -> dict:
    """`dcgan verify A B --identity-model M`'s result."""
    from dcgan_cli.identity.verification import verify as run

    if studio.identity_model is None:
        raise DcganError("no identity model; start the studio with --identity-model RUN/embedding.keras")
    if photo_a is None or photo_b is None:
        raise DcganError("upload two photos to compare")
    return run(Path(photo_a), Path(photo_b), studio.identity_model)


def run_rows(run: Path) -> tuple[list[dict], list[dict]]:
    """metrics.jsonl's epoch rows and evaluation rows (a torn last line, mid-write, is skipped)."""
    path = Path(run) / layout.METRICS_FILE
    epochs, evals = [], []
    if not path.is_file():
        return epochs, evals
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row.get("eval"), dict):
            evals.append(row["eval"])
        elif "d_loss" in row:
            epochs.append(row)
    return epochs, evals


def latest_grid(run: Path) -> Path | None:
    """The newest per-epoch grid under RUN/samples/, or None before the first epoch ends."""
    grids = sorted((Path(run) / layout.SAMPLES_DIR).glob("epoch-*.png"))
    return grids[-1] if grids else None


def run_config(run: Path) -> dict:
    try:
        return json.loads((Path(run) / layout.CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return {"error": f"cannot read {layout.CONFIG_FILE}: {e}"}
