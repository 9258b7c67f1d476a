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
newest checkpoint (the EMA weights when the run kept them), so sampling works
mid-training as well as after it.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Callable, Iterable, Iterator

import numpy as np

from dcgan_cli.config import TrainConfig
from dcgan_cli.errors import DcganError

DEFAULT_BATCH = 64
EXPORT_FORMATS = ("keras", "savedmodel")
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
# loading generators


@dataclass
class RunGenerator:
    """A generator restored from a run, and what it is (for the messages)."""

    model: object
    config: TrainConfig
    run_dir: Path
    checkpoint: str
    ema: bool  # True when these are the EMA weights

    @property
    def step(self) -> int | None:
        m = re.search(r"ckpt-(\d+)$", self.checkpoint)
        return int(m.group(1)) if m else None

    def describe(self) -> str:
        weights = "EMA weights" if self.ema else "raw weights"
        return f"{self.run_dir} at step {self.step} ({weights})"


def restore_run(run_dir: str | Path, ema: bool = True) -> RunGenerator:
    """The generator of a run's newest readable checkpoint; the EMA one when the run kept it and `ema`."""
    import tensorflow as tf

    from dcgan_cli.model import build_generator
    from dcgan_cli.training import CKPT_DIR, CONFIG_FILE

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise DcganError(f"{run_dir} is not a run directory (no {CONFIG_FILE}); pass a folder under runs/")
    cfg = TrainConfig.load(run_dir / CONFIG_FILE)
    manager_dir = run_dir / CKPT_DIR
    state = tf.train.get_checkpoint_state(str(manager_dir)) if manager_dir.is_dir() else None
    paths = list(state.all_model_checkpoint_paths) if state else []
    if not paths:
        raise DcganError(f"{run_dir} has no checkpoint yet; train it (`dcgan train --resume {run_dir}`) first")
    # Stock Keras layers (not training's FusedBatchNorm, which holds the same weights under the
    # same names): inference is the same, and an exported .keras then loads without this package.
    g = build_generator(cfg.image_size, cfg.channels, cfg.latent_dim, cfg.g_filters, cfg.init_std, fast=False)
    use_ema = ema and cfg.ema > 0
    key = "g_ema" if use_ema else "generator"  # the names GAN.checkpoint() saves under
    last_error = None
    for path in reversed(paths):
        try:
            tf.train.Checkpoint(**{key: g}).restore(path).expect_partial().assert_existing_objects_matched()
            return RunGenerator(g, cfg, run_dir, path, use_ema)
        except Exception as e:  # a corrupt newest checkpoint: fall back to the previous one
            last_error = e
    raise DcganError(f"no checkpoint of {run_dir} could be read ({type(last_error).__name__}); "
                     f"the run's checkpoints are damaged")


def load_generator(run_dir: str | Path, ema: bool = True):
    """(generator, config) from a run directory's newest checkpoint."""
    run = restore_run(run_dir, ema)
    return run.model, run.config


def load_model_file(path: str | Path):
    """A generator saved as .keras (a run's generator.keras or `dcgan export`), checked to be one."""
    path = Path(path)
    if not path.is_file():
        raise DcganError(f"no model file at {path}; pass a run's generator.keras or one from `dcgan export`")
    if path.suffix != ".keras":
        raise DcganError(f"{path.name} is not a .keras file; pass a generator saved as .keras "
                         f"(a run's generator.keras, or `dcgan export RUN OUT.keras`)")
    import keras

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # a zip that is not a Keras archive, or one from an unknown Keras: several types
        first_line = (str(e).strip().splitlines() or [""])[0][:160]
        raise DcganError(f"cannot read {path} as a Keras model ({type(e).__name__}: {first_line}); "
                         f"pass a generator saved by `dcgan train` or `dcgan export`") from None
    check_generator(model, path)
    return model


def check_generator(model, where) -> None:
    """A generator maps (None, latent_dim) to (None, H, W, 1 or 3); refuse anything else by name."""
    ins = [tuple(t.shape) for t in getattr(model, "inputs", None) or []]
    outs = [tuple(t.shape) for t in getattr(model, "outputs", None) or []]
    if len(ins) == 1 and len(ins[0]) == 2 and len(outs) == 1 and len(outs[0]) == 4 and outs[0][-1] in (1, 3):
        return
    shapes = f"it maps {', '.join(map(str, ins)) or 'nothing'} to {', '.join(map(str, outs)) or 'nothing'}"
    raise DcganError(f"{where} is not a generator ({shapes}); a generator maps latents (None, latent_dim) "
                     f"to images (None, H, W, C): pass a run's generator.keras")


# ----------------------------------------------------------------------------
# generating


class Sampler:
    """uint8 images from latents, always through one batch shape (see the module docstring)."""

    def __init__(self, generator, batch_size: int = DEFAULT_BATCH):
        import tensorflow as tf

        if batch_size < 1:
            raise DcganError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.latent_dim = int(generator.input_shape[-1])
        self.image_shape = tuple(int(d) for d in generator.output_shape[1:])  # (H, W, C)
        spec = tf.TensorSpec([batch_size, self.latent_dim], tf.float32)
        # One trace for the one shape: faster than eager calls, and no retracing on the last batch.
        self._forward = tf.function(lambda z: generator(z, training=False), input_signature=[spec])

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) for float32 (N, latent_dim) latents, N of any size."""
        from dcgan_cli.images import to_uint8

        out = []
        for i in range(0, len(z), self.batch_size):
            chunk = z[i:i + self.batch_size]
            padded = np.zeros((self.batch_size, self.latent_dim), np.float32)
            padded[:len(chunk)] = chunk
            out.append(to_uint8(self._forward(padded).numpy()[:len(chunk)]))
        return np.concatenate(out) if out else np.zeros((0, *self.image_shape), np.uint8)


def check_writable(path: str | Path, what: str = "file") -> None:
    """Fail now, not after generating 10,000 images, when `path` (a file, or a "dir") cannot be written."""
    path = Path(path)
    if what == "file" and path.is_dir():
        raise DcganError(f"cannot write {path}: it is a directory; name a file")
    target_dir = path if what == "dir" else path.parent
    blocker = next((p for p in [target_dir, *target_dir.parents] if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise DcganError(f"cannot write {path}: {blocker} is a file, not a folder; choose another location")
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".dcgan-probe.", dir=target_dir)
        os.close(fd)
        os.unlink(probe)
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
) -> int:
    """Generate one image per seed into a grid `out` and/or one PNG per seed under `individual`.

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
        pixels = sampler(latents(chunk, sampler.latent_dim, truncation))
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


def sample_grid(generator, seeds, out: str | Path, nrow: int | None = None, batch_size: int = DEFAULT_BATCH) -> Path:
    """A grid of one image per seed from a generator model (the simple entry point)."""
    seeds = seeds if isinstance(seeds, Seeds) else Seeds([range(s, s + 1) for s in seeds])
    sample(Sampler(generator, batch_size), seeds, out, nrow=nrow)
    return Path(out)


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
# export


def check_export_target(out: str | Path, fmt: str | None = None, force: bool = False) -> str:
    """The format `out` will be written in, after refusing what must not be overwritten.

    The format defaults to `keras` for a name ending in .keras and `savedmodel`
    otherwise. An existing output is replaced only with `force`, and only when
    it is of the kind being written (never an unrelated file or folder).
    """
    out = Path(out)
    fmt = fmt or ("keras" if out.suffix == ".keras" else "savedmodel")
    if fmt not in EXPORT_FORMATS:
        raise DcganError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "keras" and out.suffix != ".keras":
        raise DcganError(f"a Keras model file must end in .keras; name it {out.with_suffix('.keras').name} "
                         f"or use --format savedmodel")
    if out.exists() or out.is_symlink():
        ours = out.is_file() and out.suffix == ".keras" if fmt == "keras" else (out / "saved_model.pb").is_file()
        if not ours:
            raise DcganError(f"{out} already exists and is not a {fmt} export; choose another path")
        if not force:
            raise DcganError(f"{out} already exists; pass --force to replace it")
    check_writable(out.parent, "dir")
    return fmt


def export(run: RunGenerator, out: str | Path, fmt: str | None = None, force: bool = False) -> tuple[Path, str]:
    """Write a run's generator as a .keras file or a TF SavedModel; returns (path, format)."""
    out = Path(out)
    fmt = check_export_target(out, fmt, force)
    if fmt == "keras":
        from dcgan_cli.fsutil import atomic_path

        with atomic_path(out) as tmp:
            run.model.save(tmp)
    else:
        _write_savedmodel(run.model, out)
    return out, fmt


def savedmodel_module(generator):
    """A tf.Module serving the generator: float32 latents (None, latent_dim) -> uint8 images (None, H, W, C).

    Needs nothing of this package (or Keras) to call once saved: the pixels are
    rounded with the same round-half-to-even as `to_uint8`.
    """
    import tensorflow as tf

    nz = int(generator.input_shape[-1])
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
            images = tf.cast(tf.clip_by_value(tf.round((x + 1.0) * 127.5), 0.0, 255.0), tf.uint8)
            return {"images": images}

    return GeneratorServing()


def _write_savedmodel(generator, out: Path) -> None:
    """Save into a temp folder beside `out`, then rename it into place (the old one kept until then)."""
    import tensorflow as tf

    module = savedmodel_module(generator)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    from dcgan_cli.fsutil import current_umask

    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 would hide the model from a serving user
    old = None
    try:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.__call__.get_concrete_function()})
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
