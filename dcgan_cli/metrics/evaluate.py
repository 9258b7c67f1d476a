"""FID, KID, precision/recall/density/coverage and IS of a generator against preprocessed data.

`evaluate_generator()` is the whole evaluation: it embeds the data set's
images once (cached beside its manifest.json), embeds generated images in
batches, and scores them. `dcgan evaluate` calls it on a run or a model file;
the trainer calls it every `--eval-every-epochs` epochs (and keeps RUN/best/ itself,
see `training.evaluate_epoch`). This module only scores: it reads runs through
`runs.layout` and never imports the trainer.

The pitfalls this avoids (documented by pytorch-fid, clean-fid and StyleGAN's
metrics): FID on fewer samples than feature dimensions is refused, not
reported with an "imaginary component"; images are resized with an
antialiased filter, the same way for real and generated ones; real
statistics are computed once per data set and extractor; and every result
names its extractor, weights and resize, so numbers from elsewhere are not
mistaken for comparable ones.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.runs import layout
from dcgan_cli.errors import DcganError, UsageError
from dcgan_cli.fsutil import write_bytes
from dcgan_cli.metrics import extractors
from dcgan_cli.metrics.prdc import IS_SPLITS, K_VALUES, InceptionScore, prdc
from dcgan_cli.metrics.stats import KID_SUBSETS, FeatureStats, frechet_distance, kernel_inception_distance
from dcgan_cli.data.shards import MANIFEST

# `dcgan evaluate --metrics` takes a comma-separated subset; its help is built from this. "prdc": precision,
# recall, density, coverage at k = 3 and 5 (metrics/prdc.py); "is": the Inception Score, where the extractor
# has a classifier head (inception-2015), else left out with a note.
METRICS = ("fid", "kid", "prdc", "is")
STATS_PREFIX = "eval-stats-"
# Bump when the cached arrays or the way they are computed change.
CACHE_VERSION = 1
# Seeds the choice of real images (with --real-samples) and of the KID pools.
_SUBSET_SEED = 0x51D


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate.

    Attributes:
        samples: generated images to embed.
        metrics: any of METRICS.
        extractor: a name in `metrics.extractors.EXTRACTORS`, or a model file FILE.keras[:LAYER].
        weights: the extractor's file: InceptionV3 weights (None: $DCGAN_INCEPTION_WEIGHTS, then Keras' cache),
            or inception-2015's classify_image_graph_def.pb (None: Keras' cache).
        seed: seeds the latents of the generated images.
        batch_size: images generated and embedded at a time.
        real_samples: embed only this many real images, a fixed random subset (0: all).
    """

    samples: int = 10_000
    metrics: tuple[str, ...] = METRICS
    extractor: str = "inception_v3"
    weights: str | None = None
    seed: int = 0
    batch_size: int = 64
    real_samples: int = 0


def parse_metrics(text: str) -> tuple[str, ...]:
    """'fid,kid' -> ("fid", "kid"); anything else is a usage error of --metrics."""
    names = tuple(dict.fromkeys(m.strip().lower() for m in text.split(",") if m.strip()))
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise UsageError(f"unknown metric {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)}",
                         "--metrics")
    return names


def fid_refusal(n_fake: int, n_real: int, dim: int) -> str | None:
    """Why FID cannot be computed for these counts, or None.

    A covariance estimated from n <= d samples of d-dimensional features is
    singular; FID on it is biased far upwards and its matrix square root is
    where the "imaginary component" errors come from. So FID needs at least as
    many samples as feature dimensions (2,048 for InceptionV3), on both sides.
    """
    for n, what, fix in ((n_fake, "generated", f"--samples {max(dim, 10_000)}"),
                         (n_real, "real", "a larger data set (or a larger --real-samples)")):
        if n < dim:
            return (f"FID needs at least {dim:,} {what} images (the feature dimension) and got {n:,}: "
                    f"the covariance would be singular and the score meaningless; use {fix}")
    return None


def plan(opts: EvalOptions, count: int) -> tuple[tuple[str, ...], dict[str, str], int]:
    """(metrics to compute, {"fid"/"is"/"prdc": why it was dropped}, real images to use), before any work.

    FID refused alone is an error; refused beside others, they are still computed. The same for
    IS with an extractor without a classifier head.
    """
    if opts.samples < 2:
        raise DcganError(f"--samples must be at least 2, got {opts.samples}")
    n_real = min(count, opts.real_samples) if opts.real_samples else count
    spec = extractors.spec(opts.extractor)
    dim = spec.dim
    metrics, notes = tuple(opts.metrics), {}
    if "is" in metrics and not spec.classes:
        why = (f"no Inception Score: {opts.extractor} has no classifier head (inception-2015 has one)")
        if metrics == ("is",):
            raise DcganError(why)
        metrics, notes["is"] = tuple(m for m in metrics if m != "is"), why
    if "is" in metrics and opts.samples < IS_SPLITS:
        raise DcganError(f"the Inception Score needs at least {IS_SPLITS} samples (one per split), got {opts.samples}")
    if "fid" in metrics:
        fid_note = fid_refusal(opts.samples, n_real, dim)
        if fid_note:
            if metrics == ("fid",):
                raise DcganError(fid_note + ", or --metrics kid")
            metrics, notes["fid"] = tuple(m for m in metrics if m != "fid"), fid_note
    if "kid" in metrics and n_real < 2:
        raise DcganError(f"KID needs at least 2 real images and the data holds {n_real}")
    least = max(K_VALUES) + 1
    if "prdc" in metrics and min(n_real, opts.samples) < least:
        why = (f"precision/recall/density/coverage at k = {max(K_VALUES)} need at least {least} real and "
               f"{least} generated images")
        if metrics == ("prdc",):
            raise DcganError(why + "; use more")
        metrics, notes["prdc"] = tuple(m for m in metrics if m != "prdc"), why
    return metrics, notes, n_real


# ----------------------------------------------------------------------------
# real statistics, cached beside manifest.json


@dataclass
class RealStats:
    mu: np.ndarray
    sigma: np.ndarray
    kid_features: np.ndarray
    n: int


def stats_cache_path(data_dir: str | Path, extractor_name: str, n_real: int, count: int) -> str:
    subset = "" if n_real >= count else f"-n{n_real}"
    return f"{str(data_dir).rstrip('/')}/{STATS_PREFIX}{extractor_name}{subset}.npz"


def stats_cache_key(manifest: dict, extractor_key: str, n_real: int) -> str:
    """Changes whenever the data (its shards' checksums), the extractor or the subset change."""
    import hashlib

    ident = {"version": CACHE_VERSION, "extractor": extractor_key, "n_real": n_real, "seed": _SUBSET_SEED,
             "count": manifest["count"], "shards": [s.get("sha256", s["file"]) for s in manifest["shards"]]}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _read_cache(path: str, key: str) -> RealStats | None:
    import tensorflow as tf  # gfile: the data may live on gs:// like the shards

    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            z = np.load(io.BytesIO(f.read()), allow_pickle=False)
            if str(z["key"]) != key:
                return None  # other data, extractor or subset: stale
            mu, sigma, kid = (np.asarray(z[k], np.float64) for k in ("mu", "sigma", "kid_features"))
            if (mu.ndim != 1 or sigma.shape != (len(mu), len(mu)) or kid.ndim != 2 or kid.shape[1] != len(mu)
                    or not all(np.all(np.isfinite(a)) for a in (mu, sigma, kid))):
                return None  # damaged: recompute (and rewrite it atomically)
            return RealStats(z["mu"], z["sigma"], z["kid_features"], int(z["n"]))
    except (OSError, ValueError, KeyError):  # truncated or foreign file: recompute
        return None


def _write_cache(path: str, key: str, stats: FeatureStats, log: Callable[[str], None]) -> None:
    buf = io.BytesIO()
    np.savez(buf, key=np.array(key), mu=stats.mean, sigma=stats.cov, kid_features=stats.kid_features,
             n=np.array(stats.n))
    try:
        if "://" in path:  # object stores write whole objects: atomic already
            import tensorflow as tf

            with tf.io.gfile.GFile(path, "wb") as f:
                f.write(buf.getvalue())
        else:
            write_bytes(path, buf.getvalue())
    except OSError as e:
        log(f"Warning: could not cache the real statistics at {path} ({e.strerror or e}); "
            f"they will be computed again next time")


def real_statistics(data_dir: str | Path, manifest: dict, extractor, n_real: int, task, log) -> tuple[RealStats, bool]:
    """(statistics of the data set's images, whether they came from the cache)."""
    from dcgan_cli.data.pipeline import make_dataset

    count = manifest["count"]
    path = stats_cache_path(data_dir, extractor.spec.name, n_real, count)
    key = stats_cache_key(manifest, extractor.key, n_real)
    cached = _read_cache(path, key)
    if cached is not None:
        return cached, True

    rng = np.random.default_rng(_SUBSET_SEED)
    chosen = np.sort(rng.choice(count, n_real, replace=False)) if n_real < count else None
    stats = FeatureStats(extractor.spec.dim, n_real, seed=_SUBSET_SEED)
    bar = task("embedding real images", n_real)
    # Fixed file and record order (no shuffle), so a subset is the same images every time.
    ds = make_dataset(data_dir, extractor.batch_size, shuffle=False, repeat=False, seed=0, drop_remainder=False)
    offset = 0
    for batch in ds:
        batch = batch.numpy()
        if chosen is not None:
            lo, hi = np.searchsorted(chosen, [offset, offset + len(batch)])
            offset, batch = offset + len(batch), batch[chosen[lo:hi] - offset]
        if len(batch):
            stats.update(extractor(batch))
            bar.advance(len(batch))
    if stats.n != n_real:
        raise DcganError(f"{data_dir} yielded {stats.n} images but its manifest promises {n_real}; "
                         f"re-run `dcgan preprocess ... --force`")
    _write_cache(path, key, stats, log)
    return RealStats(stats.mean, stats.cov, stats.kid_features, stats.n), False


# ----------------------------------------------------------------------------
# the evaluation


def generated_statistics(generator, n: int, extractor, seed: int, task,
                         inception_score: bool = False) -> tuple[FeatureStats, InceptionScore | None]:
    """Stream n generated images through the extractor; only features (and IS sums) are kept."""
    from dcgan_cli.generate.sampling import Sampler

    run = Sampler(generator, extractor.batch_size)
    rng = np.random.default_rng(seed)
    stats = FeatureStats(extractor.spec.dim, n, seed=_SUBSET_SEED + 1)
    score = InceptionScore(extractor.classes, n) if inception_score else None
    bar = task("embedding generated images", n)
    for i in range(0, n, extractor.batch_size):
        z = rng.standard_normal((min(extractor.batch_size, n - i), run.latent_dim)).astype(np.float32)
        # uint8, like a saved PNG, so generated images take the real images' path.
        if score is not None:
            feats, probs = extractor.embed(run(z), probs=True)
            score.update(probs)
        else:
            feats = extractor(run(z))
        stats.update(feats)
        bar.advance(len(z))
    return stats, score


def evaluate_generator(generator, data_dir: str | Path, opts: EvalOptions = EvalOptions(), *,
                       progress: bool = True, console=None, log: Callable[[str], None] = print) -> dict:
    """Score `generator` against the preprocessed data in `data_dir`; returns a JSON-able dict."""
    from rich.console import Console

    from dcgan_cli.progress import Bars
    from dcgan_cli.data.shards import check_shape, load_manifest

    if len(generator.inputs) > 1:  # G(z, y) of a --condition run
        raise DcganError("evaluate scores unconditional generators, and this one was trained with --condition; "
                         "draw from it with `dcgan sample --class` / `--attr`")
    manifest = load_manifest(data_dir)
    metrics, notes, n_real = plan(opts, manifest["count"])
    size, _, channels = generator.output_shape[1:]
    check_shape(manifest, size, channels, wanted_by="the generator",
                fix=f"evaluate against data of the generator's size (--data), not {data_dir}")
    extractor = extractors.get_extractor(opts.extractor, opts.weights, opts.batch_size)

    t0 = time.perf_counter()
    # On `console` (the trainer's, whose live bar it nests in) or stderr, so `--json` stdout stays clean.
    with Bars(progress, console=console or Console(stderr=True)) as bars:
        real, from_cache = real_statistics(data_dir, manifest, extractor, n_real, bars.task, log)
        t1 = time.perf_counter()
        fake, inception = generated_statistics(generator, opts.samples, extractor, opts.seed, bars.task,
                                               inception_score="is" in metrics)
    t2 = time.perf_counter()
    result = scores(metrics, notes, real, fake, inception, opts.seed)
    result.update(
        samples=opts.samples, real_samples=real.n, data=str(data_dir), seed=opts.seed,
        extractor=opts.extractor, weights=extractor.weights_id,
        resize=f"{extractor.spec.resize} to {extractor.spec.size}", real_stats="cache" if from_cache else "computed",
        img_per_s=round(opts.samples / max(t2 - t1, 1e-9), 1), seconds=round(time.perf_counter() - t0, 2),
    )
    return result


def scores(metrics, notes: dict, real: RealStats, fake: FeatureStats, inception: InceptionScore | None,
           seed: int) -> dict:
    """The numbers: FID on the full statistics; KID and precision/recall/density/coverage on the same
    fixed-size uniform subsamples (at most KID_POOL feature vectors per set); IS on every generated image."""
    result: dict = {}
    if "fid" in metrics:
        result["fid"] = frechet_distance(real.mu, real.sigma, fake.mean, fake.cov)
    elif "fid" in notes:
        result["fid"], result["fid_skipped"] = None, notes["fid"]
    if "kid" in metrics:
        mean, std, m = kernel_inception_distance(real.kid_features, fake.kid_features, seed=seed)
        result.update(kid=mean, kid_std=std, kid_subsets=KID_SUBSETS, kid_subset_size=m)
    if "prdc" in metrics:
        result.update(prdc(real.kid_features, fake.kid_features, K_VALUES))
        result["prdc_samples"] = [len(real.kid_features), len(fake.kid_features)]
    elif "prdc" in notes:
        result["prdc_skipped"] = notes["prdc"]
    if inception is not None:
        result["is"], result["is_std"] = inception.result()
        result["is_splits"] = inception.splits
    elif "is" in notes:
        result["is_skipped"] = notes["is"]
    return result


# ----------------------------------------------------------------------------
# output


def format_table(result: dict) -> str:
    """The readable form of a result (the JSON has the same facts)."""
    rows = []
    if "run" in result:
        which = "EMA generator" if result.get("generator") == "ema" else "generator"
        rows.append(("run", f"{result['run']}  ({result.get('checkpoint', '?')}, {which})"))
    elif "model" in result:
        rows.append(("model", result["model"]))
    rows.append(("data", f"{result['data']}  (real statistics: {result['real_stats']})"))
    rows.append(("samples", f"{result['samples']:,} generated (seed {result['seed']}), "
                            f"{result['real_samples']:,} real"))
    rows.append(("features", f"{result['extractor']} ({result['weights']} weights), {result['resize']}"))
    if "fid" in result:
        rows.append(("FID", f"{result['fid']:.3f}" if result["fid"] is not None
                     else f"not computed: {result['fid_skipped']}"))
    if "kid" in result:
        rows.append(("KID", f"{result['kid']:.4g} ± {result['kid_std']:.2g}  "
                            f"({result['kid_subsets']} subsets of {result['kid_subset_size']:,})"))
    for k in K_VALUES if "prdc_samples" in result else ():
        rows.append((f"P/R/D/C k={k}", "  ".join(f"{name} {result[f'{name}_k{k}']:.3f}" for name in
                                                 ("precision", "recall", "density", "coverage"))
                     + ("  ({:,} real, {:,} generated)".format(*result["prdc_samples"]) if k == K_VALUES[0] else "")))
    if "is" in result:
        rows.append(("IS", f"{result['is']:.3f} ± {result['is_std']:.3f}  ({result['is_splits']} splits)"))
    rows.append(("time", f"{result['seconds']:.1f} s ({result['img_per_s']:.1f} generated img/s embedded)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def summary(result: dict) -> str:
    parts = []
    if result.get("fid") is not None:
        parts.append(f"FID {result['fid']:.3f}")
    if "kid" in result:
        parts.append(f"KID {result['kid']:.4g} ± {result['kid_std']:.2g}")
    if "precision_k3" in result:
        parts.append(f"precision {result['precision_k3']:.3f} recall {result['recall_k3']:.3f} (k=3)")
    if "is" in result:
        parts.append(f"IS {result['is']:.2f}")
    return ", ".join(parts) or "no score"


def append_to_metrics(run_dir: str | Path, result: dict) -> None:
    """One {"eval": {...}} line; rows with "d_loss" are the per-epoch training ones."""
    layout.append_metrics(run_dir, {"eval": result})


# ----------------------------------------------------------------------------
# what `dcgan evaluate` evaluates


def check_target(verification: bool, *, run: Path | None = None, generator: Path | None = None,
                 identity_model: Path | None = None) -> None:
    """What `dcgan evaluate` scores: a generator (--run or --generator), or with --verification an embedding
    model (--identity-model); the other kind's options are usage errors."""
    if verification:
        for option, value in (("--run", run), ("--generator", generator)):
            if value is not None:
                raise UsageError(f"--verification scores an embedding model: pass --identity-model, not {option}",
                                 option)
    elif identity_model is not None:
        raise UsageError("--identity-model is scored with --verification; add it, or pass --run/--generator",
                         "--identity-model")


def evaluate_target(run: Path | None, generator: Path | None, data: Path | None, opts: EvalOptions = EvalOptions(),
                    *, ema: bool = True, runs_dir: Path = Path("runs"), log: Callable[[str], None] = print) -> dict:
    """What `dcgan evaluate` does: score a run (default: the newest) or a generator file, against `data`
    (default: the run's), and append the result to the run's metrics.jsonl."""
    from dcgan_cli.generate.sampling import load_generator

    loaded = load_generator(run, generator, ema=ema, runs_dir=runs_dir, warn=lambda m: log(f"Warning: {m}"))
    if loaded.newest:
        log(f"Using the newest run: {loaded.run_dir}")
    run_data = loaded.training_data()
    if data is None and run_data is None:
        raise DcganError(f"{generator} is not inside a run directory, so its data is unknown; pass --data DIR")
    if data is None and not (Path(run_data) / MANIFEST).exists():
        raise DcganError(f"the run's data {run_data} is not there (moved?); pass --data DIR")
    data = data or Path(run_data)
    result = {**loaded.facts, **evaluate_generator(loaded.model, data, opts, log=log)}
    if loaded.run_dir is not None:
        append_to_metrics(loaded.run_dir, result)
    return result


# ----------------------------------------------------------------------------
# during training


def preflight_training(cfg, weights: str | None = None, log: Callable[[str], None] = print) -> None:
    """Fail before training, not after its first epochs, when evaluation cannot run; say what it will score."""
    from dcgan_cli.data.shards import load_manifest

    if not cfg.eval_every_epochs:
        return
    from dcgan_cli.runs import distribute

    if cfg.strategy == "multiworker" or (cfg.strategy == "auto" and distribute.has_cluster()):
        # The chief alone would evaluate and save best/, while a checkpoint save
        # under MultiWorkerMirroredStrategy wants every worker: it could hang.
        raise DcganError("--eval-every-epochs is not supported with several workers; train without it and score "
                         "the chief's run with `dcgan evaluate --run RUN_DIR`")
    extractors.resolve_inception_weights(weights, flag=False)
    note = fid_refusal(cfg.eval_samples, load_manifest(cfg.data)["count"], extractors.spec("inception_v3").dim)
    if note:
        log(f"Note: every {cfg.eval_every_epochs} epoch(s) only KID is computed and picks RUN/best/: {note}")
