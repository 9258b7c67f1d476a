"""The `dcgan` command line: parse, build a config, call the library, print.

Kept thin on purpose: the rules live in the modules it calls (a cross-option
rule raises `UsageError` there). TensorFlow is imported inside the commands,
never here, so `dcgan --help` answers at once. Errors reach the user through one
place, `_App.command`: `DcganError` -> `Error: ...` and exit 1, `UsageError` ->
Typer's usage error and exit 2, Ctrl-C -> its resume hint and exit 130.

One flag name per meaning across commands: --generator (a generator .keras
file), --identity-model (the embedding network), --run, --runs-dir, --data,
--data-dir, --seed, --seeds; step and epoch counts say which (-steps, -epochs).
The old spellings still work for one release, hidden, through `_Command`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from typer.core import TyperCommand, TyperOption

from dcgan_cli.config import (AUGMENT_P, AUTO_CADENCE_STEPS, MAX_SEED, SMALL_DATA_BELOW, Augment, GActivation,
                              OnCollapse, DNorm, Loss as GanLoss,
                              Precision, Preset, Strategy, TrainConfig, preset_values)
from dcgan_cli.errors import DcganError, Interrupted, UsageError, resume_hint, sigterm_as_ctrl_c
from dcgan_cli.metrics.evaluate import METRICS
from dcgan_cli.identity.audit import PIXEL_RMSE as AUDIT_PIXEL_RMSE, SAMPLES as AUDIT_SAMPLES
from dcgan_cli.identity.config import ClassAugment, IdentityConfig, Loss, Mining
from dcgan_cli.data.datasets import DATA_DIR_ENV, DEFAULT_DATA_DIR
from dcgan_cli.data.preprocess.decoding import CELEBA_CROP, CROP_HELP, Crop
from dcgan_cli.data.preprocess.labels import LabelMode
from dcgan_cli.data.preprocess.sources import Split
from dcgan_cli.generate.repair import MaskKind, Search as _SEARCH
from dcgan_cli.generate import sampling, stylize as style_transfer
from dcgan_cli.generate.stylize import StyleOptions as _STYLE
from dcgan_cli.generate.sampling import ExportFormat
from dcgan_cli.generate.tflite import QUANTIZE
from dcgan_cli.generate import edit as edit_lib
from dcgan_cli.generate.directions import DirectionsRequest as _DIRECTIONS
from dcgan_cli.data.preprocess.config import DEFAULT_CHANNELS as PREPROCESS_CHANNELS, DEFAULT_SIZE as PREPROCESS_SIZE
from dcgan_cli.data.shards import SIZE_RULE
from dcgan_cli.runs.layout import AUDIT_GRID_FILE
from dcgan_cli.bench import quality as bench_quality, repair as bench_repair, suite as bench_suite

# `dcgan bench`'s defaults, its library's own.
QUALITY_SETS, QUALITY_SEEDS = bench_quality.DEFAULT_SETS, bench_quality.DEFAULT_SEEDS
REPAIR_SEEDS = bench_repair.DEFAULT_SEEDS
QUALITY_STEPS = {"digits": bench_quality.DEFAULT_STEPS, "faces": bench_quality.FACES_STEPS,
                 "faces80": bench_quality.FACES80_STEPS}
REPAIR_STEPS = bench_repair.STEPS
FACE_IMAGES, STYLIZE_SIZE = bench_suite.FACE_IMAGES, bench_suite.STYLIZE_SIZE

# Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _App(typer.Typer):
    """A Typer app whose commands report errors, interrupts and old flag spellings in one place.

    `DcganError` becomes one `Error: ...` line and exit 1; `UsageError` Typer's
    usage error (exit 2, naming the option); `Interrupted` its message and exit
    130, and a Ctrl-C anywhere else "Interrupted." and 130. `renamed` maps a
    command's deprecated flag spellings to the current ones (see `_Command`).
    """

    def command(self, *args, renamed: dict[str, str | Callable[[list[str]], str]] | None = None,
                settings: "_Settings | None" = None, panels: dict[str, tuple[str, ...]] | None = None, **kwargs):
        if renamed:
            kwargs["cls"] = type("Command", (_Command,), {"renamed": dict(renamed)})
        register = super().command(*args, **kwargs)

        def decorator(f):
            if panels is not None:
                _into_panels(f, panels)
            if settings is not None:
                settings.check(f)

            @functools.wraps(f)
            def wrapper(*a, **kw):
                try:
                    with sigterm_as_ctrl_c(), resume_hint("Interrupted."):  # a Ctrl-C the library did not word
                        if name_needs_tf(f.__name__):
                            import_tensorflow()
                        return f(*a, **kw)
                except UsageError as e:
                    raise typer.BadParameter(str(e), param_hint=f"'{e.option}'") from None
                except DcganError as e:
                    typer.echo(f"Error: {e}", err=True)
                    raise typer.Exit(1) from None
                except Interrupted as e:
                    typer.echo(str(e), err=True)
                    raise typer.Exit(130) from None

            return register(wrapper)

        return decorator


class _Command(TyperCommand):
    """A command that still accepts its old flag spellings (`renamed`), hidden from --help, for one release.

    Each old spelling is rewritten to the new one before parsing, with a note on
    stderr. A value of `renamed` may be a function of the arguments, for a flag
    whose new name depends on the others (evaluate's --model: --identity-model
    with --verification, else --generator).
    """

    renamed: dict[str, str | Callable[[list[str]], str]] = {}

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        takes_value = {name for p in self.params if isinstance(p, TyperOption) and not p.is_flag and not p.count
                       for name in (*p.opts, *p.secondary_opts)}
        out, skip = [], False
        for i, arg in enumerate(args):
            if arg == "--":
                out += args[i:]
                break
            flag, eq, value = arg.partition("=")
            if not skip and flag in self.renamed:
                new = self.renamed[flag]
                new = new(args) if callable(new) else new
                typer.echo(f"{flag} is deprecated, use {new}", err=True)
                arg, flag = new + eq + value, new
            out.append(arg)
            skip = not skip and not eq and flag in takes_value  # the next token is this option's value
        return super().parse_args(ctx, out)


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

DATA_DIR_HELP = f"Data root (default ./{DEFAULT_DATA_DIR}, or ${DATA_DIR_ENV})."
DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help=DATA_DIR_HELP, show_default=False)]
RunsDir = Annotated[Path, typer.Option("--runs-dir", help="Where numbered run directories live.")]
RUNS_DIR = Path(TrainConfig.runs_dir)  # every command's --runs-dir default, the trainers' own
# A generator saved as .keras (a run's generator.keras, or `dcgan export`): --generator in every command.
GeneratorFile = Annotated[Optional[Path], typer.Option(
    "--generator", help="A generator .keras file instead of a run (e.g. RUN/best/generator.keras).",
    show_default=False)]
# The face-embedding network (RUN/embedding.keras or its identity run): --identity-model in every command.
IdentityModel = Annotated[Optional[Path], typer.Option(
    "--identity-model", help="An embedding model (RUN/embedding.keras) or its identity run directory (default: "
                             "the newest under --runs-dir).", show_default=False)]
# The panels that group `dcgan --help`'s commands, in the order a user meets them.
DATA_CMDS, TRAINING, GENERATING, EVALUATING, FACES = "Data", "Training", "Generating", "Evaluating", "Faces"
# The panels that group a long command's options in --help (train, bench).
DATA, MODEL, SCHEDULE, OUTPUT, PERFORMANCE = "Data", "Model", "Schedule", "Output", "Performance"


def _shown(value) -> str:
    """A default as --help shows it."""
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def _preset_default(field: str) -> str:
    """`train --FIELD`'s default as --help shows it, from config.PRESETS: each value with the presets that give it
    (and what a preset gives on small data, where that differs)."""
    presets_of: dict[str, list[str]] = {}
    small = preset_values(field, small_data=True)
    for name, value in preset_values(field).items():
        shown = _shown(value) + (f" ({_shown(small[name])} under {SMALL_DATA_BELOW:,} images)"
                                 if small[name] != value else "")
        presets_of.setdefault(shown, []).append(name)
    if len(presets_of) == 1:
        return next(iter(presets_of))
    return "; ".join(f"{', '.join(names)}: {value}" for value, names in presets_of.items())


# Old spellings (hidden, noted on stderr, for one release): see _Command.
GENERATOR_RENAMED = {"--model": "--generator"}
IDENTITY_RENAMED = {"--model": "--identity-model"}


class _Settings:
    """Which of a command's options are settings of its config, checked when the command is registered.

    Each parameter of the command is either a field of `config` (a setting: passed on when given,
    None meaning "left to the preset or the saved run") or named in `own` (the command resolves it
    itself, e.g. --data, --name, --dry-run). An option that is neither, such as one renamed away
    from its field, stops `import dcgan_cli.cli` with its name instead of being dropped in silence.
    """

    def __init__(self, config: type, own: tuple[str, ...], shown: Callable[[str], str] | None = None):
        self.config, self.own, self.names = config, frozenset(own), frozenset()
        self.shown = shown  # a setting's default as help shows it (an option's own show_default wins)

    def check(self, command: Callable) -> None:
        params = set(inspect.signature(command).parameters)
        fields = {f.name for f in dataclasses.fields(self.config)}
        stray, stale = sorted(params - fields - self.own), sorted(self.own - params)
        if stray or stale:
            raise TypeError(f"{command.__name__}: {stray} are neither {self.config.__name__} fields nor resolved by "
                            f"the command; {stale} are listed as resolved but are not its parameters")
        self.names = frozenset(params - self.own)
        if self.shown is not None:
            for name, info in _options(command).items():
                if name in self.names and info.show_default is True:
                    info.show_default = self.shown(name)

    def given(self, options: dict) -> dict:
        """The settings among a command's `options` (its locals()) that the user gave, choices as their values."""
        assert self.names, "given() before the command was registered with settings="
        return {k: v.value if isinstance(v, Enum) else v for k, v in options.items()
                if k in self.names and v is not None}


def _options(command: Callable) -> dict[str, typer.models.ParameterInfo]:
    """A command's parameters -> their typer.Option / typer.Argument, read from the Annotated hints."""
    params = inspect.signature(command, eval_str=True).parameters
    # Annotations are strings here (PEP 563): each evaluation makes new typer.Option objects. Keep the
    # evaluated ones, so that what is set on them is what Typer reads.
    command.__annotations__.update({name: p.annotation for name, p in params.items()})
    return {name: info for name, p in params.items()
            for info in typing.get_args(p.annotation)[1:] if isinstance(info, typer.models.ParameterInfo)}


def _into_panels(command: Callable, panels: dict[str, tuple[str, ...]]) -> None:
    """Put each option named in `panels` (panel -> option names) in its --help panel; a name that is no
    option of the command stops the import, as a stray setting does."""
    options = _options(command)
    for panel, names in panels.items():
        for name in names:
            if name not in options:
                raise TypeError(f"{command.__name__}: the {panel!r} panel names {name!r}, which is not an option")
            options[name].rich_help_panel = panel


def _data_dir(data_dir: Optional[Path]) -> Path:
    from dcgan_cli.data.datasets import default_data_dir

    return data_dir or default_data_dir()


# ----------------------------------------------------------------------------
# download


@app.command(rich_help_panel=DATA_CMDS)
def download(
    dataset: Annotated[str, typer.Argument(help="celeba, mnist, fashion-mnist, lfw-sample, or the http(s) URL of "
                                                "a zip/tar archive of images (see --list); or the pretrained files "
                                                "inception-2015 and vgg19, into Keras' cache.",
                                           show_default=False)] = "",
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
    min_rate: Annotated[float, typer.Option(min=0, help="Bytes/s: a download slower than this over --rate-window "
                                                        "seconds counts as stalled and is resumed (0: never).")
                        ] = 1024.0,
    rate_window: Annotated[float, typer.Option(min=0.01, help="Seconds over which --min-rate is measured.")] = 60.0,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the known data sets and exit.")] = False,
):
    """Fetch a data set into the data dir: resumable, verified, safely extracted.

    Mirrors are tried in order; a Google Drive confirmation page is followed, a
    quota page moves on to the next mirror. A second run does nothing once the
    data set is complete (--force redoes it).

    Example: dcgan download celeba --data-dir data
    """
    from dcgan_cli.data import datasets
    from dcgan_cli.data import weights
    from dcgan_cli.data.datasets.http import HttpOptions
    from dcgan_cli.data.datasets.progress import Ui

    if list_ or not dataset:
        for d in datasets.DATASETS.values():
            typer.echo(f"{d.name:13s} {d.size:>8s}  {d.description}\n{'':24s}from {d.source}")
        typer.echo(f"{'URL':13s} {'':8s}  any http(s) zip/tar of images: dcgan download URL [--sha256 HEX] [--name NAME]")
        for w in weights.WEIGHTS.values():
            typer.echo(f"{w.name:13s} {'':8s}  {w.description}\n{'':24s}into {weights.keras_cache_dir()}")
        return
    http = HttpOptions(retries=retries, timeout=timeout, min_rate=min_rate, rate_window=rate_window)
    if dataset in weights.WEIGHTS:
        typer.echo(weights.download_command(dataset, force=force, urls=url or (), archives=archive or (), http=http,
                                            ui=Ui(quiet=quiet), ignored={"--sha256": sha256, "--md5": md5, "--name": name,
                                                                         "--data-dir": data_dir,
                                                                         "--no-checksum": no_checksum}))
        return
    ds = datasets.resolve(dataset, name=name, sha256=sha256, md5=md5)
    root = _data_dir(data_dir)
    result = datasets.fetch(ds, root, force=force, urls=url or (), archives=archive or (),
                            no_checksum=no_checksum, http=http, ui=Ui(quiet=quiet))
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


@app.command(rich_help_panel=DATA_CMDS)
def preprocess(
    source: Annotated[str, typer.Argument(
        metavar="SOURCE", help="A data set name under the data dir (celeba, mnist, fashion-mnist, lfw-sample), a "
                               "folder of images (searched recursively), a .zip of images, or a folder holding "
                               "an .npz (Keras' mnist.npz layout) or IDX files.")],
    out: Annotated[Optional[str], typer.Option(
        "-o", "--out", help="Output dir, local or gs:// (default DATA_DIR/processed/SOURCE-SIZE).",
        show_default=False)] = None,
    size: Annotated[Optional[int], typer.Option(help=f"Output side: {SIZE_RULE}.", show_default=(
        f"{PREPROCESS_SIZE}; an array data set's own side, 28 for mnist"))] = None,
    crop: Annotated[Optional[Crop], typer.Option(help="; ".join(f"{k}: {v}" for k, v in CROP_HELP.items())
                                                 + ". Default: celeba for CelebA, else center.",
                                                 show_default=False)] = None,
    crop_size: Annotated[int, typer.Option(min=0, help=f"Side of the crop box (0: {CELEBA_CROP} for celeba and face, the "
                                                       "largest square for center).")] = 0,
    min_face: Annotated[int, typer.Option(min=0, help="With --crop face: leave out faces smaller than N pixels "
                                                      "in the photo (0: keep every face found).")] = 0,
    channels: Annotated[Optional[int], typer.Option(help="3 (RGB) or 1 (grayscale).", show_default=(
        f"{PREPROCESS_CHANNELS}; an array data set's own, 1 for mnist"))] = None,
    split: Annotated[Split, typer.Option(help="train or test: CelebA's partitions (list_eval_partition.txt), or "
                                              "an array data set's own train and test sets.")] = Split.ALL,
    workers: Annotated[int, typer.Option(min=0, help="Decoding processes (0: one per CPU core).")] = 0,
    limit: Annotated[int, typer.Option(min=0, help="Use only the first N images (0: all).")] = 0,
    shard_mb: Annotated[float, typer.Option(min=0.001, help="Target shard size in MB.")] = 128.0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing complete output.")] = False,
    labels: Annotated[LabelMode, typer.Option(help="Per-image labels to store: celeba (identity_CelebA.txt, "
                                                   "list_attr_celeba.txt beside the images), folders (the person's "
                                                   "sub-folder: person/x.jpg), none; auto: celeba when its files "
                                                   "are there.")] = LabelMode.AUTO,
    data_dir: DataDir = None,
):
    """Crop and resize images once into training shards (resumable).

    Bad files are skipped and listed in OUT/skipped.txt; an interrupted run
    resumes when run again with the same settings. MNIST-like arrays (.npz,
    IDX) are read directly, and their class labels are kept in the shards.

    --crop face finds every face in your own photos (`pip install 'dcgan-cli[faces]'`),
    aligns each like CelebA and writes one image per face; photos without one are
    listed in skipped.txt.

    Example: dcgan preprocess celeba --size 64 --split train

    Example: dcgan preprocess ~/photos --crop face --min-face 48
    """
    from rich.console import Console

    from dcgan_cli.data.preprocess import preprocess as run, resolve_config
    from dcgan_cli.progress import Bars

    cfg = resolve_config(source, _data_dir(data_dir), out=out, size=size, crop=crop and crop.value, channels=channels,
                         crop_size=crop_size, split=split.value, workers=workers, limit=limit, force=force,
                         shard_mb=shard_mb, min_face=min_face, labels=labels.value)
    out = cfg.out
    with Bars(console=Console(stderr=True), transient=True, only_on_terminal=True) as bars:
        task = bars.task("preprocess", None)
        m = run(cfg, progress=lambda done, total: task.update(completed=done, total=total),
                log=functools.partial(typer.echo, err=True))
    if m.get("up_to_date"):
        typer.echo(f"{out} is already up to date ({m['count']} images, same settings and files); "
                   f"pass --force to redo it")
        return
    extra = f", {m['small']} smaller than the crop or upscaled (see small.txt)" if m["small"] else ""
    if m["crop"] == "face":
        extra = f", {m['small']} with faces upscaled or at the edge (see small.txt)" if m["small"] else ""
        typer.echo(f"{m['count']} faces from {m['source_images'] - m['skipped']} photos ({m['skipped']} without a "
                   f"face or unreadable, see skipped.txt{extra}) -> {out}")
        return
    typer.echo(f"{m['count']} images ({m['skipped']} skipped, see skipped.txt{extra}) -> {out}")
    for spec in m.get("labels", []):
        people = spec.get("identities", len(spec.get("classes", [])))
        typer.echo(f"labels: {spec['name']} from {spec.get('source', 'the data set')}"
                   + (f" ({people:,} identities)" if spec["name"] == "identity" else "")
                   + (f", {spec['missing']} images without a line (stored as -1)" if spec.get("missing") else ""))


# ----------------------------------------------------------------------------
# train


# train's options that are not TrainConfig settings, or that it resolves before the config is built.
TRAIN_SETTINGS = _Settings(TrainConfig, own=("data", "data_dir", "preset", "runs_dir", "name", "resume", "dry_run",
                                             "verify_data", "quiet"), shown=_preset_default)
TRAIN_PANELS = {
    DATA: ("data", "data_dir", "flip", "augment", "augment_p", "condition", "verify_data"),  # what D sees
    MODEL: ("latent_dim", "g_filters", "d_filters", "g_activation", "ema", "seed"),  # what is trained
    SCHEDULE: ("epochs", "steps_per_epoch", "batch_size", "lr_g", "lr_d", "beta1", "beta2", "alternate",
               "label_smoothing", "instance_noise", "on_collapse"),  # how long and how it trains
    OUTPUT: ("runs_dir", "name", "checkpoint_every_steps", "checkpoint_every_epochs", "sample_every_epochs",
             "eval_every_epochs", "eval_samples", "quiet"),  # what is written, where and how often
    PERFORMANCE: ("precision", "xla", "strategy", "sync_bn", "cache"),  # the same numbers, sooner
    "Loss and regularisers": ("loss", "spectral_norm", "d_norm", "r1_gamma", "r1_interval", "bcr"),  # all off by default
}


# train's longer options, declared once here so that its signature reads as one line per option
_AugmentOpt = Annotated[Optional[Augment], typer.Option(help=(
    "Augment everything D sees (translation, cutout, colour): diffaug (fixed p), ada (p adapted to D's "
    f"overfitting), none; auto: ada on data sets under {SMALL_DATA_BELOW:,} images, none above."))]
_AugmentPOpt = Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help=(
    "Per-sample probability of each augmentation: diffaug's fixed p, ada's starting p."),
    show_default="; ".join(f"{mode}: {p:g}" for mode, p in AUGMENT_P.items()))]
_ConditionOpt = Annotated[Optional[str], typer.Option(
    metavar="classes|attributes[:A,B]", help="Train G(z, y) and a projection D on the data's labels: its "
    "classes (folders, MNIST), or its attributes (CelebA), all or the named ones. Fixed for the run.",
    show_default=False)]
_VerifyDataOpt = Annotated[bool, typer.Option("--verify-data", help="Check every shard's SHA-256 against the "
                                          "manifest before training (done anyway when the data changed "
                                          "since the last check).")]
_SpectralNormOpt = Annotated[Optional[bool], typer.Option("--spectral-norm/--no-spectral-norm", help=(
    "Spectral normalisation of every kernel and embedding of D."))]
_DNormOpt = Annotated[Optional[DNorm], typer.Option(help="D's hidden normalisation: batch (the paper's) or none "
                                                    "(SNGAN's D, with biases).")]


@app.command(renamed={"--checkpoint-every": "--checkpoint-every-steps",
                      "--checkpoint-epochs": "--checkpoint-every-epochs",
                      "--sample-every": "--sample-every-epochs", "--eval-every": "--eval-every-epochs"},
             settings=TRAIN_SETTINGS, panels=TRAIN_PANELS, rich_help_panel=TRAINING)
def train(
    data: Annotated[Optional[Path], typer.Option(help="Preprocessed data dir (holds manifest.json).")] = None,
    preset: Annotated[Preset, typer.Option(help="Recipe to start from (flags override it); the defaults below "
                                                "are each preset's.")] = Preset(TrainConfig.preset),
    resume: Annotated[Optional[Path], typer.Option(help="Continue this run directory.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved config and exit.")] = False,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help=DATA_DIR_HELP, show_default=False)] = None,
    flip: Annotated[Optional[bool], typer.Option("--flip/--no-flip", help="Random horizontal flips.")] = None,
    augment: _AugmentOpt = None,
    augment_p: _AugmentPOpt = None,
    condition: _ConditionOpt = None,
    verify_data: _VerifyDataOpt = False,
    latent_dim: Annotated[Optional[int], typer.Option(min=1, help="Size of the noise z.")] = None,
    g_filters: Annotated[Optional[int], typer.Option(min=1, help="Generator width (ngf).")] = None,
    d_filters: Annotated[Optional[int], typer.Option(min=1, help="Discriminator width (ndf).")] = None,
    g_activation: Annotated[Optional[GActivation], typer.Option(help="Generator's hidden activation (the paper: "
                                                                     "relu).")] = None,
    ema: Annotated[Optional[float], typer.Option(help="EMA decay of G's weights, e.g. 0.999 (0: off).")] = None,
    seed: Annotated[Optional[int], typer.Option(min=0, max=MAX_SEED,
                                                help="Seed of weights, noise and data order.")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs to train (may be raised on --resume).")] = None,
    steps_per_epoch: Annotated[Optional[int], typer.Option(min=0, help="Steps per epoch (0: one pass).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Global batch size.")] = None,
    lr_g: Annotated[Optional[float], typer.Option(help="Generator learning rate (may be lowered on --resume, "
                                                       "e.g. after a NaN).")] = None,
    lr_d: Annotated[Optional[float], typer.Option(help="Discriminator learning rate (likewise).")] = None,
    beta1: Annotated[Optional[float], typer.Option(help="Adam beta1 (may change on --resume).")] = None,
    beta2: Annotated[Optional[float], typer.Option(help="Adam beta2 (may change on --resume).")] = None,
    alternate: Annotated[Optional[bool], typer.Option("--alternate/--shared-step", help=(
        "Update D, then G through the updated D (better samples), or both from one forward pass (about 10% "
        "faster)."))] = None,
    label_smoothing: Annotated[Optional[float], typer.Option(help="Real labels ~ U(1-s, 1).")] = None,
    instance_noise: Annotated[Optional[float], typer.Option(help="Noise on real images, std ~ U(0, s).")] = None,
    on_collapse: Annotated[Optional[OnCollapse], typer.Option(
        help="On D winning, collapse or divergence (health.py): warn, stop, or rollback (to the last healthy "
             "checkpoint, with halved rates).")] = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Where numbered run directories live.")] = RUNS_DIR,
    name: Annotated[str, typer.Option(help="Suffix for the run directory's name.")] = "",
    checkpoint_every_steps: Annotated[Optional[int], typer.Option(
        min=0, help="Also checkpoint every N steps (0: at epoch ends only).")] = None,
    checkpoint_every_epochs: Annotated[Optional[int], typer.Option(
        min=0, help=f"Checkpoint at the end of every N epochs (0: auto, every epoch unless epochs are under "
                    f"{AUTO_CADENCE_STEPS} steps; the last epoch and Ctrl-C always checkpoint).")] = None,
    sample_every_epochs: Annotated[Optional[int], typer.Option(
        min=0, help="Write the sample grid and loss plot every N epochs (0: auto, like --checkpoint-every-epochs; "
                    "the last epoch always does).")] = None,
    eval_every_epochs: Annotated[Optional[int], typer.Option(
        min=0, help="Score FID/KID every N epochs and keep the best checkpoint in RUN/best/ (0: never).")] = None,
    eval_samples: Annotated[Optional[int], typer.Option(min=2, help="Generated images per evaluation "
                                                                    "(FID needs 2048 or more).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="One log line per epoch, no progress bar.")] = False,
    precision: Annotated[Optional[Precision], typer.Option(help="Compute precision (auto: by hardware).")] = None,
    xla: Annotated[Optional[bool], typer.Option("--xla/--no-xla", help="Compile the step with XLA.")] = None,
    strategy: Annotated[Optional[Strategy], typer.Option(help="tf.distribute strategy.")] = None,
    sync_bn: Annotated[Optional[bool], typer.Option("--sync-bn/--no-sync-bn", help="Synchronised batch norm.")] = None,
    cache: Annotated[Optional[bool], typer.Option("--cache/--no-cache", help="Keep the data in memory.")] = None,
    # -- the loss and D's regularisers (gan/regularize.py; measured in docs/quality.md's ablation)
    loss: Annotated[Optional[GanLoss], typer.Option(help="GAN loss: nonsaturating (the paper's BCE) or hinge.")] = None,
    spectral_norm: _SpectralNormOpt = None,
    d_norm: _DNormOpt = None,
    r1_gamma: Annotated[Optional[float], typer.Option(help="R1 penalty weight on real images (0: off).")] = None,
    r1_interval: Annotated[Optional[int], typer.Option(help="Lazy R1: apply it every N steps, scaled by N.")] = None,
    bcr: Annotated[Optional[float], typer.Option(help="Balanced consistency regularisation weight (0: off).")] = None,
):
    """Train a DCGAN, writing checkpoints and a sample grid every epoch.

    Example: dcgan train --data data/processed/celeba-64 --epochs 25
    """
    cfg = TrainConfig.start_or_resume(resume, TRAIN_SETTINGS.given(locals()), data=data, data_dir=data_dir,
                                      runs_dir=runs_dir, run_name=name, preset=preset.value)
    if dry_run:
        typer.echo(cfg.to_json(), nl=False)
        return
    from dcgan_cli.training.loop import train as run

    run_dir = run(cfg, resume=resume, quiet=quiet, verify_data=verify_data)  # checks resume and --eval-every-epochs itself
    typer.echo(f"Run directory: {run_dir}")


# ----------------------------------------------------------------------------
# sample


@app.command(renamed=GENERATOR_RENAMED, rich_help_panel=GENERATING)
def sample(
    out: Annotated[Optional[Path], typer.Argument(
        help="Grid image (.png, .jpg or .webp); an animated .gif with --interpolate. "
             "May be left out with --individual.", show_default=False)] = None,
    n: Annotated[Optional[int], typer.Option("-n", "--num", min=1, show_default=str(sampling.DEFAULT_COUNT),
                                             help="Number of images (with --seeds, how many it lists).")] = None,
    run: Annotated[Optional[Path], typer.Option(help="Run directory (default: the newest under --runs-dir).")] = None,
    generator: GeneratorFile = None,
    seed: Annotated[Optional[int], typer.Option(min=0, show_default="0",
                                                help="Image k uses seed S+k: same seed, same image.")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Exact seeds, as ranges and lists: 0-99,120,200-210.")] = None,
    nrow: Annotated[Optional[int], typer.Option(min=1, help="Images per row (default: near-square).")] = None,
    truncation: Annotated[Optional[float], typer.Option(
        metavar="PSI", help="0 < PSI <= 1: draw latents from the central PSI of the normal; "
                            "trades variety for typical, cleaner faces (try 0.7).")] = None,
    individual: Annotated[Optional[Path], typer.Option(
        metavar="DIR", help="Also write one PNG per image into DIR, named by seed (seed-0007.png).")] = None,
    interpolate: Annotated[Optional[int], typer.Option(
        min=2, metavar="K", help="Walk through K latents (slerp) and back, into an animated OUT.gif.")] = None,
    frames: Annotated[Optional[int], typer.Option(min=1, help="Frames per leg of the walk.",
                                                  show_default=str(sampling.DEFAULT_FRAMES))] = None,
    fps: Annotated[float, typer.Option(min=1, max=100, help="Frames per second of the GIF.")] = 25.0,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Use the raw generator, not its EMA.")] = False,
    best: Annotated[bool, typer.Option("--best", help="The run's best-scoring checkpoint (RUN/best/, kept by "
                                                      "train --eval-every-epochs), not its newest.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Latents per generator call (memory vs speed).")] = 64,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing OUT (and seed files in "
                                        "--individual DIR).")] = False,
    latents: Annotated[Optional[str], typer.Option(
        metavar="FILE.npy", help="Draw these latents (N, latent_dim) instead of seeds, e.g. the latents.npy "
                                 "`dcgan project` wrote; or arithmetic on files' mean latents, as in the DCGAN "
                                 "paper: \"smiling_woman.npy - neutral_woman.npy + neutral_man.npy\".",
        show_default=False)] = None,
    class_name: Annotated[Optional[str], typer.Option(
        "--class", metavar="NAME", help="A run trained with --condition classes: draw this class (e.g. 7). "
        "Without --class or --attr such a run draws a grid with one row per class.", show_default=False)] = None,
    attr: Annotated[Optional[str], typer.Option(
        metavar="A=1,B=0", help="A run trained with --condition attributes: fix these attributes (1 present, "
        "0 absent); each image's others are drawn from the training images that share the fixed ones (from "
        "each attribute's frequency when none does).", show_default=False)] = None,
    runs_dir: RunsDir = RUNS_DIR,
):
    """Write faces from a trained generator: a grid, one file per seed, or a latent walk.

    Image k comes from its seed alone, so the same seed and model give the same
    bytes, and --seeds 7 draws the same face as seed 7 inside --seeds 0-99.

    Example: dcgan sample -n 16 out.png --seed 42
    """
    from dcgan_cli.generate import sampling

    request = sampling.SampleRequest(  # every cross-option check, before any model loads (usage errors)
        out=out, n=n, run=run, generator=generator, seed=seed, seed_list=seeds, nrow=nrow, truncation=truncation,
        individual=individual, interpolate=interpolate, frames=frames, fps=fps, ema=not no_ema, best=best,
        batch_size=batch_size, runs_dir=runs_dir, force=force, latents=latents, class_name=class_name, attr=attr)
    typer.echo(sampling.fulfil(request, say=lambda m: typer.echo(m, err=True)))


# ----------------------------------------------------------------------------
# stylize


@app.command(renamed={**GENERATOR_RENAMED, "--save-every": "--save-every-steps"}, rich_help_panel=GENERATING)
def stylize(
    images: Annotated[list[Path], typer.Argument(
        metavar="[CONTENT] STYLE", help="The content image and the style image; with --run or --generator, the "
                                        "style image alone.", show_default=False)],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output image (.png, .jpg or .webp); a grid with --run "
                                                          "or --generator.", show_default=False)],
    size: Annotated[Optional[int], typer.Option(
        help="Longer side of the output in pixels.",
        show_default=f"{style_transfer.DEFAULT_SIZE}; generated faces: the generator's side, at least 64")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Adam steps on the pixels.")] = _STYLE.steps,
    content_weight: Annotated[float, typer.Option(min=0, help="alpha, the weight of the content term.")
                              ] = _STYLE.content_weight,
    style_weight: Annotated[float, typer.Option(min=0, help="beta, the weight of the style term.")
                            ] = _STYLE.style_weight,
    tv_weight: Annotated[float, typer.Option(min=0, help="Weight of the total-variation (smoothness) term.")
                         ] = _STYLE.tv_weight,
    init: Annotated[str, typer.Option(help="content | noise: where the pixels start.")] = _STYLE.init,
    features: Annotated[str, typer.Option(
        help="auto (VGG19 when its ImageNet weights are in Keras' cache: `dcgan download vgg19`; else random) | "
             "random (a seeded random VGG-shaped network) | vgg19 | vgg19:FILE (Keras' "
             "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5).")] = _STYLE.features,
    vgg_weights: Annotated[Optional[Path], typer.Option(
        help="VGG19 ImageNet weights file (Keras' vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5) to use.",
        show_default=False)] = None,
    content_layer: Annotated[Optional[str], typer.Option(
        help="Content layer.",
        show_default="; ".join(f"{k}: {v}" for k, v in style_transfer.CONTENT_LAYER.items()))] = None,
    style_layers: Annotated[Optional[str], typer.Option(
        help="Style layers and their relative weights, e.g. block1_conv1:1,block2_conv1:0.5.",
        show_default=f"{','.join(style_transfer.STYLE_LAYERS)}, equal")] = None,
    lr: Annotated[float, typer.Option(help="Adam's learning rate (pixels in [0, 1]).")] = _STYLE.lr,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the noise start and the random network.")] = _STYLE.seed,
    save_every_steps: Annotated[int, typer.Option(min=0, help="Also write OUT.step-NNNN.png every N steps "
                                                              "(0: off).")] = _STYLE.save_every_steps,
    run: Annotated[Optional[Path], typer.Option(help="Stylise faces generated by this run's generator.")] = None,
    generator: Annotated[Optional[Path], typer.Option(
        "--generator", help="... or by this generator .keras file.", show_default=False)] = None,
    seeds: Annotated[Optional[str], typer.Option(help="With --run/--generator: the faces' seeds "
                                                      f"(default {style_transfer.DEFAULT_SEEDS}).",
                                                 show_default=False)] = None,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="With --run: the raw generator, not its EMA.")] = False,
    identity_model: Annotated[Optional[Path], typer.Option(
        "--identity-model", help="With --run/--generator: an identity model (embedding.keras or its run, from "
                                 "`dcgan identity train`): count the stylised faces that still verify as their "
                                 "original.", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
):
    """Neural style transfer (Gatys et al.): paint CONTENT in the style of STYLE.

    Gradient descent on the pixels minimises alpha * content + beta * style +
    tv; the same seed and inputs give the same bytes. With --run or --generator,
    stylises generated faces and writes a grid: a row of faces, then the same
    faces stylised.

    Example: dcgan stylize face.png starry.jpg -o styled.png --steps 300
    """
    from dcgan_cli.generate import stylize as st

    options = st.StyleOptions(
        size=size, steps=steps, content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
        init=init, features=st.features_spec(features, vgg_weights), seed=seed, lr=lr, content_layer=content_layer, save_every_steps=save_every_steps,
        style_layers=st.parse_style_layers(style_layers) if style_layers is not None else ())
    request = st.StylizeRequest(  # every cross-option check, before any image or model loads (usage errors)
        images=tuple(images), out=out, run=run, generator=generator, seeds=seeds, ema=not no_ema,
        identity_model=identity_model, options=options)
    from dcgan_cli.identity.verification import resolve_model, same_person_check

    typer.echo(st.fulfil(request, bar=lambda total: _loss_bar(total, quiet), log=lambda m: typer.echo(m, err=True),
                         make_verifier=lambda model: same_person_check(resolve_model(model))))


def _loss_bar(total: int, quiet: bool):
    """The progress bar (stderr) with each loss term; yields on_step(step, terms), a no-op when quiet."""
    import contextlib

    @contextlib.contextmanager
    def bar():
        from rich.console import Console

        from dcgan_cli.progress import Bars

        with Bars(not quiet, console=Console(stderr=True), transient=True, only_on_terminal=True) as bars:
            task = bars.task("stylize", total)
            yield lambda step, t: task.advance(1, info=f"loss {t['total']:.3g}  content {t['content']:.3g}  "
                                                       f"style {t['style']:.3g}  tv {t['tv']:.3g}")

    return bar()


# ----------------------------------------------------------------------------
# face repair: project, inpaint

Photos = Annotated[list[Path], typer.Argument(help="Photo files; each is cropped as the run's data was.",
                                              show_default=False)]
def _out_path(text: str) -> Path:
    """An output path as typed: "" (an unset variable) is refused rather than read as the current directory."""
    if not text.strip():
        raise typer.BadParameter("is empty (an unset variable?); name where to write")
    return Path(text)


RepairOut = Annotated[Path, typer.Option("-o", "--out", parser=_out_path, metavar="<path>", help="Output folder: NAME.png per photo, latents.npy, "
                                                             "and a .json of the losses.", show_default=False)]
RepairRun = Annotated[Optional[Path], typer.Option(help="Run directory (default: the newest under --runs-dir).")]
RepairCrop = Annotated[Optional[Crop], typer.Option(help="How to crop the photos (default: as the run's data was "
                                                         "cropped, from its manifest).", show_default=False)]
Steps = Annotated[int, typer.Option(min=1, help="Adam steps on z per start.")]
Restarts = Annotated[int, typer.Option(min=1, help="Random starts per photo; of those that fit best, the one D finds "
                                                   "most real is kept.")]
Lr = Annotated[float, typer.Option(help="Adam's learning rate on z.")]
RepairSeed = Annotated[int, typer.Option(min=0, help="Seed of the starts (and of --mask-kind random): same seed, "
                                                     "same bytes.")]
RepairBatch = Annotated[int, typer.Option(min=1, help="Rows (photos x starts) per optimisation batch.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]


def _repair(request, quiet: bool) -> None:
    """Run a project/inpaint request with its progress bar (stderr); print its summary."""
    from rich.console import Console

    from dcgan_cli.generate import repair
    from dcgan_cli.progress import Bars

    with Bars(not quiet, console=Console(stderr=True), transient=True,
              only_on_terminal=True) as bars:
        typer.echo(repair.fulfil(request, say=lambda m: typer.echo(m, err=True),
                                 bar=lambda what, total: bars.task(what, total).advance))


@app.command(rich_help_panel=GENERATING)
def project(
    photos: Photos,
    out: RepairOut,
    run: RepairRun = None,
    crop: RepairCrop = None,
    steps: Steps = _SEARCH.steps,
    restarts: Restarts = _SEARCH.restarts,
    lr: Lr = _SEARCH.lr,
    feature_weight: Annotated[float, typer.Option(min=0, help="Weight of the discriminator-feature term beside "
                                                              "the pixel MSE.")] = _SEARCH.feature_weight,
    seed: RepairSeed = _SEARCH.seed,
    batch_size: RepairBatch = _SEARCH.batch_size,
    force: Annotated[bool, typer.Option("--force", help="Replace outputs already in OUT.")] = False,
    quiet: Quiet = False,
    runs_dir: RunsDir = RUNS_DIR,
):
    """Find the latent z whose generated face is closest to each photo (GAN inversion).

    Gradient descent (Adam) on z minimises the pixel MSE plus the distance of
    the discriminator's features, from several random starts per photo, and
    keeps the best. `dcgan sample --latents OUT/latents.npy` draws them again.

    Example: dcgan project me.jpg you.jpg --run runs/00003-celeba-64-dcgan -o projected
    """
    from dcgan_cli.generate import repair

    request = repair.RepairRequest(
        "project", tuple(photos), out, run=run, crop=crop.value if crop else None, force=force, runs_dir=runs_dir,
        search=repair.Search(steps=steps, restarts=restarts, lr=lr, seed=seed, batch_size=batch_size,
                             feature_weight=feature_weight))
    _repair(request, quiet)


@app.command(rich_help_panel=GENERATING)
def inpaint(
    photos: Photos,
    out: RepairOut,
    mask: Annotated[Optional[Path], typer.Option(help="A PNG of the cropped photo's size, white where pixels are "
                                                      "missing.", show_default=False)] = None,
    box: Annotated[Optional[str], typer.Option(metavar="X,Y,W,H", help="A missing rectangle, in the cropped "
                                                                       "photo's pixels.", show_default=False)] = None,
    mask_kind: Annotated[Optional[MaskKind], typer.Option(
        help="center: the middle quarter of the area; random: 80% of the pixels (from --seed); eyes: a band "
             "across the eyes.", show_default=False)] = None,
    run: RepairRun = None,
    crop: RepairCrop = None,
    steps: Steps = _SEARCH.steps,
    restarts: Restarts = _SEARCH.restarts,
    lr: Lr = _SEARCH.lr,
    prior_weight: Annotated[float, typer.Option(min=0, help="lambda of the prior loss log(1 - D(G(z))).")
                            ] = _SEARCH.prior_weight,
    window: Annotated[int, typer.Option(min=1, help="Side of the window of the context weights.")] = _SEARCH.window,
    seed: RepairSeed = _SEARCH.seed,
    batch_size: RepairBatch = _SEARCH.batch_size,
    force: Annotated[bool, typer.Option("--force", help="Replace outputs already in OUT.")] = False,
    quiet: Quiet = False,
    runs_dir: RunsDir = RUNS_DIR,
):
    """Fill in the missing part of each photo with the generator (Yeh et al. 2017).

    Finds z whose G(z) matches the known pixels near the hole (the context
    loss, weighted by closeness to the hole) and looks real to the
    discriminator (the prior loss), then Poisson-blends G(z) into the hole.

    Example: dcgan inpaint face.jpg --mask-kind center --run runs/00003-celeba-64-dcgan -o repaired
    """
    from dcgan_cli.generate import repair

    request = repair.RepairRequest(
        "inpaint", tuple(photos), out, run=run, crop=crop.value if crop else None, mask=mask, box=box,
        mask_kind=mask_kind.value if mask_kind else None, force=force, runs_dir=runs_dir,
        search=repair.Search(steps=steps, restarts=restarts, lr=lr, seed=seed, batch_size=batch_size,
                             prior_weight=prior_weight, window=window))
    _repair(request, quiet)


# ----------------------------------------------------------------------------
# latent directions and editing (InterFaceGAN)


@app.command(rich_help_panel=GENERATING)
def directions(
    run: Annotated[Optional[Path], typer.Option(help="Run directory (default: the newest under --runs-dir).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Its labelled shards (default: the data the run trained on).",
                                                 show_default=False)] = None,
    samples: Annotated[int, typer.Option(min=20, help="Generated samples scored by the classifier.")
                       ] = _DIRECTIONS.samples,
    share: Annotated[float, typer.Option(help="The top and bottom share of the scored samples that fit each "
                                              "boundary.")] = _DIRECTIONS.share,
    classifier_epochs: Annotated[int, typer.Option(min=1, help="Epochs of the attribute classifier (trained once, "
                                                               "kept in the run).")] = _DIRECTIONS.epochs,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the samples, the classifier and the splits.")
                    ] = _DIRECTIONS.seed,
    force: Annotated[bool, typer.Option("--force", help="Fit the directions again (the kept classifier is "
                                                        "reused).")] = False,
    retrain: Annotated[bool, typer.Option("--retrain", help="Train the attribute classifier again too.")] = False,
    runs_dir: RunsDir = RUNS_DIR,
):
    """Find a direction in z per attribute of the run's data (InterFaceGAN), for `dcgan edit`.

    Trains an attribute classifier on the labelled shards once (CelebA's
    attributes; on class folders or MNIST, each class one-vs-rest), scores
    generated samples with it, and fits a linear boundary in z per attribute.
    Prints the classifier's and the boundaries' held-out accuracy.

    Example: dcgan directions --run runs/00003-celeba-64-dcgan
    """
    from dcgan_cli.generate import directions as dirs

    request = dirs.DirectionsRequest(run=run, data=data, samples=samples, share=share, seed=seed,
                                     epochs=classifier_epochs, force=force, retrain=retrain, runs_dir=runs_dir)
    typer.echo(dirs.fulfil_directions(request, say=lambda m: typer.echo(m, err=True)))


@app.command(rich_help_panel=GENERATING)
def edit(
    photos: Annotated[Optional[list[Path]], typer.Argument(
        help="Photos to edit (projected into the run first, as `dcgan project` does).", show_default=False)] = None,
    run: Annotated[Optional[Path], typer.Option(help="Run directory (default: the newest under --runs-dir).")] = None,
    attr: Annotated[Optional[str], typer.Option(
        metavar="NAME=A,...", help="Move along these directions: A is a distance in z (try 1 to 3; negative: "
                                   "less of it), e.g. Smiling=+2,Eyeglasses=-1.", show_default=False)] = None,
    keep: Annotated[Optional[str], typer.Option(
        metavar="NAME,...", help="Hold these attributes fixed while editing (e.g. Male,Young).",
        show_default=False)] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Edit the faces of these seeds (as in sample): 0-7,12.",
                                                 show_default=False)] = None,
    latents: Annotated[Optional[Path], typer.Option(
        metavar="FILE.npy", help="Edit these latents (N, latent_dim), e.g. project's latents.npy.",
        show_default=False)] = None,
    sweep: Annotated[Optional[str], typer.Option(
        metavar="NAME", help="Sweep this attribute from -K to +K: a strip per input, or a .gif.",
        show_default=False)] = None,
    frames: Annotated[Optional[int], typer.Option(help="Frames of --sweep.",
                                                  show_default=str(edit_lib.DEFAULT_FRAMES))] = None,
    sweep_to: Annotated[Optional[float], typer.Option(metavar="K", help="--sweep goes from -K to +K.",
                                                      show_default=str(edit_lib.DEFAULT_SWEEP_TO))] = None,
    out: Annotated[Optional[Path], typer.Option(
        "-o", "--out", help="A grid (.png, .jpg, .webp), one row per input: before and after (a photo: the photo, its "
                            "projection, the edit); with --sweep a strip, or an animated .gif.", show_default=False)] = None,
    individual: Annotated[Optional[Path], typer.Option(
        metavar="DIR", help="Also write one PNG per edited image into DIR (seed-0007.png, latent-0003.png, "
                            "PHOTO.png; with --sweep NAME-fNN.png).", show_default=False)] = None,
    crop: RepairCrop = None,
    steps: Steps = _SEARCH.steps,
    restarts: Restarts = _SEARCH.restarts,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the photos' projection starts.")] = _SEARCH.seed,
    force: Annotated[bool, typer.Option("--force", help="Replace existing outputs.")] = False,
    quiet: Quiet = False,
    runs_dir: RunsDir = RUNS_DIR,
):
    """Edit faces along the run's attribute directions (made by `dcgan directions`).

    Seeds, a latents file or photos (projected first) move by A along each
    attribute's unit normal in z; --keep holds other attributes fixed
    (InterFaceGAN's conditional edit). On a digits run, --attr 3=+2 means
    "more like a 3".

    Example: dcgan edit --run runs/00003-celeba-64-dcgan --attr Smiling=+2 --keep Male --seeds 0-7 -o smile.png
    """
    from rich.console import Console

    from dcgan_cli.generate import edit as ed, repair
    from dcgan_cli.progress import Bars

    request = ed.EditRequest(
        run=run, photos=tuple(photos or ()), seed_list=seeds, latents=latents, attr=attr, keep=keep, sweep=sweep,
        frames=frames, sweep_to=sweep_to, out=out, individual=individual, crop=crop.value if crop else None,
        search=repair.Search(steps=steps, restarts=restarts, seed=seed), force=force, runs_dir=runs_dir)
    with Bars(not quiet, console=Console(stderr=True), transient=True, only_on_terminal=True) as bars:
        typer.echo(ed.fulfil(request, say=lambda m: typer.echo(m, err=True),
                             bar=lambda what, total: bars.task(what, total).advance))
# faces in whole photos: anonymize, restore

MinFace = Annotated[int, typer.Option(min=1, help="Leave faces whose detector box is under N pixels alone.")]


def _photo_faces(module: str, request, quiet: bool, **extra) -> None:
    """Run an anonymize/restore request with its progress bar (stderr); print its summary."""
    import importlib

    from rich.console import Console

    from dcgan_cli.progress import Bars

    with Bars(not quiet, console=Console(stderr=True), transient=True, only_on_terminal=True) as bars:
        typer.echo(importlib.import_module(f"dcgan_cli.generate.{module}").fulfil(
            request, say=lambda m: typer.echo(m, err=True), bar=lambda what, total: bars.task(what, total).advance,
            **extra))


@app.command(rich_help_panel=GENERATING)
def anonymize(
    photos: Annotated[list[Path], typer.Argument(help="Photos; every face found in them is replaced.",
                                                 show_default=False)],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder: NAME.png, NAME.json (boxes, scores), "
                                                          "NAME-faceK.npy per face.", show_default=False)],
    run: RepairRun = None,
    crop: Annotated[Optional[Crop], typer.Option(help="The faces' alignment (default: the run's data's; it must "
                                                      "be face).", show_default=False)] = None,
    identity_model: Annotated[Optional[Path], typer.Option(help="An embedding model (dcgan identity train): each "
                                                                "new face must verify as another person.",
                                                           show_default=False)] = None,
    min_face: MinFace = 20,
    steps: Steps = _SEARCH.steps,
    restarts: Restarts = _SEARCH.restarts,
    seed: RepairSeed = _SEARCH.seed,
    batch_size: RepairBatch = _SEARCH.batch_size,
    force: Annotated[bool, typer.Option("--force", help="Replace outputs already in OUT.")] = False,
    quiet: Quiet = False,
    runs_dir: RunsDir = RUNS_DIR,
):
    """Replace every face in each photo with one the run's generator draws to fit its surroundings.

    Each face the detector finds is aligned as the run's data was; its whole
    box is inpainted (context loss on the kept surroundings, z on the latent
    sphere), mapped back and feathered inside the box: every pixel outside the
    faces keeps its bytes. A photo with no face is copied unchanged.

    Example: dcgan anonymize party.jpg --run runs/00003-celeba-64-dcgan -o anonymized --identity-model runs/00004-faces-id
    """
    from dcgan_cli.generate import anonymize as anon

    request = anon.AnonymizeRequest(
        tuple(photos), out, run=run, crop=crop.value if crop else None, identity_model=identity_model,
        min_face=min_face, force=force, runs_dir=runs_dir,
        search=_SEARCH(steps=steps, restarts=restarts, seed=seed, batch_size=batch_size))
    from dcgan_cli.identity.verification import distance_check

    _photo_faces("anonymize", request, quiet, make_checker=distance_check)


@app.command(rich_help_panel=GENERATING)
def restore(
    photos: Annotated[list[Path], typer.Argument(help="Face crops in the run's framing (or whole photos with "
                                                      "--crop face).", show_default=False)],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder: NAME.png, NAME.json (consistency), "
                                                          "NAME-faceK.npy per face.", show_default=False)],
    degradation: Annotated[str, typer.Option(help="What happened to the faces: downsample[:F], blur:SIGMA, "
                                                  "noise:SIGMA, joined by + (F from the input's size when not "
                                                  "given).", show_default=False)],
    run: RepairRun = None,
    crop: Annotated[Optional[Crop], typer.Option(help="face: find the faces in whole photos and paste the "
                                                      "restored ones back.", show_default=False)] = None,
    min_face: MinFace = 8,
    steps: Steps = _SEARCH.steps,
    restarts: Restarts = _SEARCH.restarts,
    lr: Lr = _SEARCH.lr,
    prior_weight: Annotated[float, typer.Option(min=0, help="lambda of the realism term log(1 - D(G(z))).")
                            ] = _SEARCH.prior_weight,
    seed: RepairSeed = _SEARCH.seed,
    batch_size: RepairBatch = _SEARCH.batch_size,
    force: Annotated[bool, typer.Option("--force", help="Replace outputs already in OUT.")] = False,
    quiet: Quiet = False,
    runs_dir: RunsDir = RUNS_DIR,
):
    """Restore small, blurred or noisy faces: a sharp face that, degraded again, is the input (PULSE).

    Searches z on the latent sphere so that the degraded G(z) matches each input
    and D finds G(z) real; reports each result's consistency with its input.

    Example: dcgan restore tiny.png --degradation downsample --run runs/00003-celeba-64-dcgan -o restored
    """
    from dcgan_cli.generate import restore as rest

    request = rest.RestoreRequest(
        tuple(photos), out, degradation, run=run, crop=crop.value if crop else None, min_face=min_face, force=force,
        runs_dir=runs_dir, search=_SEARCH(steps=steps, restarts=restarts, lr=lr, seed=seed, batch_size=batch_size,
                                          prior_weight=prior_weight))
    _photo_faces("restore", request, quiet)


# ----------------------------------------------------------------------------
# export

Quantize = Enum("Quantize", {q: q for q in QUANTIZE}, type=str)

@app.command(rich_help_panel=GENERATING)
def export(
    run_dir: Annotated[Path, typer.Argument(help="Run directory to export the generator of.")],
    out: Annotated[Path, typer.Argument(help="OUT.keras, OUT.tflite, or a new folder for the SavedModel.")],
    format_: Annotated[Optional[ExportFormat], typer.Option(
        "--format", help="Default: keras for a name ending in .keras, tflite for .tflite, else savedmodel.",
        show_default=False)] = None,
    quantize: Annotated[Optional[Quantize], typer.Option(
        help="With --format tflite: float16 (weights in float16, about half the file) or dynamic (int8 weights, "
             "about a quarter); default float32.", show_default=False)] = None,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Export the raw generator, not its EMA.")] = False,
    best: Annotated[bool, typer.Option("--best", help="The run's best-scoring checkpoint (RUN/best/, kept by "
                                                      "train --eval-every-epochs), not its newest.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing export at OUT.")] = False,
):
    """Export a run's generator as a .keras file, a TensorFlow SavedModel or a TFLite file (phones).

    The SavedModel's serving_default signature takes `latent` (float32
    [N, latent_dim]) and returns `images` (uint8 [N, H, W, C]);
    tf.saved_model.load calls it without this package. The .tflite file has
    the same signature, for tf.lite.Interpreter or LiteRT.

    Example: dcgan export runs/00003-celeba-64-dcgan generator_savedmodel
    """
    from dcgan_cli.generate import sampling

    format_ = format_.value if format_ is not None else None
    from dcgan_cli.gan import generator_io

    fmt = sampling.check_export_target(out, format_, force)  # before the slow part
    if quantize is not None and fmt != "tflite":
        raise UsageError(f"quantization applies to --format tflite, not {fmt}", "--quantize")
    quantize = quantize.value if quantize is not None else None
    restored = generator_io.restore(run_dir, ema=not no_ema, best=best,
                                    warn=lambda m: typer.echo(f"Warning: {m}", err=True))
    path, fmt = sampling.export(restored, out, format_, force=force, quantize=quantize)
    cfg = restored.config
    nz, h, w, c = cfg.latent_dim, cfg.image_size, cfg.image_size, cfg.channels
    ny = int(restored.model.inputs[1].shape[-1]) if len(restored.model.inputs) > 1 else 0
    y_in = f", labels y [N, {ny}]" if ny else ""
    if fmt == "tflite":
        typer.echo(f"Exported the generator of {restored.describe()} to {path} as TFLite "
                   f"({quantize or 'float32'}, {path.stat().st_size / 1e6:.2f} MB): serving_default(latent float32 "
                   f"[N, {nz}]) -> images uint8 [N, {h}, {w}, {c}]")
    elif fmt == "keras":
        typer.echo(f"Exported the generator of {restored.describe()} to {path} "
                   f"(keras.saving.load_model; latents [N, {nz}]{y_in} -> images in [-1, 1])")
    else:
        typer.echo(f"Exported the generator of {restored.describe()} to {path} as a SavedModel: "
                   f"serving_default(latent float32 [N, {nz}]{y_in and ', labels float32 [N, ' + str(ny) + ']'}) "
                   f"-> images uint8 [N, {h}, {w}, {c}]")
    if ny:
        typer.echo(f"Label names and rows (y: one-hot class, or +1/-1 per attribute): "
                   f"{path.with_suffix('.labels.json') if fmt == 'keras' else path / 'labels.json'}")


# ----------------------------------------------------------------------------
# studio


@app.command(rich_help_panel=GENERATING)
def studio(
    run: Annotated[Optional[Path], typer.Option(help="Run directory (default: the newest under --runs-dir).")] = None,
    identity_model: Annotated[Optional[Path], typer.Option(
        "--identity-model", help="An embedding model (RUN/embedding.keras or its identity run): adds the Verify "
                                 "tab.", show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 is this machine only (reach it over "
                                           "SSH with ssh -L).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free one).")] = 7860,
    runs_dir: RunsDir = RUNS_DIR,
):
    """A local web app over a run's generator: draw, walk, repair, verify, and watch the run train.

    Needs the `ui` extra (pip install 'dcgan-cli\\[ui]'). Never shares a public
    link and sends nothing out; nothing is written into the run. Each button is
    also an API endpoint for gradio_client (draw(seed, count, truncation), walk,
    inpaint, project, verify).

    Example: dcgan studio --run runs/00003-celeba-64-dcgan --port 7860
    """
    import shutil

    from dcgan_cli.studio import actions, serve

    serve.check_gradio()  # before the model loads
    port = serve.check_address(host, port)
    if identity_model is not None:
        from dcgan_cli.identity.verification import resolve_model

        identity_model = resolve_model(identity_model, runs_dir)
    studio_ = actions.Studio.open(run, runs_dir, identity_model, warn=lambda m: typer.echo(f"Warning: {m}", err=True))
    try:
        serve.launch(studio_, host, port, say=lambda m: typer.echo(m, err=True))
    finally:
        shutil.rmtree(studio_.workdir, ignore_errors=True)


# ----------------------------------------------------------------------------
# bench


BENCH_PARTS_HELP = ("Comma-separated: step, loop, input, preprocess, quality (trains on offline digits and faces: "
                    "about half an hour on 2 cores), stylize (style transfer), identity (the face-embedding "
                    "network: img/s, and one-shot accuracy on unseen digits: minutes), repair (dcgan inpaint on "
                    "held-out faces and digits against mean fill and OpenCV's Telea: about 25 minutes); the last "
                    "four run only when asked.")
BENCH_PANELS = {
    DATA: ("data", "quality_sets"),
    MODEL: ("preset", "size", "augment", "quality_augment", "stylize_size"),
    SCHEDULE: ("steps", "batch_size", "quality_steps", "quality_seeds", "quality_curve", "repair_seeds",
               "repair_steps"),
    OUTPUT: ("json_", "quality_workdir", "repair_figure"),
    PERFORMANCE: ("precision", "xla", "peers", "torch_python"),
}


# bench's longer options, declared once here as train's are
_QualitySetsOpt = Annotated[str, typer.Option(help="Comma-separated data sets of the quality part: digits (sklearn's, "
                                                   "the figure of merit), faces (skimage's 100 LFW faces), faces80 "
                                                   "(80 of them, 20 held out: copy ratio and diversity; half an hour "
                                                   "per mode and seed).")]
_QualityAugmentOpt = Annotated[str, typer.Option(help="Comma-separated --augment modes of our model in the quality "
                                                      "part, each trained per seed against the same reference, e.g. "
                                                      "none,diffaug,ada.")]
_RepairFigureOpt = Annotated[Optional[Path], typer.Option(
    help="With --parts repair: also write a picture of held-out faces (masked | ours | Telea | real).",
    show_default=False)]


@app.command(panels=BENCH_PANELS, rich_help_panel=EVALUATING)
def bench(
    parts: Annotated[str, typer.Option(help=BENCH_PARTS_HELP)] = "step,loop,input,preprocess",
    data: Annotated[Optional[Path], typer.Option(help="Preprocessed data for the loop and input figures "
                                                      "(default: temporary synthetic shards).")] = None,
    quality_sets: _QualitySetsOpt = ",".join(QUALITY_SETS),
    face_images: Annotated[int, typer.Option(min=1, hidden=True, help="Photos of the face figure.")] = FACE_IMAGES,
    preset: Annotated[Preset, typer.Option(help="The recipe of the timed step and of our model in the quality "
                                                "part.")] = Preset("dcgan"),
    size: Annotated[int, typer.Option(help="Image side of the benchmarked model.")] = bench_suite.SIZE,
    augment: Annotated[Augment, typer.Option(help="Also time the step with this augmentation (diffaug, ada) "
                                                  "and give its img/s as a ratio to the plain step's."
                                             )] = Augment.none,
    quality_augment: _QualityAugmentOpt = "auto",
    stylize_size: Annotated[int, typer.Option(min=32, help="Image side of the stylize part.")] = STYLIZE_SIZE,
    steps: Annotated[int, typer.Option(min=1, help="Timed steps per measurement.")] = bench_suite.STEPS,
    batch_size: Annotated[int, typer.Option(min=1, help="Global batch size.")] = bench_suite.BATCH_SIZE,
    quality_steps: Annotated[Optional[int], typer.Option(
        min=1, help="Training steps per model and seed of the quality part, for every set.",
        show_default="; ".join(f"{s}: {n}" for s, n in QUALITY_STEPS.items()))] = None,
    quality_seeds: Annotated[int, typer.Option(min=1, help="Seeds of the quality part (0, 1, ...)."
                                               )] = len(QUALITY_SEEDS),
    quality_curve: Annotated[int, typer.Option(min=0, help="Score ours at this many evenly spaced points of each "
                                                           "run too (a long run's FD over steps).")] = 0,
    repair_seeds: Annotated[int, typer.Option(min=1, help="Seeds of the repair part (0, 1, ...)."
                                              )] = len(REPAIR_SEEDS),
    repair_steps: Annotated[Optional[int], typer.Option(
        min=1, help="Training steps per seed of the repair part.",
        show_default="; ".join(f"{s}: {n}" for s, n in REPAIR_STEPS.items()))] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    quality_workdir: Annotated[Optional[Path], typer.Option(
        help="Keep the quality part's data and trained runs here (default: a temporary folder).",
        show_default=False)] = None,
    repair_figure: _RepairFigureOpt = None,
    precision: Annotated[Precision, typer.Option(help="Compute precision (auto: by hardware).")] = Precision.auto,
    xla: Annotated[bool, typer.Option("--xla/--no-xla", help="Compile the step with XLA.")] = False,
    peers: Annotated[Optional[Path], typer.Option(help="Folder with peer_keras.py / peer_torch.py: time them "
                                                       "back to back and report ratios.")] = None,
    torch_python: Annotated[Optional[Path], typer.Option(help="A Python with torch, to run peer_torch.py.")] = None,
):
    """Measure img/s of the train step, the whole loop and the input pipeline; with
    `--parts quality`, the sample quality of the `dcgan` preset against a plain-Keras reference
    (and s/step of stylize, img/s and one-shot accuracy of the identity network, when asked).

    The quality part trains both on scikit-learn's digits and on scikit-image's
    100 LFW faces (32x32 grey), each set's own steps per seed unless --quality-steps, and prints FD,
    KID, class coverage (digits) or the share of faces, and the
    nearest-training-image distance of each, and the FD ratio ours/reference.

    Example: dcgan bench --steps 20 --peers ../shared/bench --json

    Example: dcgan bench --parts step --preset paper --peers ../shared/bench

    Example: dcgan bench --parts quality --quality-steps 1000

    Example: dcgan bench --parts quality --quality-sets digits --quality-steps 3000 --quality-curve 10

    Example: dcgan bench --parts repair --repair-seeds 3 --repair-figure docs/repair.png
    """
    import json

    from dcgan_cli.bench.suite import PARTS, parse_choices
    from dcgan_cli.bench.suite import bench as run
    from dcgan_cli.bench.quality import SETS
    from dcgan_cli.config import AUGMENTS

    wanted = parse_choices(parts, PARTS, "--parts")
    sets = parse_choices(quality_sets, SETS, "--quality-sets")
    modes = parse_choices(quality_augment, AUGMENTS, "--quality-augment")
    result = run(size=size, batch_size=batch_size, steps=steps, data=data, precision=precision.value, xla=xla,
                 peers=peers, torch_python=torch_python, parts=wanted, face_images=face_images,
                 stylize_size=stylize_size, quality_steps=quality_steps, quality_seeds=range(quality_seeds),
                 quality_sets=sets, quality_curve=quality_curve, quality_workdir=quality_workdir,
                 augment=augment.value, quality_augment=modes,
                 repair={"seeds": tuple(range(repair_seeds)), "steps": repair_steps, "figure": repair_figure},
                 preset_name=preset.value, log=(lambda m: None) if json_ else typer.echo)
    typer.echo(json.dumps(result) if json_ else json.dumps(result, indent=2))


# ----------------------------------------------------------------------------
# identity: who is this face?

identity_app = _App(name="identity", help="Train the face-embedding network (verify, identify and audit use it).",
                    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(identity_app, name="identity", rich_help_panel=FACES)


def _identity_default(field: str) -> str:
    """`identity train --FIELD`'s default as --help shows it: IdentityConfig's."""
    return _shown(next(f.default for f in dataclasses.fields(IdentityConfig) if f.name == field))


IDENTITY_SETTINGS = _Settings(IdentityConfig, own=("data", "data_dir", "runs_dir", "name", "resume", "dry_run",
                                                   "quiet"), shown=_identity_default)


@identity_app.command("train", renamed={"--checkpoint-every": "--checkpoint-every-steps"},
                      settings=IDENTITY_SETTINGS)
def identity_train(
    data: Annotated[Optional[Path], typer.Option(help="Preprocessed data with identities (`dcgan preprocess celeba`, "
                                                      "or a folder with --labels folders).")] = None,
    loss: Annotated[Optional[Loss], typer.Option(help="arcface (additive angular margin) or "
                                                      "triplet (online mining). Measured one-shot on unseen digits, "
                                                      "5 seeds: arcface 82.8%, triplet 80.1%, raw pixels 77.6%."
                                                 )] = None,
    mining: Annotated[Optional[Mining], typer.Option(help="Triplets for --loss triplet.")] = None,
    margin: Annotated[Optional[float], typer.Option(help="Triplet margin, in distance on the unit sphere.")] = None,
    arc_margin: Annotated[Optional[float], typer.Option(help="ArcFace's angular margin m in radians.")] = None,
    arc_scale: Annotated[Optional[float], typer.Option(help="ArcFace's logit scale s.")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs (may be raised on --resume).")] = None,
    steps_per_epoch: Annotated[Optional[int], typer.Option(min=0, help="Steps per epoch (0: one pass).")] = None,
    p_identities: Annotated[Optional[int], typer.Option(min=2, help="Identities per batch, P.")] = None,
    k_images: Annotated[Optional[int], typer.Option(min=2, help="Images per identity, K.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate (cosine decay).")] = None,
    width: Annotated[Optional[int], typer.Option(min=1, help="Filters of the first stage.")] = None,
    embedding_dim: Annotated[Optional[int], typer.Option(min=1, help="Embedding length.")] = None,
    holdout: Annotated[Optional[float], typer.Option(help="Identities never trained on, for evaluation: a share "
                                                          "(< 1) or a count.")] = None,
    flip: Annotated[Optional[bool], typer.Option("--flip/--no-flip", help="Random horizontal flips (off for digits "
                                                 "or text).")] = None,
    augment: Annotated[Optional[float], typer.Option(help="Random shifts/zooms up to this share of the side "
                                                          "(0: none).")] = None,
    class_augment: Annotated[Optional[ClassAugment], typer.Option(
        help="dihedral: each identity's images turned by 90/180/270 degrees and mirrored count as 7 more "
             "identities, and an epoch is 8x longer (for digits or characters with few classes, never faces; "
             "needs --no-flip).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the weights and batches.")] = None,
    checkpoint_every_steps: Annotated[Optional[int], typer.Option(
        min=0, help="Also checkpoint every N steps (0: per epoch only).")] = None,
    runs_dir: RunsDir = RUNS_DIR,
    name: Annotated[str, typer.Option(help="Suffix for the run directory's name.")] = "",
    resume: Annotated[Optional[Path], typer.Option(help="Continue this identity run directory.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved config and exit.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="One log line per epoch, no progress bar.")] = False,
    data_dir: DataDir = None,
):
    """Train the embedding network (face -> 128 numbers) on the data's training identities.

    A share of the identities (--holdout) is never trained on; at the end the
    network is scored on them with the LFW protocol and the distance threshold
    is stored beside RUN/embedding.keras, ready for `dcgan verify`.

    Example: dcgan identity train --data data/processed/celeba-64 --epochs 10
    """
    cfg = IdentityConfig.start_or_resume(resume, IDENTITY_SETTINGS.given(locals()), data=data, data_dir=data_dir,
                                         runs_dir=runs_dir, run_name=name)
    if dry_run:
        typer.echo(cfg.to_json(), nl=False)
        return
    from dcgan_cli.identity.train import train_identity

    run_dir = train_identity(cfg, resume=resume, quiet=quiet, log=lambda m: typer.echo(m, err=True))
    typer.echo(f"Run directory: {run_dir}")


ThresholdOpt = Annotated[Optional[float], typer.Option(
    help="Distance threshold (default: the one stored with the model).", show_default=False)]


@app.command(renamed=IDENTITY_RENAMED, rich_help_panel=FACES)
def verify(
    image_a: Annotated[Path, typer.Argument(metavar="A", help="A photo.")],
    image_b: Annotated[Path, typer.Argument(metavar="B", help="Another photo.")],
    identity_model: IdentityModel = None,
    threshold: ThresholdOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    runs_dir: RunsDir = RUNS_DIR,
):
    """Are A and B the same person? Prints verified, distance, threshold and model.

    Photos are cropped and resized the way the model's training data was.
    Exit code 0 either way; read `verified` (or the JSON).

    Example: dcgan verify me.jpg passport.jpg --json
    """
    import json

    from dcgan_cli.identity.verification import resolve_model, verify as run

    r = run(image_a, image_b, resolve_model(identity_model, runs_dir), threshold)
    if json_:
        typer.echo(json.dumps(r))
    else:
        typer.echo("\n".join(f"{k:9s} {str(r[k]).lower() if k == 'verified' else r[k]}"
                             for k in ("verified", "distance", "threshold", "model")))


@app.command(renamed=IDENTITY_RENAMED, rich_help_panel=FACES)
def identify(
    face: Annotated[Path, typer.Argument(help="The photo of someone.")],
    gallery: Annotated[Path, typer.Option(help="A folder with one photo per person: NAME.jpg, or NAME/photo.jpg.")],
    identity_model: IdentityModel = None,
    top: Annotated[int, typer.Option(min=1, help="How many nearest people to list.")] = 5,
    threshold: ThresholdOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    runs_dir: RunsDir = RUNS_DIR,
):
    """Who is this face? The nearest people of a one-photo-per-person gallery, or "unknown".

    Example: dcgan identify someone.jpg --gallery people/ --top 3
    """
    import json

    from dcgan_cli.identity.verification import identify as run, resolve_model

    r = run(face, gallery, resolve_model(identity_model, runs_dir), top, threshold)
    if json_:
        typer.echo(json.dumps(r))
        return
    typer.echo(f"{r['identity']}  (threshold {r['threshold']}, {r['people']} people in {r['gallery']})")
    for m in r["matches"]:
        typer.echo(f"  {m['distance']:.4f}  {m['identity']}{'' if m['match'] else '  (over the threshold)'}")


@app.command(renamed={**GENERATOR_RENAMED, "--model-id": "--identity-model"}, rich_help_panel=FACES)
def audit(
    run: Annotated[Optional[Path], typer.Option(help="The GAN run to audit (default: the newest under --runs-dir).",
                                                show_default=False)] = None,
    generator: GeneratorFile = None,
    images: Annotated[Optional[Path], typer.Option(help="Audit these image files instead of a generator "
                                                        "(needs --data).", show_default=False)] = None,
    identity_model: IdentityModel = None,
    data: Annotated[Optional[Path], typer.Option(help="The training data (default: the run's).",
                                                 show_default=False)] = None,
    samples: Annotated[int, typer.Option(min=1, help="Generated images to audit.")] = AUDIT_SAMPLES,
    seed: Annotated[int, typer.Option(min=0, help="Sample k uses seed S+k, as `dcgan sample`.")] = 0,
    threshold: ThresholdOpt = None,
    pixel_rmse: Annotated[float, typer.Option(help="Pixel near duplicate: RMS difference under this (0-1) on "
                                                   "16x16 grey thumbnails.")] = AUDIT_PIXEL_RMSE,
    grid: Annotated[Optional[Path], typer.Option(parser=_out_path, metavar="<path>", help="PNG of the closest pairs (default: "
                                                      f"{AUDIT_GRID_FILE} in the run).", show_default=False)] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    runs_dir: RunsDir = RUNS_DIR,
):
    """Does the generator reproduce real people from its training set?

    Shares of samples that the identity model calls the same person as a
    training face (threshold at FAR 0.1%) and that are pixel near-duplicates,
    with 95% intervals, next to the share for real faces of held-out people.

    Example: dcgan audit --run runs/00003-celeba-64-dcgan --samples 10000
    """
    import json

    from dcgan_cli.identity.audit import audit as run_audit, format_audit

    r = run_audit(identity_model, run=run, generator=generator, images=images, data=data,
                  samples=samples, seed=seed, threshold=threshold, pixel_rmse=pixel_rmse, grid=grid,
                  runs_dir=runs_dir, log=lambda m: typer.echo(m, err=True))
    typer.echo(json.dumps(r) if json_ else format_audit(r))


# ----------------------------------------------------------------------------
# evaluate


def _evaluate_model_flag(args: list[str]) -> str:
    """evaluate's old --model named the embedding network with --verification, else the generator."""
    return "--identity-model" if "--verification" in args else "--generator"


@app.command(renamed={"--model": _evaluate_model_flag}, rich_help_panel=EVALUATING)
def evaluate(
    run: Annotated[Optional[Path], typer.Option(help="Run directory (default: the newest under --runs-dir).")] = None,
    generator: GeneratorFile = None,
    data: Annotated[Optional[Path], typer.Option(help="Preprocessed real data (default: the run's).")] = None,
    samples: Annotated[int, typer.Option(min=2, help="Generated images to score (FID needs 2048+).")] = 10_000,
    metrics: Annotated[str, typer.Option(help=f"Comma-separated: {', '.join(METRICS)}.")] = ",".join(METRICS),
    inception_weights: Annotated[Optional[Path], typer.Option(
        help="Local copy of the extractor's file: Keras' InceptionV3 no-top ImageNet weights (or "
             "$DCGAN_INCEPTION_WEIGHTS), or for inception-2015 the classify_image_graph_def.pb (default: Keras' "
             "cache; `dcgan download inception-2015` fills it).", show_default=False)] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the table.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the generated images' latents.")] = 0,
    real_samples: Annotated[int, typer.Option(min=0, help="Use a fixed random subset of this many real "
                                                          "images (0: all; cached per size).")] = 0,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Score the raw generator, not its EMA.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Images generated and embedded at a time.")] = 64,
    runs_dir: RunsDir = RUNS_DIR,
    extractor: Annotated[str, typer.Option(help="Feature extractor: inception_v3; inception-2015 (the papers' "
                                                "FID: TTUR, StudioGAN) or inception-2015-clean (clean-fid's "
                                                "resize), which also give IS; or any Keras model as "
                                                "FILE.keras (its penultimate layer) or FILE.keras:LAYER, e.g. a "
                                                "classifier of your own data, on machines without the Inception "
                                                "weights.")] = "inception_v3",
    verification: Annotated[bool, typer.Option("--verification", help="Score an embedding model instead "
                                               "(--identity-model): the LFW protocol on its held-out identities; "
                                               "stores the threshold with the model.")] = False,
    identity_model: IdentityModel = None,
    pairs: Annotated[int, typer.Option(min=20, help="With --verification: pairs, half same person (LFW: 6000).")
                     ] = 6000,
    roc: Annotated[Optional[Path], typer.Option(help="With --verification: where to write the ROC curve "
                                                     "(default: roc.png beside the model).", show_default=False)] = None,
    all_checkpoints: Annotated[bool, typer.Option("--all-checkpoints", help="Score every kept checkpoint of the "
                                                  "run (and best/) once, cached; write RUN/eval.png.")] = False,
    checkpoints: Annotated[Optional[str], typer.Option(help="Like --all-checkpoints, for these checkpoint "
                                                             "steps (as training printed them), e.g. 500,1000.",
                                                       show_default=False)] = None,
):
    """Score a generator with FID, KID, precision/recall, density/coverage (and IS) against real data.

    Real-image statistics are cached beside the data's manifest.json, so only
    the first evaluation of a data set embeds it. Results are appended to the
    run's metrics.jsonl.

    With --verification it scores a face-embedding model instead (`dcgan identity
    train`): accuracy, ROC AUC and TAR at FAR 0.1% on held-out identities.

    Example: dcgan evaluate --run runs/00003-celeba-64-dcgan --samples 10000
    """
    import json

    from dcgan_cli.metrics import evaluate as ev

    ev.check_target(verification, run=run, generator=generator, identity_model=identity_model)
    if verification:
        from dcgan_cli.identity.verification import evaluate_verification, format_verification, resolve_model

        result = evaluate_verification(resolve_model(identity_model, runs_dir), data, pairs=pairs, roc=roc,
                                       log=lambda m: typer.echo(m, err=True))
        typer.echo(json.dumps(result) if json_ else format_verification(result))
        return
    opts = ev.EvalOptions(samples=samples, metrics=ev.parse_metrics(metrics), extractor=extractor,
                          weights=str(inception_weights) if inception_weights else None, seed=seed,
                          batch_size=batch_size, real_samples=real_samples)
    say = lambda m: typer.echo(m, err=True)  # noqa: E731 - stdout is for the result
    if all_checkpoints or checkpoints is not None:
        from dcgan_cli.metrics import curves

        result = curves.curve_target(run, generator, data, opts, all_checkpoints=all_checkpoints,
                                     checkpoints=checkpoints, ema=not no_ema, runs_dir=runs_dir, log=say)
        typer.echo(json.dumps(result) if json_ else curves.format_curve(result))
        return
    result = ev.evaluate_target(run, generator, data, opts, ema=not no_ema, runs_dir=runs_dir, log=say)
    typer.echo(json.dumps(result) if json_ else ev.format_table(result))


if __name__ == "__main__":
    app()


def main() -> None:
    """The `dcgan` program: the app, and after an interrupted command, SIGINT and SIGTERM ignored while the
    process exits (a second Ctrl-C landing in the interpreter's shutdown would print a traceback over the
    message that says what was saved). In-process callers (tests, notebooks) call `app` and keep their handlers."""
    import signal

    try:
        app(prog_name="dcgan")
    except SystemExit as e:
        if e.code == 130:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise
