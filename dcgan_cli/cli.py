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
    source: Annotated[str, typer.Argument(help="A data set name under the data dir, or a folder of images.")],
    out: Annotated[Optional[Path], typer.Option(help="Output dir (default DATA_DIR/processed/SOURCE-SIZE).")] = None,
    size: Annotated[int, typer.Option(help="Output side: 28 or a power of two from 16 to 256.")] = 64,
    crop: Annotated[Optional[str], typer.Option(help="celeba | center | none (default: celeba for CelebA, "
                                                     "else center).", show_default=False)] = None,
    crop_size: Annotated[int, typer.Option(min=0, help="Side of the crop box (0: the crop's default).")] = 0,
    channels: Annotated[int, typer.Option(help="3 (RGB) or 1 (grayscale).")] = 3,
    limit: Annotated[int, typer.Option(min=0, help="Use only the first N images (0: all).")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing output.")] = False,
    data_dir: DataDir = None,
):
    """Crop and resize images once into training shards.

    Example: dcgan preprocess celeba --size 64
    """
    from dcgan_cli import datasets
    from dcgan_cli.preprocess import PreprocessConfig, preprocess as run

    root = _data_dir(data_dir)
    if source in datasets.DATASETS:
        src, name = datasets.image_dir(source, root), source
        if not src.is_dir():
            raise DcganError(f"{source} is not downloaded yet; run `dcgan download {source}` first")
    else:
        src, name = Path(source), Path(source).stem
    cfg = PreprocessConfig(source=str(src), out=str(out or root / "processed" / f"{name}-{size}"), size=size,
                           crop=crop or ("celeba" if source == "celeba" else "center"), crop_size=crop_size,
                           channels=channels, limit=limit, force=force)
    m = run(cfg)
    typer.echo(f"{m['count']} images ({m['skipped']} skipped) -> {cfg.out}")


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
    from dcgan_cli.config import PRESETS, TrainConfig, preset as make_preset

    overrides = dict(
        epochs=epochs, batch_size=batch_size, steps_per_epoch=steps_per_epoch, lr_g=lr_g, lr_d=lr_d, beta1=beta1,
        latent_dim=latent_dim, g_filters=g_filters, d_filters=d_filters, ema=ema, label_smoothing=label_smoothing,
        instance_noise=instance_noise, flip=flip, seed=seed, precision=precision, xla=xla, strategy=strategy,
        sync_bn=sync_bn, checkpoint_every=checkpoint_every, cache=cache, eval_every=eval_every,
        eval_samples=eval_samples)
    given = {k: v for k, v in overrides.items() if v is not None}

    if resume is not None:
        from dcgan_cli.training import CONFIG_FILE

        if not (resume / CONFIG_FILE).exists():
            raise DcganError(f"{resume} is not a run directory (no {CONFIG_FILE}); pass one under {runs_dir}/")
        cfg = TrainConfig.load(resume / CONFIG_FILE)
        changeable = {"epochs", "checkpoint_every", "precision", "xla", "strategy", "cache", "eval_every",
                      "eval_samples"}
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
    from dcgan_cli.evaluate import preflight_training
    from dcgan_cli.training import train as run

    preflight_training(cfg, log=lambda m: typer.echo(m, err=True))
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
    metrics: Annotated[str, typer.Option(callback=_metrics_option, help="Comma-separated: fid, kid.")] = "fid,kid",
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

    if run is not None and model is not None:
        raise typer.BadParameter("give either --run or --model, not both", param_hint="'--model'")
    opts = ev.EvalOptions(samples=samples, metrics=tuple(metrics.split(",")), extractor=extractor,
                          weights=str(inception_weights) if inception_weights else None, seed=seed,
                          batch_size=batch_size, real_samples=real_samples)
    say = lambda m: typer.echo(m, err=True)  # noqa: E731 - stdout is for the result
    generator, facts, run_dir, run_data = ev.load_target(run, model, ema=not no_ema, runs_dir=runs_dir, log=say)
    if data is None and run_data is None:
        raise DcganError(f"{model} is not inside a run directory, so its data is unknown; pass --data DIR")
    if data is None and not (Path(run_data) / "manifest.json").exists():
        raise DcganError(f"the run's data {run_data} is not there (moved?); pass --data DIR")
    data = data or Path(run_data)
    result = {**facts, **ev.evaluate_generator(generator, data, opts, log=say)}
    if run_dir is not None:
        ev.append_to_metrics(run_dir, result)
    typer.echo(json.dumps(result) if json_ else ev.format_table(result))


if __name__ == "__main__":
    app()
