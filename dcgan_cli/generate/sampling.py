"""Faces from a trained generator: reproducible grids, one file per seed, latent walks, export.

Reproducibility rests on three rules:

- One latent per seed, drawn from that seed's own numpy Generator, so image k
  depends on seed k only, whatever else is asked.
- The generator always runs on batches of one fixed shape (the last batch is
  padded with zeros). oneDNN picks its kernels by shape: on CPU a batch of 3 or 5
  gave floats one ulp away from a batch of 1 (measured), which can flip a pixel
  that sits on a rounding edge. Within one shape, a latent's position and its
  neighbours do not change its image.
- Batch norm runs in inference mode (moving statistics), so the other latents
  of a batch cannot leak into an image.

A run's generator is rebuilt from its `config.json` and restored from the
newest checkpoint (the EMA weights when the run kept them; see `generator_io.restore`),
so sampling works mid-training as well as after it.

`Sampler` is the one generator runner: the trainer's per-epoch grids,
evaluation and `dcgan sample` all go through it. `SampleRequest` is what
`dcgan sample` asks for, checked as a whole before any model loads.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from statistics import NormalDist
from typing import Callable, Iterable, Iterator

import numpy as np

from dcgan_cli.gan import generator_io
from dcgan_cli.runs import layout
from dcgan_cli.errors import DcganError, UsageError

DEFAULT_BATCH = 64
DEFAULT_COUNT = 16
DEFAULT_FRAMES = 24
EXPORT_FORMATS = ("keras", "savedmodel", "tflite")
ExportFormat = Enum("ExportFormat", {f: f for f in EXPORT_FORMATS}, type=str)
_UNIT_NORMAL = NormalDist()


# ----------------------------------------------------------------------------
# seeds and latents


class Seeds:
    """An ordered list of seeds kept as ranges, so `--seeds 0-999999` costs no memory."""

    def __init__(self, ranges: Iterable[range]):
        self.ranges = tuple(r for r in ranges if len(r))
        if not self.ranges:
            raise DcganError("no seeds given")

    @classmethod
    def count(cls, start: int, n: int) -> "Seeds":
        """n consecutive seeds from `start` (what `--seed S -n N` means)."""
        return cls([range(start, start + n)])

    @classmethod
    def parse(cls, spec: str) -> "Seeds":
        """'0-99,120,200-210' -> seeds 0..99, 120, 200..210 (inclusive ranges, in the given order)."""
        ranges = []
        for part in spec.split(","):
            m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
            if not m:
                raise DcganError(f"{part.strip()!r} in {spec!r} is not a seed or a range; write seeds like 0-99,120,200-210")
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) is not None else lo
            if hi < lo:
                raise DcganError(f"the range {lo}-{hi} in {spec!r} runs backwards; write {hi}-{lo}")
            ranges.append(range(lo, hi + 1))
        return cls(ranges)

    def __len__(self) -> int:
        return sum(len(r) for r in self.ranges)

    def __iter__(self) -> Iterator[int]:
        return itertools.chain.from_iterable(self.ranges)

    def __str__(self) -> str:
        return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in self.ranges)


def truncation_threshold(psi: float) -> float:
    """The |z| bound of `--truncation psi`: the normal keeps a share psi of its mass inside it."""
    check_truncation(psi)
    return float("inf") if psi == 1 else _UNIT_NORMAL.inv_cdf(0.5 + psi / 2)


def check_truncation(psi: float) -> None:
    if not 0 < psi <= 1:
        raise DcganError(f"truncation must be in (0, 1], got {psi}; 1 is no truncation, "
                         f"smaller trades variety for typical, cleaner faces")


def latents(seeds: Iterable[int], latent_dim: int, truncation: float = 1.0) -> np.ndarray:
    """One latent per seed, float32 (N, latent_dim): image k depends on seed k only.

    z ~ N(0, I). With truncation psi < 1, each component outside the central
    share psi of the normal (|z| > truncation_threshold(psi)) is redrawn from the
    normal truncated to that band (inverse CDF, from the same seed's generator),
    so components already inside are kept and the face stays recognisably the
    one of its seed, only closer to the average face.
    """
    t = truncation_threshold(truncation)
    rows = []
    for s in seeds:
        rng = np.random.default_rng(s)
        z = rng.standard_normal(latent_dim)
        outside = np.abs(z) > t
        if outside.any():
            u = rng.uniform(size=int(outside.sum()))
            z[outside] = [_UNIT_NORMAL.inv_cdf(0.5 + truncation * (x - 0.5)) for x in u]
        rows.append(z)
    if not rows:
        return np.zeros((0, latent_dim), np.float32)
    return np.stack(rows).astype(np.float32)


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation from a (t=0) to b (t=1).

    High-dimensional normal latents live near a sphere; a straight line between
    two of them passes closer to the origin (blander, lower-norm faces midway),
    the arc does not (White, "Sampling Generative Networks", 2016).
    """
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = np.dot(a64, b64) / (np.linalg.norm(a64) * np.linalg.norm(b64))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    so = np.sin(omega)
    if so < 1e-6:  # (anti)parallel: the arc is undefined, a line is as good
        return ((1 - t) * a64 + t * b64).astype(np.float32)
    return (np.sin((1 - t) * omega) / so * a64 + np.sin(t * omega) / so * b64).astype(np.float32)


def walk_latents(keys: np.ndarray, frames: int, start: int, stop: int) -> np.ndarray:
    """Frames start..stop-1 of a closed walk through the K key latents, `frames` per leg.

    Frame j lies on the leg from key j // frames to the next one (the last leg
    returns to the first key, so a looping GIF has no jump); there are K*frames in all.
    """
    k = len(keys)
    out = []
    for j in range(start, stop):
        leg, f = divmod(j, frames)
        out.append(slerp(keys[leg], keys[(leg + 1) % k], f / frames))
    return np.stack(out)


def seed_file_name(seed: int) -> str:
    """seed-0007.png: zero-padded so `ls` sorts them, named by the seed (not the position)."""
    return f"seed-{seed:04d}.png"


# ----------------------------------------------------------------------------
# generating


class Sampler:
    """uint8 images from latents, always through one batch shape (see the module docstring)."""

    def __init__(self, generator, batch_size: int = DEFAULT_BATCH):
        import tensorflow as tf

        if batch_size < 1:
            raise DcganError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.latent_dim = int(generator.inputs[0].shape[-1])
        self.label_dim = int(generator.inputs[1].shape[-1]) if len(generator.inputs) > 1 else 0  # G(z, y)
        self.image_shape = tuple(int(d) for d in generator.output_shape[1:])  # (H, W, C)
        spec = tf.TensorSpec([batch_size, self.latent_dim], tf.float32)
        # One trace for the one shape: faster than eager calls, and no retracing on the last batch.
        if self.label_dim:
            y_spec = tf.TensorSpec([batch_size, self.label_dim], tf.float32)
            self._forward = tf.function(lambda z, y: generator([z, y], training=False), input_signature=[spec, y_spec])
        else:
            self._forward = tf.function(lambda z: generator(z, training=False), input_signature=[spec])

    def __call__(self, z: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """uint8 (N, H, W, C) for float32 (N, latent_dim) latents (and a conditional generator's (N, labels) y)."""
        from dcgan_cli.pixels import to_uint8

        if bool(self.label_dim) != (y is not None):
            raise DcganError("a conditional generator needs labels y, an unconditional one takes none")
        out = []
        for i in range(0, len(z), self.batch_size):
            chunk = z[i:i + self.batch_size]
            padded = np.zeros((self.batch_size, self.latent_dim), np.float32)
            padded[:len(chunk)] = chunk
            args = [padded]
            if y is not None:
                args.append(np.zeros((self.batch_size, self.label_dim), np.float32))
                args[1][:len(chunk)] = y[i:i + self.batch_size]
            out.append(to_uint8(self._forward(*args).numpy()[:len(chunk)]))
        return np.concatenate(out) if out else np.zeros((0, *self.image_shape), np.uint8)


def check_writable(path: str | Path, what: str = "file", keep: bool = True) -> None:
    """Fail now, not after generating 10,000 images, when `path` (a file, or a "dir") cannot be written.

    keep=False: remove again the folders the check created (when later checks may still refuse).
    """
    path = Path(path)
    if not str(path).strip():
        raise DcganError(f"the output path is empty ({str(path)!r}, an unset variable?); name a {what}")
    if what == "file" and path.is_dir():
        raise DcganError(f"cannot write {path}: it is a directory; name a file")
    target_dir = path if what == "dir" else path.parent
    blocker = next((p for p in [target_dir, *target_dir.parents] if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise DcganError(f"cannot write {path}: {blocker} is a file, not a folder; choose another location")
    missing = [p for p in [target_dir, *target_dir.parents] if not p.exists()]
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".dcgan-probe.", dir=target_dir)
        os.close(fd)
        os.unlink(probe)
        for made in [] if keep else [target_dir, *target_dir.parents][:len(missing)]:
            made.rmdir()
    except PermissionError:
        raise DcganError(f"cannot write {path}: permission denied; choose a writable location") from None
    except OSError as e:
        raise DcganError(f"cannot write {path}: {e.strerror or e}; choose a writable location") from None


def check_outputs(sampler: Sampler, n: int, out: str | Path | None = None, individual: str | Path | None = None,
                  nrow: int | None = None) -> None:
    """Everything that can be refused before generating: grid limits, writable places."""
    from dcgan_cli.images import check_grid_fits

    if out is None and individual is None:
        raise DcganError("nothing to write: give an output image, --individual DIR, or both")
    if out is not None:
        check_grid_fits(out, n, *sampler.image_shape, nrow)
        check_writable(out)
    if individual is not None:
        check_writable(individual, "dir")


def sample(
    sampler: Sampler,
    seeds: Seeds,
    out: str | Path | None = None,
    individual: str | Path | None = None,
    nrow: int | None = None,
    truncation: float = 1.0,
    on_progress: Callable[[int], None] | None = None,
    labels: Callable[[list[int]], np.ndarray] | None = None,
) -> int:
    """Generate one image per seed into a grid `out` and/or one PNG per seed under `individual`.
    `labels(seeds)`: a conditional generator's y for those seeds (generate/conditional.py).

    Works a batch at a time: memory is one batch of floats plus the uint8 grid
    (when one is asked for). Each file is written atomically. Returns the count.
    """
    from dcgan_cli.images import Grid, save_image

    check_truncation(truncation)
    n = len(seeds)
    check_outputs(sampler, n, out, individual, nrow)
    individual = Path(individual) if individual is not None else None
    grid = Grid(n, *sampler.image_shape, nrow) if out is not None else None

    done = 0
    it = iter(seeds)
    while chunk := list(itertools.islice(it, sampler.batch_size)):
        pixels = sampler(latents(chunk, sampler.latent_dim, truncation), labels(chunk) if labels else None)
        if individual is not None:
            for s, img in zip(chunk, pixels):
                save_image(individual / seed_file_name(s), img)
        if grid is not None:
            grid.paste(done, pixels)
        done += len(chunk)
        if on_progress:
            on_progress(len(chunk))
    if grid is not None:
        save_image(out, grid.pixels)
    return done


def interpolate(
    sampler: Sampler,
    key_seeds: list[int],
    frames: int,
    out: str | Path,
    truncation: float = 1.0,
    fps: float = 25.0,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """An animated GIF walking (slerp) through the key seeds' latents and back; returns the frame count."""
    from dcgan_cli.images import save_gif

    if len(key_seeds) < 2:
        raise DcganError("an interpolation needs at least 2 key latents")
    if frames < 1:
        raise DcganError(f"frames per leg must be at least 1, got {frames}")
    check_truncation(truncation)
    out = Path(out)
    if out.suffix.lower() != ".gif":
        raise DcganError(f"cannot write {out.name}: an interpolation is an animated GIF; name it .gif")
    check_writable(out)
    keys = latents(key_seeds, sampler.latent_dim, truncation)
    total = len(keys) * frames

    def frame_images():  # pulled lazily by Pillow while it encodes
        for start in range(0, total, sampler.batch_size):
            stop = min(total, start + sampler.batch_size)
            pixels = sampler(walk_latents(keys, frames, start, stop))
            if on_progress:
                on_progress(stop - start)
            yield from pixels

    save_gif(out, frame_images(), fps)
    return total


# ----------------------------------------------------------------------------
# which generator: a run's (newest checkpoint, or best/) or a .keras file


def check_generator_source(run: Path | None, generator: Path | None, *, ema: bool = True, best: bool = False) -> None:
    """The rules between --run, --generator, --no-ema and --best, before anything loads (UsageError)."""
    if run is not None and generator is not None:
        raise UsageError("give --run or --generator, not both", "--generator")
    if generator is not None and not ema:
        raise UsageError("a .keras file holds one set of weights; --no-ema applies to --run", "--no-ema")
    if generator is not None and best:
        raise UsageError("--best picks a run's best checkpoint; give --run (or the file RUN/best/generator.keras "
                         "as --generator)", "--best")


@dataclass
class LoadedGenerator:
    """A generator ready to run, and where it came from (for messages and results).

    Attributes:
        model: the Keras generator (latents -> images in [-1, 1]).
        source: what was loaded, for a person: the file, or the run, step and weights.
        facts: the same for a JSON result: {"model": FILE} or {"run", "checkpoint", "generator": ema|raw}.
        run_dir: the run it belongs to (a file's run when it sits in one), else None.
        newest: True when no run was named and the newest under runs_dir was taken.
        restored: the run's `RunGenerator` (its config, checkpoint), None for a file.
    """

    model: object
    source: str
    facts: dict
    run_dir: Path | None
    newest: bool = False
    restored: generator_io.RunGenerator | None = None

    def training_data(self) -> str | None:
        """The data dir the generator's run trained on, or None for a file outside any run."""
        if self.restored is not None:
            return self.restored.config.data
        return layout.load_config(self.run_dir).data if self.run_dir is not None else None


def load_generator(run: Path | None = None, generator: Path | None = None, *, ema: bool = True, best: bool = False,
                   runs_dir: str | Path = "runs", warn: Callable[[str], None] | None = None) -> LoadedGenerator:
    """The generator of `run` (its newest readable checkpoint, or RUN/best/), of the .keras file `generator`,
    or, given neither, of the newest run under `runs_dir`: what sample, stylize, evaluate and audit load."""
    check_generator_source(run, generator, ema=ema, best=best)
    if generator is not None:
        g = generator_io.load_generator_file(generator)
        return LoadedGenerator(g, str(generator), {"model": str(generator)}, layout.run_of(generator))
    newest = run is None
    run = layout.latest_run(runs_dir) if newest else Path(run)
    restored = generator_io.restore(run, ema=ema, best=best, warn=warn)
    facts = {"run": str(run), "checkpoint": restored.checkpoint_name, "generator": "ema" if restored.ema else "raw"}
    return LoadedGenerator(restored.model, restored.describe(), facts, run, newest, restored)


# ----------------------------------------------------------------------------
# what `dcgan sample` asks for


@dataclass(frozen=True)
class SampleRequest:
    """One `dcgan sample`: where the generator comes from, which seeds, what to write.

    Checked as a whole on creation, before any model loads; a contradiction or a
    malformed value raises `UsageError` naming the option at fault. `seeds`
    (the resolved `Seeds`), `psi` and `frames_per_leg` are derived.

    Attributes:
        out: the grid image, or the .gif of an interpolation.
        n: number of images (default 16; with `seed_list`, must agree with it).
        run / generator: a run directory or a generator .keras file (neither: the newest run under runs_dir).
        seed: image k uses seed `seed + k`. seed_list: exact seeds, "0-99,120".
        nrow: images per grid row. truncation: psi in (0, 1].
        individual: a folder for one PNG per seed.
        interpolate: K key latents of a looping walk; frames: frames per leg; fps: of the GIF.
        ema: the EMA weights of a run (when it kept them).
        best: the run's best checkpoint (RUN/best/, kept by --eval-every-epochs), not its newest.
        batch_size: latents per generator call.
        force: replace an existing OUT (or seed files in `individual`); without it they are refused.
        latents: a .npy file of latents (N, latent_dim) to draw instead of seeds (`dcgan project` writes one),
            or an expression over such files ("a.npy - b.npy + c.npy", each file's mean; generate/latent_math.py).
        class_name / attr: what a conditional run draws (`--class 7`, `--attr Smiling=1`; generate/conditional.py);
            on a conditional run without them, a grid with one row per class.
    """

    out: Path | None = None
    n: int | None = None
    run: Path | None = None
    generator: Path | None = None
    seed: int | None = None
    seed_list: str | None = None
    nrow: int | None = None
    truncation: float | None = None
    individual: Path | None = None
    interpolate: int | None = None
    frames: int | None = None
    fps: float = 25.0
    ema: bool = True
    best: bool = False
    batch_size: int = DEFAULT_BATCH
    runs_dir: Path = Path("runs")
    force: bool = False
    latents: Path | None = None
    class_name: str | None = None
    attr: str | None = None
    seeds: Seeds = field(init=False, repr=False)
    psi: float = field(init=False, repr=False)
    frames_per_leg: int = field(init=False, repr=False)

    def __post_init__(self):
        from dcgan_cli.images import IMAGE_FORMATS

        out = Path(self.out) if self.out is not None else None
        check_generator_source(self.run, self.generator, ema=self.ema, best=self.best)
        if self.seed is not None and self.seed_list is not None:
            raise UsageError("give --seed or --seeds, not both", "--seeds")
        for option, value, least in (("-n", self.n, 1), ("--seed", self.seed, 0), ("--nrow", self.nrow, 1),
                                     ("--interpolate", self.interpolate, 2), ("--frames", self.frames, 1),
                                     ("--batch-size", self.batch_size, 1)):
            if value is not None and value < least:
                raise UsageError(f"{value} is less than the minimum of {least}", option)
        if not 1 <= self.fps <= 100:
            raise UsageError(f"{self.fps} is not in the range 1 to 100", "--fps")
        try:
            if self.truncation is not None:
                check_truncation(self.truncation)
        except DcganError as e:
            raise UsageError(str(e), "--truncation") from None
        try:
            chosen = Seeds.parse(self.seed_list) if self.seed_list is not None else None
        except DcganError as e:
            raise UsageError(str(e), "--seeds") from None
        if self.class_name is not None and self.attr is not None:
            raise UsageError("give --class or --attr, not both (a run is conditioned on one of them)", "--attr")
        for pair in (self.attr.split(",") if self.attr is not None else []):
            if not re.fullmatch(r"\s*[^=\s][^=]*=\s*[01]\s*", pair):
                raise UsageError(f"{pair.strip()!r}: write NAME=1 (present) or NAME=0 (absent), pairs separated "
                                 f"by commas", "--attr")
        if self.interpolate is not None and (self.class_name is not None or self.attr is not None):
            raise UsageError("does not apply to --interpolate (a walk is drawn from an unconditional run)",
                             "--class" if self.class_name is not None else "--attr")
        if self.frames is not None and self.interpolate is None:
            raise UsageError("--frames applies to --interpolate K", "--frames")
        if self.latents is not None:
            for option, value in (("-n", self.n), ("--seed", self.seed), ("--seeds", self.seed_list),
                                  ("--truncation", self.truncation), ("--interpolate", self.interpolate)):
                if value is not None:
                    raise UsageError("does not apply to --latents (the file holds the latents to draw)", option)

        if self.interpolate is not None:
            for option, value in (("-n", self.n), ("--individual", self.individual), ("--nrow", self.nrow)):
                if value is not None:
                    raise UsageError("does not apply to --interpolate (the walk is K x --frames frames of one face)",
                                     option)
            if out is None or out.suffix.lower() != ".gif":
                raise UsageError("--interpolate writes an animated GIF: name the output .gif", "OUT")
            if chosen is not None and len(chosen) != self.interpolate:
                raise UsageError(f"--seeds lists {len(chosen)} seeds but --interpolate asks for {self.interpolate} "
                                 f"key latents", "--seeds")
            chosen = chosen or Seeds.count(self.seed or 0, self.interpolate)
        else:
            if out is None and self.individual is None:
                raise UsageError("give an output image, --individual DIR, or both", "OUT")
            if out is not None and out.suffix.lower() not in IMAGE_FORMATS:
                gif = " (.gif is for --interpolate)" if out.suffix.lower() == ".gif" else ""
                raise UsageError(f"cannot write {out.name}: use one of {', '.join(IMAGE_FORMATS)}{gif}", "OUT")
            if chosen is not None and self.n is not None and self.n != len(chosen):
                raise UsageError(f"-n {self.n} but --seeds lists {len(chosen)} seeds; drop -n or make them agree",
                                 "-n")
            chosen = chosen or Seeds.count(self.seed or 0, self.n or DEFAULT_COUNT)
        object.__setattr__(self, "seeds", chosen)
        object.__setattr__(self, "psi", self.truncation if self.truncation is not None else 1.0)
        object.__setattr__(self, "frames_per_leg", self.frames or DEFAULT_FRAMES)


def fulfil(req: SampleRequest, *, say: Callable[[str], None] = print, progress: bool = True) -> str:
    """Write what `req` asks for; returns the one-line summary. `say` gets where the faces come from.

    The cheap checks of where the output goes come before the model loads; the
    grid limits right after (they need the image shape). `progress`: a bar on
    stderr, when it is a terminal and the work is more than one batch.
    """
    from rich.console import Console

    from dcgan_cli.progress import Bars

    from dcgan_cli.resources import check_sampling_memory

    z = None
    if req.latents is not None:
        from dcgan_cli.generate import latent_math

        z = latent_math.evaluate(str(req.latents), read_latents) if latent_math.is_expression(str(req.latents)) \
            else read_latents(req.latents)
    if req.out is not None:
        check_writable(req.out)
    if req.individual is not None:
        check_writable(req.individual, "dir")
    if z is not None:
        return _fulfil_latents(req, z, say)
    if not req.force:
        check_not_overwriting(req.out, req.individual, req.seeds if req.interpolate is None else None)
    loaded = load_generator(req.run, req.generator, ema=req.ema, best=req.best, runs_dir=req.runs_dir,
                            warn=lambda m: say(f"Warning: {m}"))
    generator = loaded.model
    source = (f"Sampling from {loaded.source}" if loaded.restored is None else
              f"{'Using the newest run' if loaded.newest else 'Sampling from'}: {loaded.source}")
    check_sampling_memory(generator, req.batch_size)
    sampler = Sampler(generator, req.batch_size)
    labels = _labels(req, loaded, sampler)
    if sampler.label_dim and labels is None:  # a conditional run, neither --class nor --attr
        return _fulfil_class_grid(req, loaded, sampler, say)
    if req.interpolate is None:
        check_outputs(sampler, len(req.seeds), req.out, req.individual, req.nrow)
    say(source)

    interpolating = req.interpolate is not None
    total = req.interpolate * req.frames_per_leg if interpolating else len(req.seeds)
    unit = "frames" if interpolating else "images"
    with Bars(progress and total > req.batch_size, console=Console(stderr=True), transient=True,
              only_on_terminal=True) as bars:
        bar = bars.task(unit, total)
        if interpolating:
            count = interpolate(sampler, list(req.seeds), req.frames_per_leg, req.out, truncation=req.psi,
                                fps=req.fps, on_progress=bar.advance)
            return (f"Wrote a walk through seeds {req.seeds}: {count} frames ({req.frames_per_leg} per leg) "
                    f"to {req.out}")
        count = sample(sampler, req.seeds, req.out, req.individual, nrow=req.nrow, truncation=req.psi,
                       on_progress=bar.advance, labels=labels)
    places = ([str(req.out)] if req.out else []) + ([f"{req.individual}/ (one PNG per seed)"] if req.individual else [])
    return f"Wrote {count} images (seeds {req.seeds}) to {' and '.join(places)}"


def _labels(req: SampleRequest, loaded: LoadedGenerator, sampler: Sampler):
    """seeds -> y for a conditional generator asked for --class / --attr; None otherwise (checked, one line)."""
    from dcgan_cli.generate import conditional

    table = conditional.table_of(loaded.run_dir, req.generator)
    conditional.check_request(table, sampler.label_dim, req.generator or loaded.run_dir, req.class_name, req.attr)
    if not sampler.label_dim:
        return None
    if req.interpolate is not None:
        raise DcganError("--interpolate walks an unconditional run; on a conditional one use a grid with --class "
                         "or --attr")
    if req.class_name is None and req.attr is None:
        return None
    return conditional.labeller(table, req.class_name, req.attr)


def _fulfil_class_grid(req: SampleRequest, loaded: LoadedGenerator, sampler: Sampler, say) -> str:
    """A conditional run without --class / --attr: one row per class, the seeds' latents in the columns."""
    from dcgan_cli.generate import conditional
    from dcgan_cli.images import Grid, save_image

    if req.individual is not None or req.out is None:
        raise DcganError("on a conditional run, --individual needs --class or --attr (without them the output is "
                         "one grid with a row per class)")
    table = conditional.table_of(loaded.run_dir, req.generator)
    z, y, names = conditional.class_grid(table, latents(list(req.seeds), sampler.latent_dim, req.psi))
    check_outputs(sampler, len(z), req.out, None, len(req.seeds))
    say(f"Sampling from {loaded.source}")
    grid = Grid(len(z), *sampler.image_shape, len(req.seeds))
    grid.paste(0, sampler(z, y))
    save_image(req.out, grid.pixels)
    return (f"Wrote {len(names)} rows ({', '.join(names[:10])}{', ...' if len(names) > 10 else ''}) of "
            f"{len(req.seeds)} images (seeds {req.seeds}) to {req.out}")


def read_latents(path: str | Path) -> np.ndarray:
    """float32 (N, D) latents from a .npy file ((D,) is one latent); its shape is checked against a generator later.

    Checked after the cast to float32: 1e39 is finite in float64 but infinite in float32.
    """
    path = Path(path)
    if not path.is_file():
        raise DcganError(f"no latents file at {path}; name a .npy that `dcgan project` wrote (OUT/latents.npy)")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # not a .npy, truncated, pickled objects: several types
        raise DcganError(f"cannot read {path} as a .npy array ({type(e).__name__}); name the latents.npy "
                         f"that `dcgan project` wrote") from None
    if not isinstance(z, np.ndarray):  # an .npz archive: several arrays, none of them chosen
        z.close()
        raise DcganError(f"{path} is an .npz archive, not one array; save the latents with np.save as a .npy, "
                         f"shape (N, latent_dim)")
    shape = z.shape
    with np.errstate(over="ignore", invalid="ignore"):
        z32 = z.astype(np.float32) if np.issubdtype(z.dtype, np.number) and not np.iscomplexobj(z) else None
    if (z32 is None or z.ndim not in (1, 2) or z.size == 0 or not np.all(np.isfinite(z32))):
        raise DcganError(f"{path} holds an array of shape {shape} ({z.dtype}); latents are numbers finite in "
                         f"float32 (|z| < 3.4e38) of shape (N, latent_dim)")
    return z32[None] if z32.ndim == 1 else z32


def check_latents(z: np.ndarray, latent_dim: int, path) -> None:
    if z.shape[1] != latent_dim:
        raise DcganError(f"{path} holds {z.shape[1]}-dim latents (shape {z.shape}) but this generator takes "
                         f"{latent_dim}-dim ones, shape (N, {latent_dim}); project the photos with this run")


def latent_file_name(i: int) -> str:
    """latent-0003.png: the image of row 3 of a latents file."""
    return f"latent-{i:04d}.png"


def _fulfil_latents(req: SampleRequest, z: np.ndarray, say: Callable[[str], None]) -> str:
    """`dcgan sample --latents FILE`: one image per row of the file, into the grid and/or --individual."""
    from dcgan_cli.images import Grid, save_image
    from dcgan_cli.resources import check_sampling_memory

    if not req.force:
        check_not_overwriting(req.out, None, None)
        taken = [latent_file_name(i) for i in range(len(z)) if req.individual is not None
                 and (Path(req.individual) / latent_file_name(i)).exists()]
        if taken:
            raise DcganError(f"{req.individual} already holds {taken[0]}; pass --force to replace it, or choose "
                             f"another folder")
    loaded = load_generator(req.run, req.generator, ema=req.ema, best=req.best, runs_dir=req.runs_dir,
                            warn=lambda m: say(f"Warning: {m}"))
    check_sampling_memory(loaded.model, req.batch_size)
    sampler = Sampler(loaded.model, req.batch_size)
    check_latents(z, sampler.latent_dim, req.latents)
    labels = _labels(req, loaded, sampler)
    if sampler.label_dim and labels is None:
        raise DcganError("a conditional run draws latents for a class or attributes: add --class or --attr")
    check_outputs(sampler, len(z), req.out, req.individual, req.nrow)
    say(f"Sampling from {loaded.source}")
    pixels = sampler(z, labels(list(range(len(z)))) if labels else None)
    if req.individual is not None:
        for i, img in enumerate(pixels):
            save_image(Path(req.individual) / latent_file_name(i), img)
    if req.out is not None:
        grid = Grid(len(z), *sampler.image_shape, req.nrow)
        grid.paste(0, pixels)
        save_image(req.out, grid.pixels)
    places = ([str(req.out)] if req.out else []) + ([f"{req.individual}/ (latent-NNNN.png)"] if req.individual else [])
    from dcgan_cli.generate.latent_math import is_expression

    what = f"each term's mean latent, then {req.latents}, the last" if is_expression(str(req.latents)) else \
        f"the latents of {req.latents}"
    return f"Wrote {len(z)} images ({what}) to {' and '.join(places)}"


def check_not_overwriting(out: str | Path | None, individual: str | Path | None, seeds: Seeds | None) -> None:
    """Refuse to replace an existing OUT, or seed files already in `individual`, without --force."""
    if out is not None and (Path(out).exists() or Path(out).is_symlink()):
        raise DcganError(f"{out} already exists; pass --force to replace it, or choose another name")
    if individual is not None and seeds is not None and Path(individual).is_dir():
        taken = []
        for p in Path(individual).iterdir():
            m = re.fullmatch(r"seed-(\d+)\.png", p.name)
            if m and any(int(m.group(1)) in r for r in seeds.ranges):
                taken.append(p.name)
                break
        if taken:
            raise DcganError(f"{individual} already holds images of these seeds ({taken[0]}, ...); pass --force "
                             f"to replace them, or choose another folder")


# ----------------------------------------------------------------------------
# export


def check_export_target(out: str | Path, fmt: str | None = None, force: bool = False) -> str:
    """The format `out` will be written in, after refusing what must not be overwritten.

    The format defaults to `keras` for a name ending in .keras and `savedmodel`
    otherwise. An existing output is replaced only with `force`, and only when
    it is of the kind being written (never an unrelated file or folder).
    """
    from dcgan_cli.generate import tflite

    out = Path(out)
    fmt = fmt or {".keras": "keras", ".tflite": "tflite"}.get(out.suffix, "savedmodel")
    if fmt not in EXPORT_FORMATS:
        raise DcganError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    for kind, name, suffix in (("keras", "Keras", ".keras"), ("tflite", "TFLite", ".tflite")):
        if fmt == kind and out.suffix != suffix:
            raise DcganError(f"a {name} model file must end in {suffix}; name it {out.with_suffix(suffix).name} "
                             f"or use --format savedmodel")
    if out.exists() or out.is_symlink():
        ours = {"keras": generator_io.is_generator_file, "tflite": tflite.is_tflite_file}.get(
            fmt, lambda o: (o / "saved_model.pb").is_file())(out)
        if not ours:
            raise DcganError(f"{out} already exists and is not a {fmt} export; choose another path")
        if not force:
            raise DcganError(f"{out} already exists; pass --force to replace it")
    check_writable(out.parent, "dir")
    return fmt


def export(run: generator_io.RunGenerator, out: str | Path, fmt: str | None = None, force: bool = False,
           quantize: str | None = None) -> tuple[Path, str]:
    """Write a run's generator as a .keras file, a TF SavedModel or a .tflite file; returns (path, format)."""
    from dcgan_cli.generate import conditional, tflite

    out = Path(out)
    fmt = check_export_target(out, fmt, force)
    table = conditional.table_of(run.run_dir, None)  # a conditional run's label names travel with the export
    if fmt == "keras":
        generator_io.save_generator(run.model, out)
        if table is not None:
            table.save(out.with_suffix(conditional.LABELS_SUFFIX))
    elif fmt == "tflite":
        if table is not None:
            raise DcganError(f"{run.run_dir} is a conditional run: --format tflite exports a generator of z alone; "
                             f"export it as keras or savedmodel (they take z and y)")
        tflite.write(savedmodel_module(run.model), out, quantize)
    else:
        _write_savedmodel(run.model, out, table)
    return out, fmt


def savedmodel_module(generator):
    """A tf.Module serving the generator: float32 latents (None, latent_dim) -> uint8 images (None, H, W, C).

    Needs nothing of this package (or Keras) to call once saved: the pixels are
    rounded with the same round-half-to-even as `to_uint8`.
    """
    import tensorflow as tf

    from dcgan_cli.pixels import to_uint8_tensor

    nz = int(generator.inputs[0].shape[-1])
    ny = int(generator.inputs[1].shape[-1]) if len(generator.inputs) > 1 else 0  # a conditional G(z, y)
    h, w, c = (int(d) for d in generator.output_shape[1:])

    class GeneratorServing(tf.Module):
        def __init__(self):
            super().__init__(name="dcgan_generator")
            self.generator = generator
            # Shapes a caller can read back after tf.saved_model.load.
            self.latent_dim = tf.Variable(nz, trainable=False, name="latent_dim")
            self.image_shape = tf.Variable([h, w, c], trainable=False, name="image_shape")

        @tf.function(input_signature=[tf.TensorSpec([None, nz], tf.float32, name="latent")])
        def __call__(self, latent):
            x = self.generator(latent, training=False)  # [-1, 1]
            images = to_uint8_tensor(x)
            return {"images": images}

    class ConditionalServing(GeneratorServing):
        @tf.function(input_signature=[tf.TensorSpec([None, nz], tf.float32, name="latent"),
                                      tf.TensorSpec([None, ny], tf.float32, name="labels")])
        def __call__(self, latent, labels):
            return {"images": to_uint8_tensor(self.generator([latent, labels], training=False))}

    return ConditionalServing() if ny else GeneratorServing()


def _write_savedmodel(generator, out: Path, table=None) -> None:
    """Save into a temp folder beside `out`, then rename it into place (the old one kept until then).
    A conditional run's LabelTable goes inside as labels.json."""
    import tensorflow as tf

    module = savedmodel_module(generator)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    from dcgan_cli.fsutil import current_umask

    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 would hide the model from a serving user
    old = None
    try:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.__call__.get_concrete_function()})
        if table is not None:
            from dcgan_cli.generate.conditional import SAVEDMODEL_LABELS

            table.save(tmp / SAVEDMODEL_LABELS)
        for root, _, files in os.walk(tmp):  # durable before it becomes visible
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    os.fsync(f.fileno())
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        if old is not None and not out.exists():
            os.replace(old, out)
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
