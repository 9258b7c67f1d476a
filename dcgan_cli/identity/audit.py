"""`dcgan audit`: does a generator reproduce real people from its training set?

1. Embed the generator's training images once with the identity network; the
   embeddings (and 16x16 grey thumbnails for the pixel check) are cached beside
   the data's manifest.json, keyed by the shards' checksums and the model file's,
   as evaluate.py keys its FID statistics.
2. Generate N samples (sampling.Sampler, image k from seed k) -- or take image
   files given with --images -- and embed them, a batch at a time.
3. For each, the nearest training image: a matrix product in chunks of the
   training set, so memory stays flat (queries x chunk floats).
4. Report the share of samples whose nearest training face is closer than the
   verification threshold at FAR 0.1% (the network would call them the same
   person), with a 95% Wilson interval, next to the same share for real faces
   of held-out people (the baseline: a new face that looks like someone by
   chance); plus the share of pixel-space near duplicates.
5. Write a PNG grid of the closest pairs: each sample beside its training match.
"""

from __future__ import annotations

import hashlib
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.errors import DcganError, UsageError
from dcgan_cli.fsutil import file_digest, write_bytes
from dcgan_cli.runs.layout import AUDIT_GRID_FILE

CACHE_PREFIX = "audit-embeddings-"
CACHE_VERSION = 1
THUMB = 16  # side of the grey thumbnails of the pixel-space check
SAMPLES = 10_000  # generated images audited when --samples is not given
PIXEL_RMSE = 0.05  # a near duplicate: RMS difference under 5% of the range on 16x16 grey thumbnails
GRID_PAIRS = 16
Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial share k/n (sensible at 0 and near 1, unlike k/n +- z*se)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def thumbnails(images: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S, C) -> float32 (N, 256) grey 16x16 thumbnails in [0, 1] (box filter)."""
    x = images.astype(np.float32).mean(axis=3) / 255.0
    n, s = x.shape[:2]
    if s % THUMB == 0:
        f = s // THUMB
        return x.reshape(n, THUMB, f, THUMB, f).mean(axis=(2, 4)).reshape(n, -1)
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((THUMB, THUMB), Image.Resampling.BOX), np.float32)
                     for im in x]).reshape(n, -1)


def nearest(queries: np.ndarray, base: np.ndarray, *, metric: str = "embedding", chunk: int = 32768,
            query_ids=None, base_ids=None, query_index=None) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each query's nearest row of `base`, in chunks of `chunk` base rows.

    metric "embedding": Euclidean distance of unit vectors, sqrt(2 - 2 cos).
    metric "rmse": root mean squared difference of thumbnails.
    Rows of the same identity (`query_ids`/`base_ids`) or the query itself
    (`query_index`: its row in `base`) are skipped: the baseline's rule.
    """
    best = np.full(len(queries), np.inf, np.float64)
    where = np.full(len(queries), -1, np.int64)
    q = queries.astype(np.float32)
    q_sq = (q * q).sum(1)
    for lo in range(0, len(base), chunk):
        b = base[lo:lo + chunk].astype(np.float32)
        dot = q @ b.T  # (queries, chunk): the only big array, bounded by `chunk`
        if metric == "embedding":
            d2 = np.maximum(2.0 - 2.0 * dot, 0.0)
        else:
            d2 = np.maximum(q_sq[:, None] + (b * b).sum(1)[None, :] - 2.0 * dot, 0.0) / q.shape[1]
        if query_ids is not None:
            d2[np.asarray(query_ids)[:, None] == np.asarray(base_ids[lo:lo + chunk])[None, :]] = np.inf
        if query_index is not None:
            rows = np.nonzero((query_index >= lo) & (query_index < lo + len(b)))[0]
            d2[rows, query_index[rows] - lo] = np.inf
        i = np.argmin(d2, axis=1)
        d = np.sqrt(d2[np.arange(len(q)), i])
        better = d < best
        best[better], where[better] = d[better], i[better] + lo
    return best, where


# ----------------------------------------------------------------------------
# the training set's embeddings, cached



def cache_key(manifest: dict, model_path: Path) -> str:
    ident = {"version": CACHE_VERSION, "count": manifest["count"], "thumb": THUMB, "model": file_digest(model_path),
             "shards": [s.get("sha256", s["file"]) for s in manifest["shards"]]}
    return hashlib.sha256(repr(sorted(ident.items())).encode()).hexdigest()


def training_embeddings(data: str, manifest: dict, model_path: Path, embed, task, log) -> tuple[dict, bool]:
    """{"emb", "thumbs", "ids"} of every image of `data` and whether it came from the cache."""
    from dcgan_cli.data.pipeline import labelled_batches
    from dcgan_cli.data.shards import label_specs

    key = cache_key(manifest, model_path)
    path = Path(data) / f"{CACHE_PREFIX}{key[:16]}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) == key:
                    return {k: z[k] for k in ("emb", "thumbs", "ids")}, True
        except (OSError, ValueError, KeyError):
            pass  # truncated or foreign: recompute
    labels = ("identity",) if "identity" in label_specs(manifest) else ()
    bar = task("embedding training images", manifest["count"])
    emb, thumbs, ids = [], [], []
    for images, lab in labelled_batches(data, 1024, labels):
        emb.append(embed(images, bar.advance))
        thumbs.append(np.round(thumbnails(images) * 255).astype(np.uint8))
        ids.append(lab["identity"] if labels else np.full(len(images), -1, np.int64))
    out = {"emb": np.concatenate(emb), "thumbs": np.concatenate(thumbs), "ids": np.concatenate(ids)}
    buf = io.BytesIO()
    np.savez(buf, key=np.array(key), **out)
    try:
        write_bytes(path, buf.getvalue())
    except OSError as e:
        log(f"Warning: could not cache the training embeddings at {path} ({e.strerror or e})")
    return out, False


# ----------------------------------------------------------------------------
# the audit


@dataclass
class _Subject:
    """What is audited (image files, or a generator's samples) and the training data it is compared with."""
    data: str
    n: int  # images audited
    facts: dict  # what the report says about the subject: {"images": DIR} or the run's facts
    files: list[Path] | None = None
    sampler: object = None  # sampling.Sampler when auditing a generator
    run_dir: Path | None = None


@dataclass
class _Nearest:
    """Each audited image's nearest training image, by embedding and by pixels: (distance, index) arrays."""
    dist: np.ndarray
    match: np.ndarray
    pix: np.ndarray
    pix_match: np.ndarray


def audit(identity_model: str | Path | None = None, *, run: Path | None = None, generator: Path | None = None,
          images: Path | None = None, data: Path | None = None, samples: int = SAMPLES, seed: int = 0,
          threshold: float | None = None, pixel_rmse: float = PIXEL_RMSE, grid: Path | None = None,
          runs_dir: Path = Path("runs"), batch_size: int = 256, progress: bool = True,
          log: Callable[[str], None] = print) -> dict:
    """Audit a run's generator (`run`), a generator .keras file (`generator`) or image files (`images`).

    `identity_model`: an embedding model file or its identity run (None: the newest under `runs_dir`).
    """
    from rich.console import Console

    from dcgan_cli.identity.verification import Embedder
    from dcgan_cli.progress import Bars

    _check_request(run, generator, images, data)
    if grid is not None:  # the default one goes beside what is audited: checked when it is known
        from dcgan_cli.generate.sampling import check_writable
        from dcgan_cli.images import check_image_path

        check_writable(check_image_path(grid), keep=False)
    model_path, model, meta, t = _identity_model(identity_model, threshold, runs_dir)
    subject = _subject(run, generator, images, data, samples, batch_size, runs_dir, log)
    manifest = _check_shapes(subject, meta)
    embed = Embedder(model, batch_size)

    t0 = time.perf_counter()
    with Bars(progress, console=Console(stderr=True), transient=True) as bars:
        train, cached = training_embeddings(subject.data, manifest, model_path, embed, bars.task, log)
        near = _nearest_training(subject, train, embed, meta, seed, bars.task)
        base = _baseline(train, meta, subject.n)  # real faces of people not among the training identities
    result = _shares(subject, near, base, train, t, threshold, pixel_rmse, model_path, seed, cached)
    grid = _grid_path(grid, subject, generator)
    order = _closest_pairs(subject, near, meta, seed, grid)
    result.update(grid=str(grid), closest=[{"sample": int(i), "training_index": int(near.match[i]),
                                             "distance": float(near.dist[i])} for i in order[:5]],
                  seconds=round(time.perf_counter() - t0, 2))
    return result


def _check_request(run, generator, images, data) -> None:
    """One subject at most; --images needs --data."""
    if sum(x is not None for x in (run, generator, images)) > 1:
        raise UsageError("audit one thing: --run, --generator or --images", "--images")
    if images is not None and data is None:
        raise UsageError("--images needs --data: the training data to compare them with", "--data")


def _identity_model(identity_model, threshold: float | None, runs_dir: Path):
    """(model path, embedding model, its metadata, the threshold): the given one, else its FAR-0.1% one."""
    from dcgan_cli.identity.verification import check_threshold, load_model, resolve_model

    if threshold is not None:
        check_threshold(threshold)
    model_path = resolve_model(identity_model, runs_dir)
    model, meta = load_model(model_path)
    t = threshold if threshold is not None else meta.get("threshold_far_1e_3")
    if t is None:
        raise DcganError(f"{model_path} has no FAR-0.1% threshold yet; run `dcgan evaluate --verification "
                         f"--identity-model {model_path}` or pass --threshold")
    return model_path, model, meta, t


def _subject(run, generator, images, data, samples: int, batch_size: int, runs_dir: Path, log) -> _Subject:
    """The image files to audit (the first `samples`), or the generator and the data it was trained on."""
    if images is not None:
        from dcgan_cli.data.datasets import IMAGE_EXTS

        files = sorted(p for p in Path(images).rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
        if not files:
            raise DcganError(f"no images in {images}; pass a folder of image files")
        files = files[:samples]
        return _Subject(str(data), len(files), {"images": str(images)}, files=files)
    from dcgan_cli.generate.sampling import Sampler, load_generator

    loaded = load_generator(run, generator, runs_dir=runs_dir, warn=lambda m: log(f"Warning: {m}"))
    if loaded.newest:
        log(f"Using the newest run: {loaded.run_dir}")
    run_data = loaded.training_data()
    data = data or (Path(run_data) if run_data else None)
    if data is None:
        raise DcganError(f"{generator} is not inside a run directory, so its training data is unknown; "
                         f"pass --data DIR")
    return _Subject(str(data), samples, loaded.facts, sampler=Sampler(loaded.model, min(batch_size, 256)),
                    run_dir=loaded.run_dir)


def _check_shapes(subject: _Subject, meta: dict) -> dict:
    """The training data's manifest, once its images and the generator's are the embedding model's shape."""
    from dcgan_cli.data.shards import load_manifest

    manifest = load_manifest(subject.data)
    shape = (meta["image_size"], meta["image_size"], meta["channels"])
    if (manifest["size"], manifest["size"], manifest["channels"]) != shape:
        raise DcganError(f"{subject.data} holds {manifest['size']}x{manifest['size']}x{manifest['channels']} images "
                         f"but the embedding model takes {'x'.join(map(str, shape))}; train one on data of this size")
    sampler = subject.sampler
    if sampler is not None and sampler.image_shape != shape:
        raise DcganError(f"the generator makes {'x'.join(map(str, sampler.image_shape))} images but the embedding "
                         f"model takes {'x'.join(map(str, shape))}; audit with a model trained at the generator's size")
    return manifest


def _nearest_training(subject: _Subject, train: dict, embed, meta: dict, seed: int, task) -> _Nearest:
    """Embed the audited images a batch at a time and find each one's nearest training image."""
    n = subject.n
    near = _Nearest(np.zeros(n), np.zeros(n, np.int64), np.zeros(n), np.zeros(n, np.int64))
    bar = task("auditing samples", n)
    step = embed.batch_size
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        batch = _batch(lo, hi, subject.files, subject.sampler, meta, seed)
        e = embed(batch)
        near.dist[lo:hi], near.match[lo:hi] = nearest(e, train["emb"])
        near.pix[lo:hi], near.pix_match[lo:hi] = nearest(thumbnails(batch), train["thumbs"].astype(np.float32) / 255.0,
                                                         metric="rmse")
        bar.advance(hi - lo)
    return near


def _shares(subject: _Subject, near: _Nearest, base, train: dict, t: float, threshold: float | None,
            pixel_rmse: float, model_path: Path, seed: int, cached: bool) -> dict:
    """The report: the shares closer than the threshold (identity, pixels, baseline) with their intervals."""
    n = subject.n
    copies = int((near.dist < t).sum())
    dupes = int((near.pix < pixel_rmse).sum())
    result = {"identity_model": str(model_path), **subject.facts, "data": subject.data,
              "training_images": int(len(train["emb"])),
              "samples": n, "seed": seed if subject.files is None else None, "threshold": float(t),
              "threshold_kind": "given" if threshold is not None else "FAR 0.1% (verification)",
              "closer_than_threshold": copies, "share": copies / n, "share_ci95": wilson(copies, n),
              "pixel_rmse_threshold": pixel_rmse, "pixel_near_duplicates": dupes,
              "pixel_share": dupes / n, "pixel_share_ci95": wilson(dupes, n),
              "median_nearest_distance": float(np.median(near.dist)),
              "training_embeddings": "cache" if cached else "computed"}
    if base is not None:
        bd, how = base
        k = int((bd < t).sum())
        result.update(baseline_faces=len(bd), baseline_closer=k, baseline_share=k / len(bd),
                      baseline_share_ci95=wilson(k, len(bd)), baseline=how,
                      baseline_median_nearest_distance=float(np.median(bd)))
    return result


def _grid_path(grid: Path | None, subject: _Subject, generator: Path | None) -> Path:
    """`grid`, else audit-closest.png beside what was audited: the run, the generator file, else the data."""
    if grid is not None:
        return Path(grid)
    beside = subject.run_dir or (Path(generator).parent if generator is not None else Path(subject.data))
    return beside / AUDIT_GRID_FILE  # in the data's folder, as the embeddings' cache


def _closest_pairs(subject: _Subject, near: _Nearest, meta: dict, seed: int, grid: Path) -> np.ndarray:
    """Write the PNG grid of the closest pairs, each image beside its training match; returns their order."""
    from dcgan_cli.images import make_grid, save_image

    order = np.argsort(near.dist, kind="stable")[:GRID_PAIRS]
    matches = _training_images(subject.data, near.match[order])
    pairs = []
    for i, m in zip(order, matches):
        pairs += [_batch(int(i), int(i) + 1, subject.files, subject.sampler, meta, seed)[0], m]
    save_image(grid, make_grid(np.stack(pairs), nrow=8))
    return order


def _batch(lo: int, hi: int, files, sampler, meta, seed: int) -> np.ndarray:
    from dcgan_cli.identity.verification import face_pixels

    if files is not None:
        return np.stack([face_pixels(p, meta) for p in files[lo:hi]])
    from dcgan_cli.generate.sampling import latents

    return sampler(latents(range(seed + lo, seed + hi), sampler.latent_dim))


def _baseline(train: dict, meta: dict, n: int):
    """(nearest distances of held-out real faces to *other* people's training faces, how), or None.

    With identities: faces of the model's held-out people, each compared with
    the training images of every other identity. Without: real images compared
    with every other image (leave one out), which is an upper bound when people
    have several photos.
    """
    ids = train["ids"]
    rng = np.random.default_rng(0xBA5E)
    if (ids >= 0).any():
        held = np.nonzero(np.isin(ids, meta.get("heldout_identities", [])))[0]
        if len(held) == 0:
            return None
        pick = np.sort(rng.choice(held, min(n, len(held)), replace=False))
        d, _ = nearest(train["emb"][pick], train["emb"], query_ids=ids[pick], base_ids=ids)
        return d, "held-out people's faces vs other people's training faces"
    pick = np.sort(rng.choice(len(ids), min(n, len(ids)), replace=False))
    d, _ = nearest(train["emb"][pick], train["emb"], query_index=pick)
    return d, "real faces vs every other training image (no identities in the data: leave one out)"


def _training_images(data: str, indices) -> list[np.ndarray]:
    """The training images at `indices` (in shard order), in one pass over the shards."""
    from dcgan_cli.data.pipeline import labelled_batches

    wanted = {int(i) for i in indices}
    found, seen = {}, 0
    for images, _ in labelled_batches(data, 1024):
        for i in [i for i in wanted if seen <= i < seen + len(images)]:
            found[i] = images[i - seen]
        seen += len(images)
        if len(found) == len(wanted):
            break
    return [found[int(i)] for i in indices]


def format_audit(r: dict) -> str:
    def pct(x):
        return f"{x * 100:.2f}%"

    what = r.get("images") or r.get("run") or r.get("model")
    audited = f"images from {r['images']}" if "images" in r else f"samples of {what}"
    lines = [f"audited    {r['samples']:,} {audited}",
             f"against    {r['training_images']:,} training images of {r['data']} "
             f"(embeddings: {r['training_embeddings']})",
             f"threshold  {r['threshold']:.4f} ({r['threshold_kind']}) with {r['identity_model']}",
             f"same person as a training face: {r['closer_than_threshold']:,} = {pct(r['share'])} "
             f"(95% CI {pct(r['share_ci95'][0])} - {pct(r['share_ci95'][1])})"]
    if "baseline_share" in r:
        lines.append(f"baseline   {pct(r['baseline_share'])} (95% CI {pct(r['baseline_share_ci95'][0])} - "
                     f"{pct(r['baseline_share_ci95'][1])}) of {r['baseline_faces']:,} {r['baseline']}")
    lines.append(f"pixel near duplicates (RMSE < {r['pixel_rmse_threshold']} on {THUMB}x{THUMB} grey): "
                 f"{r['pixel_near_duplicates']:,} = {pct(r['pixel_share'])} "
                 f"(95% CI {pct(r['pixel_share_ci95'][0])} - {pct(r['pixel_share_ci95'][1])})")
    lines.append(f"closest pairs (sample | training match): {r['grid']}")
    return "\n".join(lines)
