"""The `dcgan` command line: parse, build a config, call the library, print.

Kept thin on purpose: the work happens in the modules it calls. TensorFlow is
imported inside the commands, never here, so `dcgan --help` answers at once.
Library errors (`DcganError`) become one `Error: ...` line and exit code 1, in
one place (`_App.command`); usage errors exit 2 (Typer's own).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from dcgan_cli.config import Precision, Preset, Strategy
from dcgan_cli.errors import DcganError, UsageError
from dcgan_cli.evaluate import METRICS
from dcgan_cli.preprocess.decoding import CROP_HELP, Crop
from dcgan_cli.preprocess.sources import Split
from dcgan_cli.sampling import ExportFormat
from dcgan_cli.shards import SIZE_RULE, SIZES

# Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _App(typer.Typer):
    """A Typer app whose commands turn `DcganError` into a one-line error."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)

        def decorator(f):
            @functools.wraps(f)
            def wrapper(*a, **kw):
                from dcgan_cli.training import TrainingInterrupted

                if name_needs_tf(f.__name__):
                    import_tensorflow()
                try:
                    return f(*a, **kw)
                except UsageError as e:
                    raise typer.BadParameter(str(e), param_hint=f"'{e.option}'") from None
                except DcganError as e:
                    typer.echo(f"Error: {e}", err=True)
                    raise typer.Exit(1) from None
                except TrainingInterrupted as e:
                    typer.echo(str(e), err=True)
                    raise typer.Exit(130) from None

            return register(wrapper)

        return decorator


def name_needs_tf(command: str) -> bool:
    return command not in {"download"}


def import_tensorflow():
    from dcgan_cli.tfutil import import_tensorflow as quiet_import

    quiet_import()


app = _App(
    name="dcgan",
    help="Teach a machine to draw faces: download, preprocess, train and sample a DCGAN.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DataDir = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help="Data root (default ./data, or $DCGAN_DATA_DIR).", show_default=False),
]
RunsDir = Annotated[Path, typer.Option("--runs-dir", help="Where numbered run directories live.")]


def _data_dir(data_dir: Optional[Path]) -> Path:
    from dcgan_cli.datasets import default_data_dir

    return data_dir or default_data_dir()


# ----------------------------------------------------------------------------
# download


@app.command()
def download(
    dataset: Annotated[str, typer.Argument(help="celeba, lfw-sample, or the http(s) URL of a zip/tar archive of "
                                                "images (see --list).", show_default=False)] = "",
    data_dir: DataDir = None,
    url: Annotated[Optional[list[str]], typer.Option(
        "--url", help="Mirror to use instead of the built-in ones (repeatable; tried in order).",
        show_default=False)] = None,
    archive: Annotated[Optional[list[Path]], typer.Option(
        "--archive", exists=True, dir_okay=False, help="An archive (or annotation file) you already downloaded, "
        "e.g. in a browser; verified like a download, never modified (repeatable).", show_default=False)] = None,
    sha256: Annotated[Optional[str], typer.Option(help="For a URL: the archive's SHA-256, checked.",
                                                  show_default=False)] = None,
    md5: Annotated[Optional[str], typer.Option(help="For a URL: the archive's MD5, checked.",
                                               show_default=False)] = None,
    name: Annotated[Optional[str], typer.Option(help="For a URL: the folder under the data dir (default: the "
                                                     "archive's stem).", show_default=False)] = None,
    no_checksum: Annotated[bool, typer.Option("--no-checksum", help="Accept an --archive whose checksum is not the "
                                              "published one (Kaggle's re-packed CelebA); the image count is still "
                                              "checked.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Redo: re-verify the downloads (fetching any that fail), "
                                        "extract again and replace the folder.")] = False,
    retries: Annotated[int, typer.Option(min=0, help="Retries per mirror after a timeout, a dropped connection or "
                                                     "a 5xx, with exponential backoff.")] = 5,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for a connection or for data.")] = 30.0,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the known data sets and exit.")] = False,
):
    """Fetch a data set into the data dir: resumable, verified, safely extracted.

    Mirrors are tried in order; a Google Drive confirmation page is followed, a
    quota page moves on to the next mirror. A second run does nothing once the
    data set is complete (--force redoes it).

    Example: dcgan download celeba --data-dir data
    """
    from dcgan_cli import datasets
    from dcgan_cli.datasets.http import HttpOptions
    from dcgan_cli.datasets.progress import Ui

    if list_ or not dataset:
        for d in datasets.DATASETS.values():
            typer.echo(f"{d.name:12s} {d.size:>8s}  {d.description}\n{'':23s}from {d.source}")
        typer.echo(f"{'URL':12s} {'':8s}  any http(s) zip/tar of images: dcgan download URL [--sha256 HEX] [--name NAME]")
        return
    if datasets.is_url(dataset):
        ds = datasets.from_url(dataset, name=name, sha256=sha256, md5=md5)
    else:
        if sha256 or md5 or name:
            raise typer.BadParameter("--sha256, --md5 and --name apply to a URL; known data sets carry their own",
                                     param_hint="DATASET")
        ds = datasets.get(dataset)
    root = _data_dir(data_dir)
    try:
        result = datasets.fetch(ds, root, force=force, urls=url or (), archives=archive or (),
                                no_checksum=no_checksum, http=HttpOptions(retries=retries, timeout=timeout),
                                ui=Ui(quiet=quiet))
    except KeyboardInterrupt:
        typer.echo("Interrupted: run the same command again to resume the download.", err=True)
        raise typer.Exit(130) from None
    where = datasets.image_dir(ds.name, root) if ds.name in datasets.DATASETS else result.path
    count = f"{result.images:,} images in " if result.images is not None else ""
    if result.already:
        typer.echo(f"{ds.name} is already complete: {count}{where} (nothing downloaded; --force redoes it)")
        return
    typer.echo(f"{ds.name} is ready: {count}{where}")
    for f in result.files if datasets.is_url(ds.source) and not (sha256 or md5) else []:
        typer.echo(f"SHA-256 of {f['filename']}: {f['sha256']} (pass it as --sha256 to pin this archive)")
    known = ds.name in datasets.DATASETS
    typer.echo(f"Next: dcgan preprocess {ds.name if known else result.path}"
               + (f" --data-dir {root}" if known and data_dir else ""))


# ----------------------------------------------------------------------------
# preprocess


@app.command()
def preprocess(
    source: Annotated[str, typer.Argument(
        metavar="SOURCE", help="A data set name under the data dir (celeba, lfw-sample), a folder of images "
                               "(searched recursively) or a .zip of images.")],
    out: Annotated[Optional[str], typer.Option(help="Output dir, local or gs:// (default "
                                                    "DATA_DIR/processed/SOURCE-SIZE).", show_default=False)] = None,
    size: Annotated[int, typer.Option(help=f"Output side: {SIZE_RULE}.")] = 64,
    crop: Annotated[Optional[Crop], typer.Option(help="; ".join(f"{k}: {v}" for k, v in CROP_HELP.items())
                                                 + ". Default: celeba for CelebA, else center.",
                                                 show_default=False)] = None,
    crop_size: Annotated[int, typer.Option(min=0, help="Side of the crop box (0: 108 for celeba, the largest "
                                                       "square for center).")] = 0,
    channels: Annotated[int, typer.Option(help="3 (RGB) or 1 (grayscale).")] = 3,
    split: Annotated[Split, typer.Option(help="train: CelebA's training partition (list_eval_partition.txt).")
                     ] = Split.ALL,
    workers: Annotated[int, typer.Option(min=0, help="Decoding processes (0: one per CPU core).")] = 0,
    limit: Annotated[int, typer.Option(min=0, help="Use only the first N images (0: all).")] = 0,
    shard_mb: Annotated[float, typer.Option(min=0.001, help="Target shard size in MB.")] = 128.0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing complete output.")] = False,
    data_dir: DataDir = None,
):
    """Crop and resize images once into training shards (resumable).

    Bad files are skipped and listed in OUT/skipped.txt; an interrupted run
    resumes when run again with the same settings.

    Example: dcgan preprocess celeba --size 64 --split train
    """
    from dcgan_cli.preprocess import CELEBA_NAMES, PreprocessConfig, resolve_source
    from dcgan_cli.preprocess import preprocess as run

    if size not in SIZES:
        raise typer.BadParameter(f"use {SIZE_RULE}", param_hint="'--size'")
    if channels not in (3, 1):
        raise typer.BadParameter("choose one of 3, 1", param_hint="'--channels'")
    if crop_size and crop_size < size:
        raise typer.BadParameter(f"{crop_size} is smaller than --size {size}, so every image would be upscaled",
                                 param_hint="'--crop-size'")

    root = _data_dir(data_dir)
    src, name = resolve_source(source, root)
    crop = crop.value if crop else ("celeba" if name in CELEBA_NAMES else "center")
    out = out or str(root / "processed" / f"{name}-{size}")
    cfg = PreprocessConfig(source=str(src), out=out, size=size, crop=crop, crop_size=crop_size, channels=channels,
                           split=split.value, workers=workers, limit=limit, force=force, shard_mb=shard_mb)
    log = functools.partial(typer.echo, err=True)
    try:
        from rich.console import Console

        from dcgan_cli.progress import Bars

        with Bars(console=Console(stderr=True), transient=True, only_on_terminal=True) as bars:
            task = bars.task("preprocess", None)
            m = run(cfg, progress=lambda done, total: task.update(completed=done, total=total), log=log)
    except KeyboardInterrupt:
        typer.echo(f"Interrupted. The shards written so far are kept in {out}; run the same command again "
                   f"to resume.", err=True)
        raise typer.Exit(130) from None
    if m.get("up_to_date"):
        typer.echo(f"{out} is already up to date ({m['count']} images, same settings and files); "
                   f"pass --force to redo it")
        return
    extra = f", {m['small']} smaller than the crop or upscaled (see small.txt)" if m["small"] else ""
    typer.echo(f"{m['count']} images ({m['skipped']} skipped, see skipped.txt{extra}) -> {out}")


# ----------------------------------------------------------------------------
# train


@app.command()
def train(
    data: Annotated[Optional[Path], typer.Option(help="Preprocessed data dir (holds manifest.json).")] = None,
    preset: Annotated[Preset, typer.Option(help="Recipe to start from (flags override it).")] = Preset.dcgan,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs to train (may be raised on --resume).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Global batch size.")] = None,
    steps_per_epoch: Annotated[Optional[int], typer.Option(min=0, help="Steps per epoch (0: one pass).")] = None,
    lr_g: Annotated[Optional[float], typer.Option(help="Generator learning rate.")] = None,
    lr_d: Annotated[Optional[float], typer.Option(help="Discriminator learning rate.")] = None,
    beta1: Annotated[Optional[float], typer.Option(help="Adam beta1.")] = None,
    latent_dim: Annotated[Optional[int], typer.Option(min=1, help="Size of the noise z.")] = None,
    g_filters: Annotated[Optional[int], typer.Option(min=1, help="Generator width (ngf).")] = None,
    d_filters: Annotated[Optional[int], typer.Option(min=1, help="Discriminator width (ndf).")] = None,
    ema: Annotated[Optional[float], typer.Option(help="EMA decay of G's weights, e.g. 0.999 (0: off).")] = None,
    alternate: Annotated[Optional[bool], typer.Option("--alternate/--shared-step", help=(
        "Update D, then G through the updated D (better samples; dcgan preset), or both from one "
        "forward pass (about 10% faster)."), show_default=False)] = None,
    label_smoothing: Annotated[Optional[float], typer.Option(help="Real labels ~ U(1-s, 1).")] = None,
    instance_noise: Annotated[Optional[float], typer.Option(help="Noise on real images, std ~ U(0, s).")] = None,
    flip: Annotated[Optional[bool], typer.Option("--flip/--no-flip", help="Random horizontal flips.",
                                                 show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of weights, noise and data order.")] = None,
    precision: Annotated[Optional[Precision], typer.Option(help="Compute precision (auto: by hardware).",
                                                           show_default=False)] = None,
    xla: Annotated[Optional[bool], typer.Option("--xla/--no-xla", help="Compile the step with XLA.",
                                                show_default=False)] = None,
    strategy: Annotated[Optional[Strategy], typer.Option(help="tf.distribute strategy.", show_default=False)] = None,
    sync_bn: Annotated[Optional[bool], typer.Option("--sync-bn/--no-sync-bn", help="Synchronised batch norm.",
                                                    show_default=False)] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(min=0, help="Also checkpoint every N steps.")] = None,
    cache: Annotated[Optional[bool], typer.Option("--cache/--no-cache", help="Keep the data in memory.",
                                                  show_default=False)] = None,
    eval_every: Annotated[Optional[int], typer.Option(min=0, help="Score FID/KID every N epochs and keep the "
                                                                  "best checkpoint in RUN/best/ (0: never).")] = None,
    eval_samples: Annotated[Optional[int], typer.Option(min=2, help="Generated images per evaluation "
                                                                    "(FID needs 2048 or more).")] = None,
    runs_dir: RunsDir = Path("runs"),
    name: Annotated[str, typer.Option(help="Suffix for the run directory's name.")] = "",
    resume: Annotated[Optional[Path], typer.Option(help="Continue this run directory.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved config and exit.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="One log line per epoch, no progress bar.")] = False,
    data_dir: DataDir = None,
):
    """Train a DCGAN, writing checkpoints and a sample grid every epoch.

    Example: dcgan train --data data/processed/celeba-64 --epochs 25
    """
    from dcgan_cli.config import PRESETS, preset as make_preset
    from dcgan_cli.shards import find_data, load_manifest

    overrides = dict(
        epochs=epochs, batch_size=batch_size, steps_per_epoch=steps_per_epoch, lr_g=lr_g, lr_d=lr_d, beta1=beta1,
        latent_dim=latent_dim, g_filters=g_filters, d_filters=d_filters, ema=ema, alternate=alternate, label_smoothing=label_smoothing,
        instance_noise=instance_noise, flip=flip, seed=seed, precision=precision and precision.value, xla=xla,
        strategy=strategy and strategy.value,
        sync_bn=sync_bn, checkpoint_every=checkpoint_every, cache=cache, eval_every=eval_every,
        eval_samples=eval_samples)
    given = {k: v for k, v in overrides.items() if v is not None}

    if resume is not None:
        from dcgan_cli.rundir import resume_config

        cfg = resume_config(resume, **given, data=str(data) if data else None)  # the resume rule
    else:
        preset = preset.value
        data = data or find_data(_data_dir(data_dir), PRESETS[preset].get("image_size"))
        manifest = load_manifest(data)
        shape = {"image_size": manifest["size"], "channels": manifest["channels"]}
        shape = {k: v for k, v in shape.items() if k not in PRESETS[preset]}
        cfg = make_preset(preset, data=str(data), runs_dir=str(runs_dir), run_name=name, **shape, **given)

    if dry_run:
        typer.echo(cfg.to_json(), nl=False)
        return
    from dcgan_cli.training import train as run

    run_dir = run(cfg, resume, resume=resume is not None, quiet=quiet)  # checks resume and --eval-every itself
    typer.echo(f"Run directory: {run_dir}")


# ----------------------------------------------------------------------------
# sample


@app.command()
def sample(
    out: Annotated[Optional[Path], typer.Argument(
        help="Grid image (.png, .jpg or .webp); an animated .gif with --interpolate. "
             "May be left out with --individual.", show_default=False)] = None,
    n: Annotated[Optional[int], typer.Option("-n", "--num", min=1, show_default=False,
                                             help="Number of images (default 16; with --seeds, how many it lists).")] = None,
    run: Annotated[Optional[Path], typer.Option(help="Run directory (default: the newest under --runs-dir).")] = None,
    model: Annotated[Optional[Path], typer.Option(help="A generator .keras file instead of a run.")] = None,
    seed: Annotated[Optional[int], typer.Option(min=0, show_default=False,
                                                help="Image k uses seed S+k (default 0): same seed, same image.")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Exact seeds, as ranges and lists: 0-99,120,200-210.")] = None,
    nrow: Annotated[Optional[int], typer.Option(min=1, help="Images per row (default: near-square).")] = None,
    truncation: Annotated[Optional[float], typer.Option(
        metavar="PSI", help="0 < PSI <= 1: draw latents from the central PSI of the normal; "
                            "trades variety for typical, cleaner faces (try 0.7).")] = None,
    individual: Annotated[Optional[Path], typer.Option(
        metavar="DIR", help="Also write one PNG per image into DIR, named by seed (seed-0007.png).")] = None,
    interpolate: Annotated[Optional[int], typer.Option(
        min=2, metavar="K", help="Walk through K latents (slerp) and back, into an animated OUT.gif.")] = None,
    frames: Annotated[Optional[int], typer.Option(min=1, help="Frames per leg of the walk (default 24).",
                                                  show_default=False)] = None,
    fps: Annotated[float, typer.Option(min=1, max=100, help="Frames per second of the GIF.")] = 25.0,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Use the raw generator, not its EMA.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Latents per generator call (memory vs speed).")] = 64,
    runs_dir: RunsDir = Path("runs"),
):
    """Write faces from a trained generator: a grid, one file per seed, or a latent walk.

    Image k comes from its seed alone, so the same seed and model give the same
    bytes, and --seeds 7 draws the same face as seed 7 inside --seeds 0-99.

    Example: dcgan sample -n 16 out.png --seed 42
    """
    from dcgan_cli import sampling

    request = sampling.SampleRequest(  # every cross-option check, before any model loads (usage errors)
        out=out, n=n, run=run, model=model, seed=seed, seed_list=seeds, nrow=nrow, truncation=truncation,
        individual=individual, interpolate=interpolate, frames=frames, fps=fps, ema=not no_ema,
        batch_size=batch_size, runs_dir=runs_dir)
    typer.echo(sampling.fulfil(request, say=lambda m: typer.echo(m, err=True)))


# ----------------------------------------------------------------------------
# export


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="Run directory to export the generator of.")],
    out: Annotated[Path, typer.Argument(help="OUT.keras, or a new folder for the SavedModel.")],
    format_: Annotated[Optional[ExportFormat], typer.Option(
        "--format", help="Default: keras for a name ending in .keras, else savedmodel.", show_default=False)] = None,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Export the raw generator, not its EMA.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing export at OUT.")] = False,
):
    """Export a run's generator as a .keras file or a TensorFlow SavedModel.

    The SavedModel's serving_default signature takes `latent` (float32
    [N, latent_dim]) and returns `images` (uint8 [N, H, W, C]);
    tf.saved_model.load calls it without this package.

    Example: dcgan export runs/00003-celeba-64-dcgan generator_savedmodel
    """
    from dcgan_cli import sampling

    format_ = format_.value if format_ is not None else None
    from dcgan_cli import rundir

    sampling.check_export_target(out, format_, force)  # before the slow part
    restored = rundir.restore(run_dir, ema=not no_ema, warn=lambda m: typer.echo(f"Warning: {m}", err=True))
    path, fmt = sampling.export(restored, out, format_, force=force)
    cfg = restored.config
    nz, h, w, c = cfg.latent_dim, cfg.image_size, cfg.image_size, cfg.channels
    if fmt == "keras":
        typer.echo(f"Exported the generator of {restored.describe()} to {path} "
                   f"(keras.saving.load_model; latents [N, {nz}] -> images in [-1, 1])")
    else:
        typer.echo(f"Exported the generator of {restored.describe()} to {path} as a SavedModel: "
                   f"serving_default(latent float32 [N, {nz}]) -> images uint8 [N, {h}, {w}, {c}]")


# ----------------------------------------------------------------------------
# bench


@app.command()
def bench(
    size: Annotated[int, typer.Option(help="Image side of the benchmarked model.")] = 64,
    batch_size: Annotated[int, typer.Option(min=1, help="Global batch size.")] = 128,
    steps: Annotated[int, typer.Option(min=1, help="Timed steps per measurement.")] = 20,
    data: Annotated[Optional[Path], typer.Option(help="Preprocessed data for the loop and input figures "
                                                      "(default: temporary synthetic shards).")] = None,
    precision: Annotated[Precision, typer.Option(help="Compute precision (auto: by hardware).")] = Precision.auto,
    xla: Annotated[bool, typer.Option("--xla", help="Compile the step with XLA.")] = False,
    parts: Annotated[str, typer.Option(help="Comma-separated: step, loop, input, preprocess, quality "
                                            "(quality trains on offline digits: minutes).")] = (
        "step,loop,input,preprocess"),
    quality_steps: Annotated[int, typer.Option(min=1, help="Training steps per model and seed of the quality "
                                                           "part (longer runs: more steps).")] = 300,
    quality_seeds: Annotated[int, typer.Option(min=1, help="Seeds of the quality part (0, 1, ...).")] = 3,
    peers: Annotated[Optional[Path], typer.Option(help="Folder with peer_keras.py / peer_torch.py: time them "
                                                       "back to back and report ratios.")] = None,
    torch_python: Annotated[Optional[Path], typer.Option(help="A Python with torch, to run peer_torch.py.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
):
    """Measure img/s of the train step, the whole loop and the input pipeline; with
    `--parts quality`, the sample quality of the `dcgan` preset against a plain-Keras reference.

    The quality part trains both on scikit-learn's digits (32x32 grey) for
    --quality-steps steps per seed and prints FD, KID, class coverage and the
    nearest-training-image distance of each, and the FD ratio ours/reference.

    Example: dcgan bench --steps 20 --peers ../shared/bench --json

    Example: dcgan bench --parts quality --quality-steps 1000
    """
    import json

    from dcgan_cli.bench import PARTS
    from dcgan_cli.bench import bench as run

    wanted = tuple(p.strip() for p in parts.split(",") if p.strip())
    if not wanted or set(wanted) - set(PARTS):
        raise typer.BadParameter(f"use a comma-separated subset of {', '.join(PARTS)}", param_hint="'--parts'")
    result = run(size=size, batch_size=batch_size, steps=steps, data=data, precision=precision.value, xla=xla,
                 peers=peers, torch_python=torch_python, parts=wanted, quality_steps=quality_steps,
                 quality_seeds=range(quality_seeds), log=(lambda m: None) if json_ else typer.echo)
    typer.echo(json.dumps(result) if json_ else json.dumps(result, indent=2))


# ----------------------------------------------------------------------------
# evaluate


def _metrics_option(value: str) -> str:
    from dcgan_cli.evaluate import parse_metrics

    try:
        return ",".join(parse_metrics(value))
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


@app.command()
def evaluate(
    run: Annotated[Optional[Path], typer.Option(help="Run directory (default: the newest under --runs-dir).")] = None,
    model: Annotated[Optional[Path], typer.Option(help="A generator saved as .keras instead of a run, "
                                                       "e.g. RUN/best/generator.keras.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Preprocessed real data (default: the run's).")] = None,
    samples: Annotated[int, typer.Option(min=2, help="Generated images to score (FID needs 2048+).")] = 10_000,
    metrics: Annotated[str, typer.Option(callback=_metrics_option, help=f"Comma-separated: {', '.join(METRICS)}.")
                       ] = ",".join(METRICS),
    inception_weights: Annotated[Optional[Path], typer.Option(
        help="Local copy of Keras' InceptionV3 no-top ImageNet weights, for machines without internet "
             "(or $DCGAN_INCEPTION_WEIGHTS; default: Keras' cache).", show_default=False)] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the table.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the generated images' latents.")] = 0,
    real_samples: Annotated[int, typer.Option(min=0, help="Use a fixed random subset of this many real "
                                                          "images (0: all; cached per size).")] = 0,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Score the raw generator, not its EMA.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Images generated and embedded at a time.")] = 64,
    runs_dir: RunsDir = Path("runs"),
    extractor: Annotated[str, typer.Option(hidden=True, help="Feature extractor (tests use tiny-random).")]
    = "inception_v3",
):
    """Score a generator with FID and KID against real data (InceptionV3 features).

    Real-image statistics are cached beside the data's manifest.json, so only
    the first evaluation of a data set embeds it. Results are appended to the
    run's metrics.jsonl.

    Example: dcgan evaluate --run runs/00003-celeba-64-dcgan --samples 10000
    """
    import json

    from dcgan_cli import evaluate as ev

    opts = ev.EvalOptions(samples=samples, metrics=tuple(metrics.split(",")), extractor=extractor,
                          weights=str(inception_weights) if inception_weights else None, seed=seed,
                          batch_size=batch_size, real_samples=real_samples)
    say = lambda m: typer.echo(m, err=True)  # noqa: E731 - stdout is for the result
    result = ev.evaluate_target(run, model, data, opts, ema=not no_ema, runs_dir=runs_dir, log=say)
    typer.echo(json.dumps(result) if json_ else ev.format_table(result))


if __name__ == "__main__":
    app()
