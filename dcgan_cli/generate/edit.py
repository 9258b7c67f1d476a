"""`dcgan edit`: move latents along a run's attribute directions (directions.py), InterFaceGAN's edit.

    dcgan edit --run RUN --attr Smiling=+2,Eyeglasses=-1 --seeds 0-7 -o edit.png
    dcgan edit --run RUN --attr Smiling=+2 --latents projected/latents.npy -o edit.png
    dcgan edit me.jpg --run RUN --attr Smiling=+2 --keep Male,Young -o edit.png    (a photo, through project)
    dcgan edit --run RUN --sweep Smiling --frames 7 --seeds 0-3 -o strip.png     (or -o sweep.gif)

An edit is z' = z + sum_i a_i n_i, n_i the unit normal of attribute i's boundary
in z, so a_i is a distance in z (a sample's z has norm about sqrt(latent_dim);
InterFaceGAN's edits go from -3 to +3). `--keep` holds attributes fixed: each
n_i is first projected orthogonal to the span of the kept normals (and made unit
again), so z' stays at the same signed distance from every kept boundary.

What is written: OUT, a grid with one row per input: G(z), then G(z'); a photo
adds itself in front (its G(z) is its projection); with --sweep, the input's
images from -K to +K (a strip, one row per input, after the photo) or an
animated GIF of those frames (each frame a grid of the inputs). --individual DIR: one PNG per edited image, named as
`sample` names them (seed-0007.png, latent-0003.png) or by the photo's stem;
with --sweep, NAME-fNN.png per frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.errors import DcganError, UsageError
from dcgan_cli.generate.repair import Search
from dcgan_cli.runs import layout

MAX_STEP = 10.0  # |a| and --sweep-to are distances in z; beyond 10 an edit leaves where samples live
DEFAULT_FRAMES = 7
DEFAULT_SWEEP_TO = 3.0  # InterFaceGAN's -3..+3


def parse_attr(text: str | None) -> dict[str, float]:
    """"Smiling=+2,Eyeglasses=-1" -> {"Smiling": 2.0, "Eyeglasses": -1.0}; values within +-MAX_STEP."""
    if text is None:
        return {}
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        name, eq, value = part.rpartition("=")
        name = name.strip()
        try:
            a = float(value)
        except ValueError:
            a = float("nan")
        if not eq or not name or not np.isfinite(a):
            raise UsageError(f"{part!r} is not NAME=VALUE (e.g. Smiling=+2,Eyeglasses=-1)", "--attr")
        if abs(a) > MAX_STEP:
            raise UsageError(f"{name}={value} is out of range: a step is a distance in z, within -{MAX_STEP:g} to "
                             f"+{MAX_STEP:g} (try 1 to 3)", "--attr")
        if name in out:
            raise UsageError(f"{name} is given twice", "--attr")
        out[name] = a
    return out


def parse_names(text: str | None) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()] if text else []


def edit_shift(directions, attrs: dict[str, float], keep: list[str]) -> np.ndarray:
    """sum_i a_i n_i, each n_i made orthogonal to the kept attributes' normals: (D,) float32."""
    kept = np.stack([directions.normal(k) for k in keep]) if keep else np.zeros((0, directions.normals.shape[1]))
    from dcgan_cli.generate.directions import project_out

    shift = np.zeros(directions.normals.shape[1], np.float32)
    for name, a in attrs.items():
        shift += np.float32(a) * project_out(directions.normal(name), kept)
    return shift


def sweep_steps(frames: int, to: float) -> np.ndarray:
    """The `frames` distances from -to to +to."""
    return np.linspace(-to, to, frames).astype(np.float32)


@dataclass(frozen=True)
class EditRequest:
    """One `dcgan edit`, checked as a whole before any model loads (UsageError names the option).

    Attributes:
        photos / seed_list / latents: the inputs (exactly one kind): photo files (projected first, as
            `dcgan project` does, with `search`), seeds "0-7,12", or a latents .npy (N, latent_dim).
        attr: "NAME=VALUE,..." edits. keep: "NAME,..." held fixed. sweep: NAME, frames, sweep_to: -K..+K.
        out: the grid or strip (.png/.jpg/.webp), or with --sweep an animated .gif. individual: a folder.
    """

    run: Path | None = None
    photos: tuple[Path, ...] = ()
    seed_list: str | None = None
    latents: Path | None = None
    attr: str | None = None
    keep: str | None = None
    sweep: str | None = None
    frames: int | None = None
    sweep_to: float | None = None
    out: Path | None = None
    individual: Path | None = None
    crop: str | None = None
    search: Search = field(default_factory=Search)
    force: bool = False
    runs_dir: Path = Path("runs")
    attrs: dict = field(init=False, repr=False)
    kept: list = field(init=False, repr=False)

    def __post_init__(self):
        from dcgan_cli.generate.sampling import Seeds
        from dcgan_cli.images import IMAGE_FORMATS

        given = [o for o, v in (("PHOTO", self.photos), ("--seeds", self.seed_list), ("--latents", self.latents)) if v]
        if len(given) != 1:
            raise UsageError("give exactly one of: photos, --seeds, --latents", given[1] if given else "--seeds")
        if self.seed_list is not None:
            try:
                Seeds.parse(self.seed_list)
            except DcganError as e:
                raise UsageError(str(e), "--seeds") from None
        if self.photos:
            self.search.check()
            stems = [Path(p).stem for p in self.photos]
            if len(set(stems)) != len(stems):
                raise UsageError("two photos share a name: outputs are named by the photo; rename one", "PHOTO")
        attrs, kept = parse_attr(self.attr), parse_names(self.keep)
        if not attrs and self.sweep is None:
            raise UsageError("say what to change: --attr NAME=VALUE,... or --sweep NAME", "--attr")
        both = [k for k in kept if k in attrs or k == self.sweep]
        if both:
            raise UsageError(f"{both[0]} is both edited and kept; an attribute cannot move and stay fixed", "--keep")
        if self.sweep is not None and self.sweep in attrs:
            raise UsageError(f"{self.sweep} is swept; leave it out of --attr", "--sweep")
        if self.sweep is None and (self.frames is not None or self.sweep_to is not None):
            raise UsageError("applies to --sweep NAME", "--frames" if self.frames is not None else "--sweep-to")
        if self.frames is not None and self.frames < 2:
            raise UsageError(f"{self.frames} is less than the minimum of 2", "--frames")
        if self.sweep_to is not None and not 0 < self.sweep_to <= MAX_STEP:
            raise UsageError(f"{self.sweep_to} is out of range: from -K to +K in z, 0 < K <= {MAX_STEP:g}",
                             "--sweep-to")
        if self.out is None and self.individual is None:
            raise UsageError("give an output image (-o), --individual DIR, or both", "-o")
        if self.out is not None:
            suffix = Path(self.out).suffix.lower()
            if suffix == ".gif" and self.sweep is None:
                raise UsageError("a .gif is for --sweep NAME; name the grid .png, .jpg or .webp", "-o")
            if suffix != ".gif" and suffix not in IMAGE_FORMATS:
                raise UsageError(f"cannot write {Path(self.out).name}: use one of {', '.join(IMAGE_FORMATS)}"
                                 f"{' or .gif' if self.sweep else ''}", "-o")
        object.__setattr__(self, "attrs", attrs)
        object.__setattr__(self, "kept", kept)

    @property
    def steps(self) -> np.ndarray | None:
        if self.sweep is None:
            return None
        return sweep_steps(self.frames or DEFAULT_FRAMES, self.sweep_to or DEFAULT_SWEEP_TO)

    def names(self, count: int) -> list[str]:
        """The stems of --individual's files, one per input."""
        from dcgan_cli.generate.sampling import Seeds, latent_file_name, seed_file_name

        if self.photos:
            return [Path(p).stem for p in self.photos]
        if self.seed_list is not None:
            return [Path(seed_file_name(s)).stem for s in Seeds.parse(self.seed_list)]
        return [Path(latent_file_name(i)).stem for i in range(count)]


def _inputs(req: EditRequest, latent_dim: int) -> np.ndarray | None:
    """The latents of --seeds or --latents (photos are projected later, once the models are loaded)."""
    from dcgan_cli.generate.sampling import Seeds, check_latents, latents, read_latents

    if req.latents is not None:
        z = read_latents(req.latents)
        check_latents(z, latent_dim, req.latents)
        return z
    if req.seed_list is not None:
        return latents(Seeds.parse(req.seed_list), latent_dim)
    missing = [p for p in req.photos if not Path(p).is_file()]
    if missing:
        raise DcganError(f"no image at {missing[0]}; name photo files")
    return None


def _check_outputs(req: EditRequest, count: int, cells: int, shape: tuple[int, int, int]) -> None:
    from dcgan_cli.generate.sampling import check_writable
    from dcgan_cli.images import check_grid_fits

    files = [Path(req.individual) / f"{n}{'' if req.sweep is None else f'-f{i:02d}'}.png"
             for n in req.names(count) for i in range(len(req.steps) if req.sweep else 1)] if req.individual else []
    if not req.force:
        taken = [p for p in ([Path(req.out)] if req.out else []) + files if p.exists()]
        if taken:
            raise DcganError(f"{taken[0]} already exists; pass --force to replace it, or choose another name")
    if req.out is not None:
        if Path(req.out).suffix.lower() != ".gif":
            check_grid_fits(req.out, count * cells, *shape, nrow=cells)
        check_writable(req.out)
    if req.individual is not None:
        check_writable(req.individual, "dir")


def fulfil(req: EditRequest, *, say: Callable[[str], None] = print,
           bar: Callable[[str, int], Callable[[int], None]] | None = None) -> str:
    """Do what `req` asks; returns the one-line summary. Every check comes before any model loads."""
    from dcgan_cli.generate import directions as dirs
    from dcgan_cli.generate import repair
    from dcgan_cli.generate.sampling import Sampler, load_generator

    run = Path(req.run) if req.run is not None else layout.latest_run(req.runs_dir)
    dirs.check_unconditional(run, "edit")
    d = dirs.load_directions(run)
    d.check_names(list(req.attrs), "--attr")
    d.check_names(req.kept, "--keep")
    d.check_names([req.sweep] if req.sweep else [], "--sweep")
    shift = edit_shift(d, req.attrs, req.kept)
    kept = np.stack([d.normal(k) for k in req.kept]) if req.kept else np.zeros((0, d.normals.shape[1]))
    sweep = dirs.project_out(d.normal(req.sweep), kept) if req.sweep else None
    z = _inputs(req, d.normals.shape[1])
    cfg = layout.load_config(run)
    count = len(z) if z is not None else len(req.photos)
    cells = (1 if req.photos else 0) + (len(req.steps) if req.sweep else 2)  # [photo,] before, after | frames
    _check_outputs(req, count, cells, (cfg.image_size, cfg.image_size, cfg.channels))
    warn = lambda m: say(f"Warning: {m}")  # noqa: E731
    photos = None
    if req.photos:
        models = repair.load_models(run, req.runs_dir, warn=warn)
        recipe = repair.crop_recipe(models.config, req.crop)
        photos = repair.load_photos(list(req.photos), recipe)
        say(f"Projecting {len(photos)} photo(s) into {models.source}")
        on_step = bar("project", repair.search_steps(len(photos), req.search)) if bar else None
        _, z, _ = repair.project_arrays(models, photos, req.search, on_step)
        generator, facts = models.generator, models.facts
    else:
        loaded = load_generator(run, warn=warn)
        generator, facts = loaded.model, loaded.facts
    if d.info.get("checkpoint") and facts.get("checkpoint") != d.info.get("checkpoint"):
        warn(f"the directions were fitted on {d.info['checkpoint']} but the run is now at {facts.get('checkpoint')}; "
             f"fit them again with `dcgan directions --run {run} --force`")
    sampler = Sampler(generator)
    return _write(req, sampler, z, shift, sweep, photos)


def _write(req: EditRequest, sampler, z: np.ndarray, shift: np.ndarray, sweep: np.ndarray | None,
           photos: np.ndarray | None) -> str:
    from dcgan_cli.images import make_grid, save_gif, save_image

    before = [photos] if photos is not None else []
    names = req.names(len(z))
    what = ", ".join(f"{k}={v:+g}" for k, v in req.attrs.items())
    if sweep is None:
        edited = sampler(z + shift)
        columns = before + [sampler(z), edited]
        per_input = [edited]
    else:
        steps = req.steps
        per_input = [sampler(z + shift + s * sweep) for s in steps]  # one (N, H, W, C) per frame
        columns = before + per_input
        what = f"{req.sweep} from {steps[0]:+g} to {steps[-1]:+g} in {len(steps)} frames" + (f", {what}" if what else "")
    if req.out is not None and Path(req.out).suffix.lower() == ".gif":
        save_gif(req.out, (make_grid(frame) for frame in per_input), fps=4)
    elif req.out is not None:
        cells = np.stack(columns, 1).reshape(-1, *columns[0].shape[1:])  # row i: input i's cells
        save_image(req.out, make_grid(cells, nrow=len(columns)))
    if req.individual is not None:
        for f, frame in enumerate(per_input):
            for name, img in zip(names, frame):
                save_image(Path(req.individual) / f"{name}{'' if sweep is None else f'-f{f:02d}'}.png", img)
    places = ([str(req.out)] if req.out else []) + ([f"{req.individual}/"] if req.individual else [])
    return f"Wrote {len(z)} edit(s) ({what}) to {' and '.join(places)}"
