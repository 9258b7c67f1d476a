"""Latent directions for any unconditional run (InterFaceGAN: Shen et al., "Interpreting the latent space of
GANs for semantic face editing", CVPR 2020).

    dcgan directions --run RUN [--data DATA]

Three steps, each over plain arrays:

1. An attribute classifier, trained once on the run's labelled shards and kept
   in the run (layout.ATTR_CLASSIFIER_FILE): CelebA's attributes (`preprocess
   --labels celeba`) and, on a class data set (folders, MNIST), one attribute per
   class, one-vs-rest, named after it ("3" on digits: "looks like a 3"). Its
   accuracy per attribute on a held-out fifth of the images is reported, with the
   balanced accuracy (the mean of the hit rates on positives and negatives: a
   rare attribute's plain accuracy flatters it).
2. A few thousand latents z ~ N(0, I) (from --seed) through the generator (its
   EMA weights when kept, as `sample` draws), each image scored by the
   classifier (a logit per attribute).
3. Per attribute, a linear boundary in z fitted on the top and bottom `share`
   of the scored samples (InterFaceGAN fits a linear SVM on the extreme 2% of
   500,000; here a few thousand samples, so 10% of them), by L2-regularised
   logistic regression (Newton's method, in NumPy: no new dependency), on 70% of
   them; its accuracy is that on the other 30%. The unit normal n points to more
   of the attribute: z + a n has more of it for a > 0 (`dcgan edit`).

The boundaries are saved in the run as plain arrays (layout.DIRECTIONS_FILE, an
.npz NumPy reads without this package: names, normals, intercepts, accuracy)
with a readable summary beside it (layout.DIRECTIONS_INFO).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.errors import DcganError, UsageError
from dcgan_cli.runs import layout

DEFAULT_SAMPLES = 4000
DEFAULT_SHARE = 0.1  # the top and the bottom tenth of the scored samples fit each boundary
DEFAULT_EPOCHS = 15  # of the attribute classifier
VALIDATION = 0.3  # of the extreme samples, held out to measure each boundary
L2 = 1.0  # the logistic regression's ridge (sklearn's C = 1)
MAX_IMAGES = 20000  # images the classifier reads (CelebA's 200,000 would need 2.4 GB at 64x64)
CLASSIFIER_BATCH = 64
_SAMPLE_STREAM = 0xD1EC  # keeps the scored latents apart from sample's seeds


# ----------------------------------------------------------------------------
# which attributes a data set has


def attribute_sources(manifest: dict) -> list[tuple[str, str, list[str]]]:
    """(label feature, kind, names) for what directions can learn: CelebA attributes, then classes."""
    from dcgan_cli.data.shards import label_specs

    out = []
    for name, spec in label_specs(manifest).items():
        if spec.get("names"):
            out.append((name, "attributes", [str(n) for n in spec["names"]]))
        elif spec.get("classes"):
            out.append((name, "classes", [str(c) for c in spec["classes"]]))
    names = [n for _, _, ns in out for n in ns]
    bad = [n for n in names if not n or any(ch in n for ch in ",=") or names.count(n) > 1]
    if bad:
        raise DcganError(f"the data names an attribute or class {bad[0]!r} that cannot be typed after --attr "
                         f"(empty, repeated, or holding ',' or '='); rename its folder and preprocess again")
    return out


def check_data(data: str | Path) -> tuple[dict, list[str]]:
    """The data's manifest and its attribute names; an error naming the fix when it has none."""
    from dcgan_cli.data.shards import load_manifest

    manifest = load_manifest(data)
    sources = attribute_sources(manifest)
    if not sources:
        raise DcganError(f"{data} has no attributes or classes to learn directions from; preprocess it with "
                         f"--labels celeba (CelebA's list_attr_celeba.txt) or --labels folders (one folder per class)")
    return manifest, [n for _, _, ns in sources for n in ns]


def data_identity(manifest: dict) -> str:
    """A hash of the shards' hashes: the same images and labels, the same identity."""
    return hashlib.sha256("".join(s.get("sha256", s["file"]) for s in manifest["shards"]).encode()).hexdigest()[:16]


def read_labelled(data: str | Path, manifest: dict, limit: int = MAX_IMAGES) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images, int8 targets (N, K)): 1 has the attribute, 0 has not, -1 unknown; classes one-vs-rest."""
    from dcgan_cli.data.pipeline import labelled_batches

    sources = attribute_sources(manifest)
    images, targets, n = [], [], 0
    for batch, labels in labelled_batches(data, 512, tuple(s for s, _, _ in sources)):
        cols = []
        for feature, kind, names in sources:
            v = labels[feature]
            if kind == "attributes":
                cols.append(v.reshape(len(batch), -1))
            else:  # a class id -> one column per class; an unknown id (-1) unknown in every column
                one_hot = (v[:, None] == np.arange(len(names))[None]).astype(np.int64)
                cols.append(np.where(v[:, None] < 0, -1, one_hot))
        images.append(batch)
        targets.append(np.concatenate(cols, 1).astype(np.int8))
        n += len(batch)
        if n >= limit:
            break
    return np.concatenate(images)[:limit], np.concatenate(targets)[:limit]


# ----------------------------------------------------------------------------
# the attribute classifier


def build_classifier(side: int, channels: int, k: int):
    """uint8 images -> K logits: stride-2 convolutions down to 4x4, then two dense layers (stock layers)."""
    import keras
    from keras import layers

    from dcgan_cli.pixels import scaling_layer

    x = keras.Input((side, side, channels))
    h, f = scaling_layer()(x), 32
    while h.shape[1] > 4:
        h = layers.Conv2D(f, 3, strides=2, padding="same", activation="relu")(h)
        f = min(f * 2, 256)
    h = layers.Dense(128, activation="relu")(layers.Flatten()(h))
    return keras.Model(x, layers.Dense(k, name="logits")(h), name="attribute_classifier")


def _masked_bce(y_true, logits):
    """Binary cross-entropy over the known labels only (-1: unknown, weight 0)."""
    from keras import ops

    known = ops.cast(y_true >= 0, "float32")
    loss = ops.binary_crossentropy(ops.maximum(ops.cast(y_true, "float32"), 0.0), logits, from_logits=True)
    return ops.sum(loss * known) / ops.maximum(ops.sum(known), 1.0)


def classifier_report(logits: np.ndarray, targets: np.ndarray, names: list[str]) -> dict[str, dict]:
    """Per attribute: accuracy, balanced accuracy and the share of positives, over the known labels."""
    out = {}
    for j, name in enumerate(names):
        known = targets[:, j] >= 0
        y, p = targets[known, j] == 1, logits[known, j] > 0
        hits = [float(np.mean(p[y == c])) if np.any(y == c) else float("nan") for c in (True, False)]
        out[name] = {"accuracy": float(np.mean(p == y)) if known.any() else float("nan"),
                     "balanced_accuracy": float(np.nanmean([hits[0], 1 - hits[1]])) if known.any() else float("nan"),
                     "positives": float(np.mean(y)) if known.any() else float("nan")}
    return out


def train_classifier(images: np.ndarray, targets: np.ndarray, names: list[str], *, seed: int = 0,
                     epochs: int = DEFAULT_EPOCHS):
    """(model, held-out report): trained on four fifths (seeded), measured on the last fifth."""
    import keras

    keras.utils.set_random_seed(seed)
    order = np.random.default_rng(seed).permutation(len(images))
    cut = len(images) * 4 // 5
    train, held = order[:cut], order[cut:]
    model = build_classifier(images.shape[1], images.shape[3], len(names))
    model.compile(keras.optimizers.Adam(1e-3), _masked_bce)
    model.fit(images[train], targets[train].astype(np.float32), batch_size=CLASSIFIER_BATCH, epochs=epochs,
              verbose=0, shuffle=True)
    return model, classifier_report(predict(model, images[held]), targets[held], names)


def predict(model, images: np.ndarray) -> np.ndarray:
    """float32 (N, K) logits of uint8 images."""
    if not len(images):
        return np.zeros((0, int(model.output_shape[-1])), np.float32)
    return np.asarray(model.predict(images, batch_size=256, verbose=0), np.float32)


def load_classifier(run: str | Path):
    import keras

    return keras.saving.load_model(Path(run) / layout.ATTR_CLASSIFIER_FILE, compile=False)


def _save_classifier(run: Path, model, info: dict) -> None:
    from dcgan_cli.fsutil import atomic_path, write_json

    with atomic_path(run / layout.ATTR_CLASSIFIER_FILE) as tmp:
        model.save(tmp)
    write_json(run / layout.ATTR_CLASSIFIER_INFO, info)


def kept_classifier(run: Path, names: list[str], identity: str) -> dict | None:
    """The classifier's info when the run keeps one trained on these attributes of this data, else None."""
    try:
        info = json.loads((run / layout.ATTR_CLASSIFIER_INFO).read_text())
    except (OSError, ValueError):
        return None
    same = info.get("names") == names and info.get("data_identity") == identity
    return info if same and (run / layout.ATTR_CLASSIFIER_FILE).is_file() else None


# ----------------------------------------------------------------------------
# boundaries in z (pure NumPy)


def logistic_fit(x: np.ndarray, y: np.ndarray, l2: float = L2, iterations: int = 25) -> tuple[np.ndarray, float]:
    """(w (D,), b): L2-regularised logistic regression (the intercept unpenalised) by Newton's method.

    x: float (N, D); y: 0/1 (N,). Minimises sum log(1 + exp(-s_i (w.x_i + b))) + l2/2 |w|^2, s_i = 2 y_i - 1.
    """
    x1 = np.concatenate([np.asarray(x, np.float64), np.ones((len(x), 1))], 1)
    y = np.asarray(y, np.float64)
    theta = np.zeros(x1.shape[1])
    ridge = np.full(x1.shape[1], l2)
    ridge[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x1 @ theta, -30, 30)))
        grad = x1.T @ (p - y) + ridge * theta
        hess = (x1 * (p * (1 - p))[:, None]).T @ x1 + np.diag(ridge + 1e-9)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return theta[:-1], float(theta[-1])


def fit_boundary(z: np.ndarray, scores: np.ndarray, share: float = DEFAULT_SHARE, seed: int = 0) \
        -> tuple[np.ndarray, float, float]:
    """(unit normal (D,), intercept, held-out accuracy) of one attribute: InterFaceGAN's train_boundary.

    z: (N, D) latents; scores: (N,) the classifier's logits of G(z). The top and bottom `share` of the
    samples are the positives and negatives; 70% of them fit the boundary, the rest measure it.
    The intercept is that of the unit normal: n.z + intercept is the signed distance to the boundary.
    """
    n_side = max(2, int(len(z) * share))
    if 2 * n_side > len(z):
        raise DcganError(f"{len(z)} samples are too few for a top and bottom share of {share}")
    order = np.argsort(scores, kind="stable")
    chosen = np.concatenate([order[:n_side], order[-n_side:]])
    y = np.concatenate([np.zeros(n_side), np.ones(n_side)])
    perm = np.random.default_rng(seed).permutation(len(chosen))
    cut = int(round(len(perm) * (1 - VALIDATION)))
    fit, held = perm[:cut], perm[cut:]
    w, b = logistic_fit(z[chosen[fit]], y[fit])
    norm = float(np.linalg.norm(w)) or 1.0
    normal, intercept = w / norm, b / norm
    accuracy = float(np.mean(((z[chosen[held]] @ normal + intercept) > 0) == (y[held] == 1)))
    return normal.astype(np.float32), float(intercept), accuracy


def project_out(normal: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """`normal` with its components along the `kept` normals (M, D) removed, made unit again.

    InterFaceGAN's conditional manipulation: moving along the result leaves the signed distance to every
    kept boundary unchanged (their normals span the subspace it is orthogonal to).
    """
    normal = np.asarray(normal, np.float64)
    if len(kept):
        q, _ = np.linalg.qr(np.asarray(kept, np.float64).T)  # (D, M): an orthonormal basis of their span
        normal = normal - q @ (q.T @ normal)
    norm = float(np.linalg.norm(normal))
    if norm < 1e-6:
        raise DcganError("the edited direction lies within the kept ones: holding them fixed leaves nothing "
                         "to move; keep fewer attributes")
    return (normal / norm).astype(np.float32)


# ----------------------------------------------------------------------------
# the saved boundaries


@dataclass
class Directions:
    """A run's boundaries: names (K,), unit normals (K, D), intercepts and held-out accuracy (K,), info."""

    names: list[str]
    normals: np.ndarray
    intercepts: np.ndarray
    accuracy: np.ndarray
    info: dict

    def normal(self, name: str) -> np.ndarray:
        return self.normals[self.names.index(name)]

    def check_names(self, names, option: str) -> None:
        """A one-line error listing the known attributes (CelebA's 40 would overflow a usage box) when one of
        `names` is not among them."""
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise DcganError(f"unknown attribute {unknown[0]!r} in {option}; this run's directions are: "
                             f"{', '.join(self.names)}")


def save_directions(run: Path, d: Directions) -> None:
    """directions.npz (plain arrays: no pickles) and directions.json, each written atomically."""
    from dcgan_cli.fsutil import atomic_path, write_json

    with atomic_path(run / layout.DIRECTIONS_FILE) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, names=np.array(d.names, dtype=str), normals=d.normals.astype(np.float32),
                     intercepts=d.intercepts.astype(np.float32), accuracy=d.accuracy.astype(np.float32))
    write_json(run / layout.DIRECTIONS_INFO, d.info)


def load_directions(run: str | Path) -> Directions:
    """The run's saved boundaries; an error naming `dcgan directions` when it has none."""
    run = Path(run)
    path = run / layout.DIRECTIONS_FILE
    if not path.is_file():
        raise DcganError(f"{run} has no latent directions yet; make them with `dcgan directions --run {run}`")
    try:
        with np.load(path, allow_pickle=False) as f:
            names, normals = [str(n) for n in f["names"]], f["normals"].astype(np.float32)
            intercepts, accuracy = f["intercepts"].astype(np.float32), f["accuracy"].astype(np.float32)
        info = json.loads((run / layout.DIRECTIONS_INFO).read_text())
    except (OSError, ValueError, KeyError) as e:
        raise DcganError(f"cannot read {path} ({type(e).__name__}); make them again with "
                         f"`dcgan directions --run {run} --force`") from None
    if normals.ndim != 2 or len(names) != len(normals):
        raise DcganError(f"{path} is damaged (names and normals disagree); make it again with "
                         f"`dcgan directions --run {run} --force`")
    return Directions(names, normals, intercepts, accuracy, info)


def check_unconditional(run: Path, command: str) -> None:
    """Directions and edits move z alone: a conditional run (G takes z and a label) is refused for now."""
    if getattr(layout.load_config(run), "condition", None) not in (None, "", "none"):
        raise DcganError(f"{run} is a conditional run; `dcgan {command}` works on unconditional runs for now: "
                         f"use `dcgan sample --class/--attr` on it")


# ----------------------------------------------------------------------------
# dcgan directions


@dataclass(frozen=True)
class DirectionsRequest:
    """One `dcgan directions`, checked before anything loads.

    Attributes:
        run: the run (default: the newest under runs_dir). data: its labelled shards (default: the run's data).
        samples: generated latents scored. share: the top and bottom share that fit each boundary.
        seed: of the latents, the classifier and the splits. epochs: the classifier's.
        force: fit the boundaries again when the run has them. retrain: train the classifier again too.
    """

    run: Path | None = None
    data: Path | None = None
    samples: int = DEFAULT_SAMPLES
    share: float = DEFAULT_SHARE
    seed: int = 0
    epochs: int = DEFAULT_EPOCHS
    force: bool = False
    retrain: bool = False
    runs_dir: Path = Path("runs")

    def __post_init__(self):
        for option, value, least in (("--samples", self.samples, 20), ("--seed", self.seed, 0),
                                     ("--classifier-epochs", self.epochs, 1)):
            if value < least:
                raise UsageError(f"{value} is less than the minimum of {least}", option)
        if not 0 < self.share <= 0.5 or int(self.samples * self.share) < 5:
            raise UsageError(f"{self.share} must be in (0, 0.5] and leave at least 5 samples on each side "
                             f"(--samples {self.samples})", "--share")


def fulfil_directions(req: DirectionsRequest, say: Callable[[str], None] = print) -> str:
    """Train (or reuse) the classifier, score samples, fit and save one boundary per attribute."""
    from dcgan_cli.data.shards import check_shape
    from dcgan_cli.generate.sampling import Sampler, load_generator

    run = Path(req.run) if req.run is not None else layout.latest_run(req.runs_dir)
    cfg = layout.load_config(run)
    check_unconditional(run, "directions")
    data = Path(req.data) if req.data is not None else Path(cfg.data)
    manifest, names = check_data(data)
    check_shape(manifest, cfg.image_size, cfg.channels, wanted_by="the run's generator",
                fix="name the data the run was trained on with --data")
    if (run / layout.DIRECTIONS_FILE).exists() and not (req.force or req.retrain):
        raise DcganError(f"{run} already has directions; pass --force to fit them again")
    with layout.lock_run(run):
        identity = data_identity(manifest)
        info = None if req.retrain else kept_classifier(run, names, identity)
        if info is None:
            say(f"Training the attribute classifier on {data} ({len(names)} attributes)")
            images, targets = read_labelled(data, manifest)
            model, report = train_classifier(images, targets, names, seed=req.seed, epochs=req.epochs)
            info = {"names": names, "data": str(data), "data_identity": identity, "images": len(images),
                    "epochs": req.epochs, "seed": req.seed, "held_out": report}
            _save_classifier(run, model, info)
        else:
            say(f"Reusing the attribute classifier kept in {run} (trained on {info['data']})")
            model = load_classifier(run)
        loaded = load_generator(run, warn=lambda m: say(f"Warning: {m}"))
        sampler = Sampler(loaded.model)
        say(f"Scoring {req.samples} samples of {loaded.source}")
        z = np.random.default_rng([_SAMPLE_STREAM, req.seed]).standard_normal(
            (req.samples, sampler.latent_dim)).astype(np.float32)
        scores = predict(model, sampler(z))
        fits = [fit_boundary(z, scores[:, j], req.share, req.seed) for j in range(len(names))]
        held = info["held_out"]
        rows = [{"name": n, "boundary_accuracy": acc, "classifier_accuracy": held[n]["accuracy"],
                 "classifier_balanced_accuracy": held[n]["balanced_accuracy"], "positives": held[n]["positives"],
                 "generated_positive_share": float(np.mean(scores[:, j] > 0))}
                for j, (n, (_, _, acc)) in enumerate(zip(names, fits))]
        d = Directions(names, np.stack([f[0] for f in fits]), np.array([f[1] for f in fits], np.float32),
                       np.array([f[2] for f in fits], np.float32),
                       {**loaded.facts, "latent_dim": sampler.latent_dim, "samples": req.samples, "share": req.share,
                        "seed": req.seed, "data": str(data), "attributes": rows})
        save_directions(run, d)
    for r in rows:
        say(f"  {r['name']:<20} classifier {r['classifier_accuracy']:.3f} (balanced "
            f"{r['classifier_balanced_accuracy']:.3f})  boundary {r['boundary_accuracy']:.3f}  "
            f"generated with it {r['generated_positive_share']:.2f}")
    return (f"Wrote {len(names)} directions to {run / layout.DIRECTIONS_FILE} (mean boundary accuracy "
            f"{float(np.mean(d.accuracy)):.3f}); edit with `dcgan edit --run {run} --attr NAME=+2 --seeds 0-7 -o edit.png`")
