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

from dcgan_cli.errors import DcganError

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

                try:
                    return f(*a, **kw)
                except DcganError as e:
                    typer.echo(f"Error: {e}", err=True)
                    raise typer.Exit(1) from None
                except TrainingInterrupted as e:
                    typer.echo(str(e), err=True)
                    raise typer.Exit(130) from None

            return register(wrapper)

        return decorator


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
    dataset: Annotated[str, typer.Argument(help="Data set name (see --list).")] = "",
    data_dir: DataDir = None,
    force: Annotated[bool, typer.Option("--force", help="Fetch again even if already complete.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the known data sets and exit.")] = False,
):
    """Fetch a data set into the data dir, verified.

    Example: dcgan download lfw-sample
    """
    from dcgan_cli import datasets

    if list_ or not dataset:
        for d in datasets.DATASETS.values():
            typer.echo(f"{d.name:12s} {d.size:>10s}  {d.description} [{d.source}]")
        return
    root = _data_dir(data_dir)
    path = datasets.get(dataset).fetch(root, force=force)
    typer.echo(f"{dataset} is ready in {path}")


# ----------------------------------------------------------------------------
# preprocess


@app.command()
def preprocess(
    source: Annotated[str, typer.Argument(
        metavar="SOURCE", help="A data set name under the data dir (celeba, lfw-sample), a folder of images "
                               "(searched recursively) or a .zip of images.")],
    out: Annotated[Optional[str], typer.Option(help="Output dir, local or gs:// (default "
                                                    "DATA_DIR/processed/SOURCE-SIZE).", show_default=False)] = None,
    size: Annotated[int, typer.Option(help="Output side: 28 or a power of two from 16 to 256.")] = 64,
    crop: Annotated[Optional[str], typer.Option(help="celeba (108x108 face box) | center (largest centred square) "
                                                     "| none (whole image). Default: celeba for CelebA, else center.",
                                                show_default=False)] = None,
    crop_size: Annotated[int, typer.Option(min=0, help="Side of the crop box (0: 108 for celeba, the largest "
                                                       "square for center).")] = 0,
    channels: Annotated[int, typer.Option(help="3 (RGB) or 1 (grayscale).")] = 3,
    split: Annotated[str, typer.Option(help="all | train (CelebA's list_eval_partition.txt).")] = "all",
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
    import sys

    from dcgan_cli.preprocess import CELEBA_NAMES, CROPS, SIZES, SPLITS, PreprocessConfig, resolve_source
    from dcgan_cli.preprocess import preprocess as run

    if size not in SIZES:
        raise typer.BadParameter("use 28 or a power of two from 16 to 256", param_hint="'--size'")
    for name, value, allowed in (("--crop", crop, CROPS), ("--split", split, SPLITS), ("--channels", channels, (3, 1))):
        if value is not None and value not in allowed:
            raise typer.BadParameter(f"choose one of {', '.join(map(str, allowed))}", param_hint=f"'{name}'")
    if crop_size and crop_size < size:
        raise typer.BadParameter(f"{crop_size} is smaller than --size {size}, so every image would be upscaled",
                                 param_hint="'--crop-size'")

    root = _data_dir(data_dir)
    src, name = resolve_source(source, root)
    crop = crop or ("celeba" if name in CELEBA_NAMES else "center")
    out = out or str(root / "processed" / f"{name}-{size}")
    cfg = PreprocessConfig(source=str(src), out=out, size=size, crop=crop, crop_size=crop_size, channels=channels,
                           split=split, workers=workers, limit=limit, force=force, shard_mb=shard_mb)
    log = functools.partial(typer.echo, err=True)
    try:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = (TextColumn("preprocess"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task("images", total=None)
                m = run(cfg, progress=lambda done, total: bar.update(task, completed=done, total=total), log=log)
        else:
            m = run(cfg, log=log)
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


def _find_data(data_dir: Path, image_size: Optional[int]) -> Path:
    processed = data_dir / "processed"
    sets = sorted(p for p in processed.glob("*") if (p / "manifest.json").exists()) if processed.is_dir() else []
    preferred = [p for p in sets if p.name == f"celeba-{image_size or 64}"]
    if preferred:
        return preferred[0]
    if len(sets) == 1:
        return sets[0]
    if not sets:
        raise DcganError(f"no preprocessed data under {processed}/; make some with `dcgan preprocess celeba` "
                         f"(or any folder of images), or pass --data DIR")
    raise DcganError(f"several data sets under {processed}/ ({', '.join(p.name for p in sets)}); pick one with --data")


@app.command()
def train(
    data: Annotated[Optional[Path], typer.Option(help="Preprocessed data dir (holds manifest.json).")] = None,
    preset: Annotated[str, typer.Option(help="dcgan | face128 | demo.")] = "dcgan",
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
    label_smoothing: Annotated[Optional[float], typer.Option(help="Real labels ~ U(1-s, 1).")] = None,
    instance_noise: Annotated[Optional[float], typer.Option(help="Noise on real images, std ~ U(0, s).")] = None,
    flip: Annotated[Optional[bool], typer.Option("--flip/--no-flip", help="Random horizontal flips.",
                                                 show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of weights, noise and data order.")] = None,
    precision: Annotated[Optional[str], typer.Option(help="auto | fp32 | bf16 | fp16.")] = None,
    xla: Annotated[Optional[bool], typer.Option("--xla/--no-xla", help="Compile the step with XLA.",
                                                show_default=False)] = None,
    strategy: Annotated[Optional[str], typer.Option(help="auto | default | mirrored | multiworker | tpu.")] = None,
    sync_bn: Annotated[Optional[bool], typer.Option("--sync-bn/--no-sync-bn", help="Synchronised batch norm.",
                                                    show_default=False)] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(min=0, help="Also checkpoint every N steps.")] = None,
    cache: Annotated[Optional[bool], typer.Option("--cache/--no-cache", help="Keep the data in memory.",
                                                  show_default=False)] = None,
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
    from dcgan_cli.config import PRESETS, TrainConfig, preset as make_preset

    overrides = dict(
        epochs=epochs, batch_size=batch_size, steps_per_epoch=steps_per_epoch, lr_g=lr_g, lr_d=lr_d, beta1=beta1,
        latent_dim=latent_dim, g_filters=g_filters, d_filters=d_filters, ema=ema, label_smoothing=label_smoothing,
        instance_noise=instance_noise, flip=flip, seed=seed, precision=precision, xla=xla, strategy=strategy,
        sync_bn=sync_bn, checkpoint_every=checkpoint_every, cache=cache)
    given = {k: v for k, v in overrides.items() if v is not None}

    if resume is not None:
        from dcgan_cli.training import CONFIG_FILE

        if not (resume / CONFIG_FILE).exists():
            raise DcganError(f"{resume} is not a run directory (no {CONFIG_FILE}); pass one under {runs_dir}/")
        cfg = TrainConfig.load(resume / CONFIG_FILE)
        changeable = {"epochs", "checkpoint_every", "precision", "xla", "strategy", "cache"}
        fixed = sorted(k for k, v in given.items() if k not in changeable and v != getattr(cfg, k))
        if fixed:
            raise DcganError(f"cannot change {', '.join('--' + k.replace('_', '-') for k in fixed)} when resuming "
                             f"{resume}; start a new run for a different setup")
        cfg = cfg.replace(**given, **({"data": str(data)} if data else {}))
    else:
        if preset not in PRESETS:
            raise typer.BadParameter(f"choose one of {', '.join(PRESETS)}", param_hint="'--preset'")
        data = data or _find_data(_data_dir(data_dir), PRESETS[preset].get("image_size"))
        manifest = _read_manifest(data)
        shape = {"image_size": manifest["size"], "channels": manifest["channels"]}
        shape = {k: v for k, v in shape.items() if k not in PRESETS[preset]}
        cfg = make_preset(preset, data=str(data), runs_dir=str(runs_dir), run_name=name, **shape, **given)

    if dry_run:
        typer.echo(cfg.to_json(), nl=False)
        return
    from dcgan_cli.training import train as run

    run_dir = run(cfg, resume, resume=resume is not None, quiet=quiet)
    typer.echo(f"Run directory: {run_dir}")


def _read_manifest(data: Path) -> dict:
    import json

    from dcgan_cli.pipeline import MANIFEST

    path = data / MANIFEST
    if not path.exists():
        raise DcganError(f"{data} holds no {MANIFEST}; make it with `dcgan preprocess SOURCE --out {data}`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise DcganError(f"{path} is corrupt; re-run `dcgan preprocess ... --force`") from None


# ----------------------------------------------------------------------------
# sample


@app.command()
def sample(
    out: Annotated[Path, typer.Argument(help="Output image (.png, .jpg or .webp).")],
    n: Annotated[int, typer.Option("-n", "--num", min=1, help="Number of images.")] = 16,
    run: Annotated[Optional[Path], typer.Option(help="Run directory (default: the newest under --runs-dir).")] = None,
    seed: Annotated[int, typer.Option(help="Image k uses seed S+k; same seed, same images.")] = 0,
    nrow: Annotated[Optional[int], typer.Option(min=1, help="Images per row (default: near-square).")] = None,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Use the raw generator, not its EMA.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Images generated at a time.")] = 256,
    runs_dir: RunsDir = Path("runs"),
):
    """Write a grid of faces from a trained generator.

    Example: dcgan sample -n 16 out.png --seed 42
    """
    from dcgan_cli.images import check_image_path
    from dcgan_cli.sampling import load_generator, sample_grid
    from dcgan_cli.training import latest_run

    check_image_path(out)
    if run is None:
        run = latest_run(runs_dir)
        typer.echo(f"Using the newest run: {run}", err=True)
    g, _ = load_generator(run, ema=not no_ema)
    path = sample_grid(g, list(range(seed, seed + n)), out, nrow=nrow, batch_size=batch_size)
    typer.echo(f"Wrote {n} samples to {path}")


if __name__ == "__main__":
    app()
