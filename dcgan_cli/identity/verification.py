"""The embedding model as a file, and what it answers: verification (same person?) and identification (who?).

A model is two files side by side (a run writes RUN/embedding.keras and RUN/embedding.json):
  NAME.keras   the embedding network (stock Keras layers; loads without this package)
  NAME.json    what a user of it needs: the input size, channels and crop of its training
               data (faces are cropped the same way), the distance threshold and how it was
               chosen, the training and held-out identities, the last verification result

The LFW protocol (Huang et al. 2007, "View 2"): pairs of held-out images, half the
same person and half not, in 10 folds with as many of each; for each fold the
threshold that maximises accuracy on the other 9 is tested on it; accuracy is
the mean +- std over the 10 folds. ROC AUC and TAR at FAR 0.1% are on all pairs.
The stored threshold maximises accuracy on all pairs; the FAR-0.1% one is stored too
(the audit uses it).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np

from dcgan_cli.errors import DcganError, UsageError
from dcgan_cli.fsutil import atomic_path, write_json

MODEL_FILE = "embedding.keras"
META_FORMAT = "dcgan-embedding-v1"
ROC_FILE = "roc.png"
PAIRS = 6000  # LFW's: 10 folds of 300 same + 300 different
FOLDS = 10
FAR = 1e-3
PAIRS_SEED = 0x1F


# ----------------------------------------------------------------------------
# the model file and its metadata


def meta_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def latest_model(runs_dir: str | Path) -> Path:
    runs = sorted(Path(runs_dir).glob(f"[0-9][0-9][0-9][0-9][0-9]-*/{MODEL_FILE}")) if Path(runs_dir).is_dir() else []
    if not runs:
        raise DcganError(f"no embedding model under {runs_dir}/; train one with `dcgan identity train` "
                         f"or pass --identity-model FILE.keras")
    return runs[-1]


def resolve_model(model: str | Path | None, runs_dir: str | Path = "runs") -> Path:
    """--identity-model as given (a .keras file or an identity run dir), or the newest under runs_dir."""
    if model is None:
        return latest_model(runs_dir)
    model = Path(model)
    if model.is_dir():
        if not (model / MODEL_FILE).is_file():
            raise DcganError(f"{model} has no {MODEL_FILE}; it is not a finished identity run "
                             f"(resume it with `dcgan identity train --resume {model}`)")
        return model / MODEL_FILE
    if not model.is_file():
        raise DcganError(f"no model at {model}; pass an identity run's {MODEL_FILE} or its run directory")
    return model


def read_meta(model_path: str | Path) -> dict:
    path = meta_path(model_path)
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise DcganError(f"{model_path} has no {path.name} beside it (its input crop and threshold); "
                         f"copy it along with the model") from None
    except json.JSONDecodeError as e:
        raise DcganError(f"{path} is corrupt ({e}); run `dcgan evaluate --verification --identity-model {model_path}` "
                         f"to write it again") from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise DcganError(f"{path} is not an embedding model's metadata (format "
                         f"{meta.get('format') if isinstance(meta, dict) else None!r})")
    fix = f"run `dcgan evaluate --verification --identity-model {model_path}` to write it again"
    for key in ("image_size", "channels"):
        if type(meta.get(key)) is not int or meta[key] < 1:
            raise DcganError(f"{path} holds {key} {meta.get(key)!r}, not a positive whole number; copy the "
                             f"embedding.json written with the model")
    for key in ("threshold", "threshold_far_1e_3"):
        if meta.get(key) is not None:
            check_threshold(meta[key], f"{path}'s {key}", fix)
    return meta


def check_threshold(value, where: str = "--threshold", fix: str = "") -> float:
    """A distance threshold: a finite number >= 0 (nan or a negative one would call everyone a stranger).

    `where` "--threshold" is the option (a usage error); else the file and field it came from, with `fix`.
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) and value >= 0
    if ok:
        return float(value)
    if where == "--threshold":
        raise UsageError(f"{value} is not a distance: give a finite number >= 0", "--threshold")
    raise DcganError(f"{where} is {value!r}, not a finite distance >= 0; {fix}")


def write_meta(model_path: str | Path, meta: dict) -> None:
    write_json(meta_path(model_path), meta)


def save_model(model, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        model.save(tmp)
    return Path(path)


def load_model(model_path: str | Path):
    """(keras model, metadata); errors name what to pass."""
    model_path = Path(model_path)
    meta = read_meta(model_path)
    import keras

    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as e:  # not a Keras archive, or from an unknown Keras: several types
        raise DcganError(f"cannot read {model_path} as a Keras model ({type(e).__name__}); "
                         f"pass an embedding.keras written by `dcgan identity train`") from None
    shape = tuple(model.input_shape[1:])
    expected = (meta["image_size"], meta["image_size"], meta["channels"])
    if len(model.outputs) != 1 or len(model.output_shape) != 2 or shape != expected:
        raise DcganError(f"{model_path} is not an embedding model (it maps {shape} to {model.output_shape}); "
                         f"pass an embedding.keras written by `dcgan identity train`")
    return model, meta


class Embedder:
    """uint8 images -> float32 unit embeddings (N, D), always through one batch shape (as sampling.Sampler)."""

    def __init__(self, model, batch_size: int = 256):
        import tensorflow as tf

        self.batch_size = batch_size
        self.shape = tuple(int(d) for d in model.input_shape[1:])
        self.dim = int(model.output_shape[-1])
        spec = tf.TensorSpec([batch_size, *self.shape], tf.float32)
        self._forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def __call__(self, images: np.ndarray, advance: Callable[[int], None] | None = None) -> np.ndarray:
        if tuple(images.shape[1:]) != self.shape:
            raise DcganError(f"images are {images.shape[1:]} but the model takes {self.shape}; "
                             f"preprocess the data at the model's size and channels")
        out = np.zeros((len(images), self.dim), np.float32)
        for i in range(0, len(images), self.batch_size):
            chunk = images[i:i + self.batch_size]
            padded = np.zeros((self.batch_size, *self.shape), np.float32)
            padded[:len(chunk)] = chunk
            out[i:i + len(chunk)] = self._forward(padded).numpy()[:len(chunk)]
            if advance:
                advance(len(chunk))
        return out


def face_pixels(path: str | Path, meta: dict) -> np.ndarray:
    """Any image file -> uint8 (S, S, C), cropped and resized as the model's training data was."""
    from dcgan_cli.data.preprocess.decoding import process_image

    path = Path(path)
    if not path.is_file():
        raise DcganError(f"no image at {path}")
    cfg = SimpleNamespace(crop=meta["crop"], box_side=meta.get("crop_size") or 0, size=meta["image_size"],
                          channels=meta["channels"])
    try:
        pixels, _ = process_image(str(path), cfg)
    except Exception as e:  # Pillow raises several types for unreadable files
        from dcgan_cli.images import unreadable

        raise DcganError(unreadable(path, e, f"name a photo ({str(e)[:80]})")) from None
    return np.frombuffer(pixels, np.uint8).reshape(cfg.size, cfg.size, cfg.channels)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Euclidean distances of unit embeddings, in [0, 2]."""
    return np.sqrt(np.maximum(np.sum((a - b) ** 2, axis=-1), 0.0))


# ----------------------------------------------------------------------------
# the LFW protocol


def make_pairs(ids: np.ndarray, n_pairs: int = PAIRS, seed: int = PAIRS_SEED):
    """(i, j, same, fold) arrays: up to n_pairs/2 same-person and as many different-person pairs of distinct
    images, each kind dealt round-robin into 10 folds. Fewer when the data cannot make that many."""
    rng = np.random.default_rng(seed)
    order = np.argsort(ids, kind="stable")
    _, starts, counts = np.unique(ids[order], return_index=True, return_counts=True)
    groups = [order[s:s + c] for s, c in zip(starts, counts)]
    multi = [g for g in groups if len(g) >= 2]
    possible_same = sum(len(g) * (len(g) - 1) // 2 for g in multi)
    half = min(n_pairs // 2, possible_same)
    if half < FOLDS or len(groups) < 2:
        raise DcganError(f"the held-out identities give {half} same-person pairs; the protocol needs at least "
                         f"{FOLDS} (one per fold): use more data or a larger --holdout")
    same, seen = [], set()
    weights = np.array([len(g) * (len(g) - 1) for g in multi], np.float64)
    weights /= weights.sum()
    while len(same) < half:
        g = multi[rng.choice(len(multi), p=weights)]
        a, b = sorted(rng.choice(g, 2, replace=False).tolist())
        if (a, b) not in seen:
            seen.add((a, b))
            same.append((a, b))
    diff, seen = [], set()
    n = len(ids)
    while len(diff) < half:
        a, b = sorted(rng.integers(0, n, 2).tolist())
        if ids[a] != ids[b] and (a, b) not in seen:
            seen.add((a, b))
            diff.append((a, b))
    pairs = np.array(same + diff, np.int64)
    label = np.r_[np.ones(half, bool), np.zeros(half, bool)]
    fold = np.r_[np.arange(half) % FOLDS, np.arange(half) % FOLDS]
    return pairs[:, 0], pairs[:, 1], label, fold


def best_threshold(d: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy): accept d < threshold; the midpoint that maximises accuracy on these pairs."""
    order = np.argsort(d, kind="stable")
    ds, s = d[order], same[order]
    # Accepting the first i pairs: correct = same among them + different among the rest.
    correct = np.r_[0, np.cumsum(s)] + (len(s) - s.sum()) - np.r_[0, np.cumsum(~s)]
    cuts = np.r_[True, ds[1:] > ds[:-1], True]  # only between distinct distances
    i = int(np.argmax(np.where(cuts, correct, -1)))
    lo = ds[i - 1] if i > 0 else ds[0] - 1e-6
    hi = ds[i] if i < len(ds) else ds[-1] + 1e-6
    return float((lo + hi) / 2), float(correct[i] / len(s))


def roc_auc(d: np.ndarray, same: np.ndarray) -> float:
    """P(a same pair is closer than a different pair), ties counting half (Mann-Whitney)."""
    pos, neg = np.sort(d[same]), np.sort(d[~same])
    farther = len(neg) - np.searchsorted(neg, pos, side="right")
    ties = np.searchsorted(neg, pos, side="right") - np.searchsorted(neg, pos, side="left")
    return float((farther + 0.5 * ties).sum() / (len(pos) * len(neg)))


def threshold_at_far(d: np.ndarray, same: np.ndarray, far: float = FAR) -> tuple[float, float, float]:
    """(threshold, TAR, FAR reached): the largest threshold whose false accepts are at most `far`.

    With n different pairs FAR moves in steps of 1/n: below that the threshold is the one of FAR 0.
    """
    neg = np.sort(d[~same])
    allowed = int(np.floor(far * len(neg) + 1e-9))
    t = float(neg[allowed]) if allowed < len(neg) else float(neg[-1]) + 1e-6  # accept d < t: `allowed` negatives
    return t, float(np.mean(d[same] < t)), float(np.mean(neg < t))


def protocol(d: np.ndarray, same: np.ndarray, fold: np.ndarray) -> dict:
    accs, thresholds = [], []
    for f in range(FOLDS):
        test = fold == f
        t, _ = best_threshold(d[~test], same[~test])
        accs.append(float(np.mean((d[test] < t) == same[test])))
        thresholds.append(t)
    t_all, acc_all = best_threshold(d, same)
    t_far, tar, far_reached = threshold_at_far(d, same)
    n_diff = int((~same).sum())
    return {"pairs": len(d), "same_pairs": int(same.sum()), "different_pairs": n_diff, "folds": FOLDS,
            "accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs)), "fold_accuracies": accs,
            "fold_thresholds": thresholds, "roc_auc": roc_auc(d, same),
            "tar_at_far_1e-3": tar, "far_reached": far_reached, "far_resolution": 1.0 / n_diff,
            "threshold": t_all, "threshold_accuracy_all_pairs": acc_all, "threshold_far_1e-3": t_far}


def save_roc(path: str | Path, d: np.ndarray, same: np.ndarray, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = np.r_[np.unique(d), np.inf]
    pos, neg = np.sort(d[same]), np.sort(d[~same])
    tar = np.searchsorted(pos, ts, side="left") / len(pos)
    far = np.searchsorted(neg, ts, side="left") / len(neg)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot(np.r_[0, far], np.r_[0, tar], lw=2)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlim(0, 1)
    ax.set_xlabel("false accept rate (different people accepted)")
    ax.set_ylabel("true accept rate (same person accepted)")
    ax.set_title(title or "verification ROC")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def evaluate_verification(model_path: str | Path, data: str | Path | None = None, *, pairs: int = PAIRS,
                          roc: str | Path | None = None, store: bool = True, batch_size: int = 256,
                          progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """The LFW protocol for the model at `model_path` on the held-out identities of `data`.

    `data` defaults to the model's own; the images used are those of identities
    the model was never trained on (checked). With `store`, the threshold and the
    result go into the model's .json (what `dcgan verify` uses) and the ROC curve beside it.
    """
    from rich.console import Console

    from dcgan_cli.identity.data import check_disjoint, load_identities
    from dcgan_cli.progress import Bars

    model_path = Path(model_path)
    model, meta = load_model(model_path)
    data = str(data or meta["data"])
    train_ids = np.asarray(meta["train_identities"])
    with Bars(progress, console=Console(stderr=True), transient=True) as bars:
        images, ids, manifest = load_identities(data)
        if (manifest["size"], manifest["channels"]) != (meta["image_size"], meta["channels"]):
            raise DcganError(f"{data} holds {manifest['size']}x{manifest['size']}x{manifest['channels']} images but "
                             f"the model takes {meta['image_size']}x{meta['image_size']}x{meta['channels']}")
        same_data = str(Path(data).resolve()) == str(Path(meta["data"]).resolve())
        wanted = np.asarray(meta["heldout_identities"]) if same_data else np.setdiff1d(np.unique(ids), train_ids)
        keep = np.isin(ids, wanted)
        images, ids = images[keep], ids[keep]
        check_disjoint(train_ids, np.unique(ids), "evaluated")
        a, b, same, fold = make_pairs(ids, pairs)
        used = np.unique(np.r_[a, b])
        embed = Embedder(model, batch_size)
        bar = bars.task("embedding held-out faces", len(used))
        emb = np.zeros((len(ids), embed.dim), np.float32)
        emb[used] = embed(images[used], bar.advance)
    d = distances(emb[a], emb[b])
    result = {"model": str(model_path), "data": data, "identities": int(len(np.unique(ids))),
              "images": int(len(used)), **protocol(d, same, fold)}
    if len(d) < pairs:
        result["note"] = (f"{len(d):,} pairs, not {pairs:,}: the held-out identities allow "
                          f"{result['same_pairs']:,} distinct same-person pairs")
    if roc is not None or store:
        roc = Path(roc) if roc is not None else model_path.parent / ROC_FILE
        save_roc(roc, d, same, f"{model_path.parent.name}: {result['identities']} held-out identities")
        result["roc"] = str(roc)
    if store:
        meta.update(threshold=result["threshold"], threshold_far_1e_3=result["threshold_far_1e-3"],
                    threshold_from=f"LFW protocol, {len(d):,} held-out pairs of {data}",
                    verification={k: v for k, v in result.items() if k not in ("fold_thresholds",)})
        write_meta(model_path, meta)
    return result


def format_verification(r: dict) -> str:
    lines = [f"model      {r['model']}",
             f"data       {r['data']}: {r['identities']:,} held-out identities, {r['images']:,} images",
             f"pairs      {r['pairs']:,} ({r['same_pairs']:,} same, {r['different_pairs']:,} different) in "
             f"{r['folds']} folds" + (f"  [{r['note']}]" if "note" in r else ""),
             f"accuracy   {r['accuracy'] * 100:.2f}% ± {r['accuracy_std'] * 100:.2f}  (threshold chosen on 9 folds, "
             f"tested on the 10th)",
             f"ROC AUC    {r['roc_auc']:.4f}",
             f"TAR@FAR    {r['tar_at_far_1e-3'] * 100:.2f}% at FAR 0.1%"
             + (f" (FAR steps are {r['far_resolution'] * 100:.2g}% with {r['different_pairs']:,} different pairs; "
                f"reached {r['far_reached'] * 100:.2g}%)" if r["far_resolution"] > FAR else ""),
             f"threshold  {r['threshold']:.4f} (best on all pairs; stored with the model), "
             f"{r['threshold_far_1e-3']:.4f} at FAR 0.1%"]
    if "roc" in r:
        lines.append(f"ROC curve  {r['roc']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# verify and identify


def _threshold(meta: dict, threshold: float | None, model_path) -> float:
    if threshold is not None:
        return check_threshold(threshold)
    if meta.get("threshold") is None:
        raise DcganError(f"{model_path} has no stored threshold; run `dcgan evaluate --verification --identity-model "
                         f"{model_path}` or pass --threshold T")
    return float(meta["threshold"])


def verify(a: str | Path, b: str | Path, model_path: str | Path, threshold: float | None = None) -> dict:
    """deepface's fields: verified, distance, threshold, model (plus the distance metric)."""
    threshold = None if threshold is None else check_threshold(threshold)  # before the model is loaded
    model, meta = load_model(model_path)
    t = _threshold(meta, threshold, model_path)
    emb = Embedder(model, 2)(np.stack([face_pixels(a, meta), face_pixels(b, meta)]))
    d = float(distances(emb[0], emb[1]))
    return {"verified": d < t, "distance": round(d, 6), "threshold": round(t, 6), "model": str(model_path),
            "distance_metric": "euclidean_l2", "img1": str(a), "img2": str(b)}


def same_person_check(model_path: str | Path, threshold: float | None = None) -> Callable:
    """`check(originals, others) -> bool per pair`: does each image still show its original's person?

    For `dcgan stylize --identity-model`: uint8 batches of any side and 1 or 3
    channels are resized (antialiased) and converted to what the embedding
    model takes, embedded, and compared with the model's stored threshold.
    """
    import tensorflow as tf

    threshold = None if threshold is None else check_threshold(threshold)  # before the model is loaded
    model, meta = load_model(model_path)
    t = _threshold(meta, threshold, model_path)
    embed = Embedder(model, 64)
    side, channels = embed.shape[0], embed.shape[-1]

    def to_model(images: np.ndarray) -> np.ndarray:
        x = tf.image.resize(tf.cast(images, tf.float32), (side, side), method="bilinear", antialias=True)
        if x.shape[-1] != channels:
            x = tf.reduce_mean(x, -1, keepdims=True) if channels == 1 else tf.repeat(x, 3, axis=-1)
        return np.clip(np.round(x.numpy()), 0, 255).astype(np.uint8)

    def check(originals: np.ndarray, others: np.ndarray) -> np.ndarray:
        return distances(embed(to_model(originals)), embed(to_model(others))) < t

    return check


def distance_check(model_path: str | Path, shape: tuple[int, int, int], threshold: float | None = None) -> Callable:
    """`check(originals, others) -> (distances (N,), threshold)` for uint8 faces of `shape` (S, S, C).

    For `dcgan anonymize --identity-model`: the model must take faces of the same
    side (they are compared as the generator draws them); channels are converted.
    """
    path = resolve_model(model_path)
    model, meta = load_model(path)
    if meta["image_size"] != shape[0]:
        raise DcganError(f"the identity model {path} takes {meta['image_size']}x{meta['image_size']} faces but the "
                         f"run draws {shape[0]}x{shape[1]}; use an identity model trained at the run's size")
    t = _threshold(meta, threshold, path)
    embed = Embedder(model, 16)

    def to_model(x: np.ndarray) -> np.ndarray:
        if x.shape[-1] == meta["channels"]:
            return x
        if meta["channels"] == 3:
            return np.repeat(x, 3, -1)
        return np.rint(x.astype(np.float64) @ np.array([[0.299], [0.587], [0.114]])).astype(np.uint8)

    def check(originals: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, float]:
        return distances(embed(to_model(originals)), embed(to_model(others))), t

    return check


def gallery_files(gallery: str | Path) -> list[tuple[str, Path]]:
    """(person, photo) for a gallery: one photo per person, as files (named by person) or sub-folders."""
    from dcgan_cli.data.datasets import IMAGE_EXTS

    gallery = Path(gallery)
    if not gallery.is_dir():
        raise DcganError(f"gallery {gallery} is not a folder; give a folder with one photo per person")
    out = []
    for p in sorted(gallery.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
            out.append((p.stem, p))
        elif p.is_dir():
            photos = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTS)
            if photos:
                out.append((p.name, photos[0]))
        if len(out) > 1 and out[-1][0] in {name for name, _ in out[:-1]}:
            first = next(q for name, q in out if name == out[-1][0])
            raise DcganError(f"the gallery {gallery} has two photos of {out[-1][0]!r} ({first.name} and "
                             f"{out[-1][1].relative_to(gallery)}); keep one per person, or rename one")
    if not out:
        raise DcganError(f"no photos in the gallery {gallery}; put one photo per person there (NAME.jpg, "
                         f"or NAME/photo.jpg)")
    return out


def identify(face: str | Path, gallery: str | Path, model_path: str | Path, top: int = 5,
             threshold: float | None = None) -> dict:
    """The `top` nearest people of a one-photo-per-person gallery; "unknown" when the nearest is over the threshold."""
    threshold = None if threshold is None else check_threshold(threshold)  # before the model is loaded
    people = gallery_files(gallery)
    model, meta = load_model(model_path)
    t = _threshold(meta, threshold, model_path)
    embed = Embedder(model, 64)
    g = embed(np.stack([face_pixels(p, meta) for _, p in people]))
    q = embed(face_pixels(face, meta)[None])[0]
    d = distances(g, q[None])
    order = np.argsort(d, kind="stable")[:top]
    matches = [{"identity": people[i][0], "photo": str(people[i][1]), "distance": round(float(d[i]), 6),
                "match": bool(d[i] < t)} for i in order]
    best = matches[0]
    return {"face": str(face), "identity": best["identity"] if best["match"] else "unknown", "threshold": round(t, 6),
            "model": str(model_path), "gallery": str(gallery), "people": len(people), "matches": matches}
