"""`dcgan bench --parts quality`: are the samples good, measured against a plain-Keras reference?

The data ship with the packages, so this runs offline. Two sets, each written
out as PNG files that go through `dcgan preprocess --size 32 --channels 1
--crop none`, exactly as a user's folder would:

- digits: scikit-learn's 1,797 hand-written digits (8x8, 17 grey levels, 10
  classes); the figure of merit;
- faces: scikit-image's 100 LFW faces (25x25 grey; `dcgan download
  lfw-sample`), the demo's data: a set so small that copying shows;
- faces80 (only when asked: half an hour a seed): 80 of those faces train for
  6,000 steps at batch 32, the other 20 are held out: the small-data set, where
  augmentation (`--quality-augment none,diffaug,ada`) decides between drawing
  faces and copying them.

Then, for each seed:

- ours: the `dcgan` preset trained by `training.train()` (the code path of
  `dcgan train`) for a fixed number of steps, sampled the way `dcgan sample`
  does (the EMA generator when the preset keeps one; the live one is scored too);
- the reference: a plain-Keras DCGAN of the same architecture (stock layers,
  float32, the PyTorch example's step), same data, batch, steps and seed.

Both are scored on the same latents by `score()`:
- FD and KID on the penultimate features of a small classifier trained here,
  seeded, on the real images of the set (a held-out fifth gives its accuracy):
  Fréchet and kernel distances of `metrics/stats.py`, computed the way FID/KID
  are but on features that know what a digit (or a face) is. The digits'
  classifier tells the 10 digits apart; the faces' tells the 100 faces from
  lfw_subset's 100 non-faces (with flips and shifts, so 160 images train it);
- digits: class coverage, the share of the 10 classes that get at least a
  quarter of their fair share of samples, and balance, exp(entropy) / 10 of
  the predicted class histogram (1.0: every class equally often);
- faces: the share of samples the classifier calls a face;
- nn: the median distance (RMS over pixels in [0, 1]) from a sample to its
  nearest training image, and `copies`, the share of samples closer to a
  training image than 99% of the training images are to their nearest other
  one. Low FD with many copies is memorising, not drawing: `copied` flags it;
- copy ratio: the samples' median nearest-training-image distance over that of
  real faces the generator never saw (faces80's 20 held out; < 1 is copying,
  about 1 is drawing new faces as close to the training ones as new real faces
  are); diversity: the mean pairwise distance (RMS over pixels) of the samples
  over that of the real training images (well under 1 is collapse).

The figure of merit is FD ours / FD reference, per seed, and its mean and
spread over seeds (the faces' FD rests on 100 real images, so its KID ratio
is printed too). Ratios, not absolute values, carry over between machines.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.metrics.prdc import prdc
from dcgan_cli.metrics.stats import frechet_distance, kernel_inception_distance
from dcgan_cli.pixels import scaling_layer, to_signed

DEFAULT_STEPS = 300  # the digits' budget: 21 epochs of 1,797 images at batch 128
# 100 faces at batch 64: 300 steps is early in training for both models there (the reference's
# FD still falls by more than half to 1,000 steps), and an average over the last tenth of a
# generator that is still changing fast scores 3x worse than the live one (docs/quality.md).
FACES_STEPS = 1000
DEFAULT_SEEDS = (0, 1, 2)
SETS = ("digits", "faces", "faces80")
DEFAULT_SETS = ("digits", "faces")  # faces80 is long (6,000 steps per model and mode): only when asked
# Small data: the faces benches that need unseen faces (small-data quality, repair) train on
# FACES_TRAIN of the 100 and keep the rest out; `held_out_split` is the one place that says which.
FACES_TRAIN = 80
FACES_BATCH = 64  # the faces set has 100 images: the preset's 128 would repeat some in every batch
# The small-data set (faces80): long enough for D to memorise 80 faces without augmentation.
FACES80_STEPS = 6000
FACES80_BATCH = 32
DIVERSITY_SAMPLES = 500  # samples whose pairwise distances give the diversity
SAMPLES = 2000  # generated images scored per model (FD needs more than the 64 feature dims)
SIZE = 32
NUM_CLASSES = 10
COPY_QUANTILE = 0.01  # a sample nearer a training image than this quantile of real-to-real distances is a copy
COPY_FLAG = 0.05  # more copies than this share (about 1% by chance) flags memorising
_Z_SEED = 0x5A4D  # the scored latents: the same for ours and the reference


# ----------------------------------------------------------------------------
# the data, through the project's own preprocess


@dataclass
class QualitySet:
    name: str
    data_dir: Path  # preprocessed shards + manifest, for `dcgan train`
    images: np.ndarray  # uint8 (N, SIZE, SIZE, 1), as the trainer reads them
    labels: np.ndarray | None  # int (N,): the digits' classes; None for faces
    negatives: np.ndarray | None = None  # uint8 images of non-faces, for the faces' classifier
    batch_size: int = 128  # of both contestants: the preset's, or FACES_BATCH
    steps: int = DEFAULT_STEPS  # the budget per model and seed unless the caller gives one
    held_out: np.ndarray | None = None  # uint8 real images of the same kind that training never sees


def digits_set(workdir: Path, log: Callable[[str], None] = lambda m: None) -> QualitySet:
    """sklearn's digits as PNG files -> `preprocess` -> shards, read back with their labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    raw = np.rint(digits.images * (255 / 16)).astype(np.uint8)  # (N, 8, 8), 0..16 -> 0..255
    src = workdir / "digits-png"
    src.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(raw):
        Image.fromarray(img, "L").save(src / f"{i:04d}.png")
    out = workdir / "digits-32"
    images = preprocessed_images(src, out, log)
    # Labels by matching each 32x32 image, pooled back to 8x8, to its source digit:
    # correct whatever order the shards hold the images in.
    pooled = images.reshape(-1, 8, 4, 8, 4).mean(axis=(2, 4)).reshape(len(images), -1)
    src_flat = raw.reshape(len(raw), -1).astype(np.float32)
    nearest = np.argmin(_sq_dists(pooled.astype(np.float32), src_flat), axis=1)
    return QualitySet("digits", out, images, digits.target[nearest].astype(np.int64))


def faces_set(workdir: Path, log: Callable[[str], None] = lambda m: None) -> QualitySet:
    """lfw_subset's 100 faces as `dcgan download lfw-sample` writes them -> `preprocess` -> shards;
    its 100 non-faces through the same preprocess, as the negatives of the faces' classifier."""
    from PIL import Image
    from skimage.data import lfw_subset

    from dcgan_cli.data.datasets.lfw_sample import N_FACES, write_lfw_sample

    faces = preprocessed_images(write_lfw_sample(workdir / "faces-png"), workdir / "faces-32", log)
    src = workdir / "nonfaces-png"
    src.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(lfw_subset()[N_FACES:]):
        Image.fromarray(np.round(img * 255).astype(np.uint8), "L").save(src / f"nonface-{i:03d}.png")
    negatives = preprocessed_images(src, workdir / "nonfaces-32", log)
    return QualitySet("faces", workdir / "faces-32", faces, None, negatives, FACES_BATCH, FACES_STEPS)


def held_out_split(n: int, train: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, held-out indices) of `n` images: one fixed permutation, sorted."""
    if not 0 < train < n:
        raise ValueError(f"a split needs 0 < train < n, got train={train}, n={n}")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:train]), np.sort(order[train:])


def held_out_faces_set(workdir: Path, log: Callable[[str], None] = lambda m: None,
                       train: int = FACES_TRAIN) -> QualitySet:
    """`train` of the 100 lfw faces as a folder -> `preprocess` -> shards; the other faces held out.

    The same split every time (`held_out_split`), so benches that train on it
    (small data, repair) are scored on faces their generator never saw.
    """
    from PIL import Image

    full = faces_set(workdir, log)
    keep, held = held_out_split(len(full.images), train)
    src = workdir / f"faces{train}-png"
    src.mkdir(parents=True, exist_ok=True)
    for i in keep:
        Image.fromarray(full.images[i, :, :, 0], "L").save(src / f"face-{i:03d}.png")
    images = preprocessed_images(src, workdir / f"faces{train}-32", log)
    return QualitySet(f"faces{train}", workdir / f"faces{train}-32", images, None, full.negatives,
                      FACES_BATCH, FACES_STEPS, held_out=full.images[held])


def preprocessed_images(src: Path, out: Path, log) -> np.ndarray:
    """`dcgan preprocess SRC --size 32 --channels 1 --crop none` into `out`; the images read back (uint8)."""
    from dcgan_cli.data.pipeline import make_dataset
    from dcgan_cli.data.preprocess import PreprocessConfig, preprocess

    preprocess(PreprocessConfig(source=str(src), out=str(out), size=SIZE, crop="none", channels=1, workers=1),
               log=log)
    ds = make_dataset(out, 512, shuffle=False, repeat=False, seed=0, drop_remainder=False)
    return np.concatenate([b.numpy() for b in ds])


def quality_set(name: str, workdir: Path, log: Callable[[str], None] = lambda m: None) -> QualitySet:
    if name not in SETS:
        raise ValueError(f"unknown quality set {name!r}: use {', '.join(SETS)}")
    if name == "faces80":
        qs = held_out_faces_set(workdir / name, log)
        qs.batch_size, qs.steps = FACES80_BATCH, FACES80_STEPS
        return qs
    return (digits_set if name == "digits" else faces_set)(workdir / name, log)


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (len(a), len(b)), float32 matmul form, clipped at 0."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


# ----------------------------------------------------------------------------
# the feature extractor: a small classifier of the real images


def train_classifier(images: np.ndarray, labels: np.ndarray, seed: int = 0, epochs: int = 15,
                     num_classes: int = NUM_CLASSES, augment: bool = False):
    """(classifier, features model, held-out accuracy): a seeded CNN; features = its penultimate layer.

    Trained on four fifths of the images; the last fifth measures its accuracy
    (so a broken extractor shows), then the model is used as it is. `augment`:
    random flips and shifts of up to 10% while it trains (a set of 200 images).
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    n = len(images)
    order = np.random.default_rng(seed).permutation(n)
    train_idx, test_idx = order[: n * 4 // 5], order[n * 4 // 5:]
    x = keras.Input(images.shape[1:])
    h = scaling_layer()(x)
    if augment:  # active in fit() only
        h = layers.RandomFlip("horizontal", seed=seed)(h)
        h = layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed)(h)
    for f in (32, 64, 128):
        h = layers.Conv2D(f, 3, padding="same", activation="relu")(h)
        h = layers.MaxPooling2D()(h)
    h = layers.Flatten()(h)  # not pooled: where the strokes are is what tells digits apart
    feats = layers.Dense(64, activation="relu", name="features")(h)
    logits = layers.Dense(num_classes, name="logits")(feats)
    model = keras.Model(x, logits)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(images[train_idx], labels[train_idx], batch_size=64, epochs=epochs, verbose=0, shuffle=True)
    acc = float(np.mean(np.argmax(model.predict(images[test_idx], verbose=0), 1) == labels[test_idx]))
    return model, keras.Model(x, [feats, logits]), acc


@dataclass
class Reals:
    """What the scores compare samples against, computed once per data set."""

    features: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # uint8 images -> (features, class ids)
    mu: np.ndarray
    sigma: np.ndarray
    feats: np.ndarray
    pixels: np.ndarray  # (N, H*W*C) float32 in [0, 1]
    copy_threshold: float  # COPY_QUANTILE of real-to-nearest-other-real distances
    accuracy: float
    classes: int = NUM_CLASSES  # 10 digits; 2 for faces (0: not a face, 1: a face)
    spread: float = 1.0  # mean pairwise pixel distance of the training images (diversity's unit)
    held_nn: float | None = None  # median nearest-training distance of the held-out real images (copy ratio's)


_REALS: dict[str, Reals] = {}  # prepared scorers of this process, by content (see prepare_reals)


def prepare_reals(qs: QualitySet, seed: int = 0) -> Reals:
    """The scorer of a set: its classifier trained once per process for the same images, labels and seed.

    Seeded training on the same arrays gives the same classifier, so a process that scores one set many
    times (several benches in a row, an ablation, the tests) trains it once.
    """
    h = hashlib.sha256(f"{qs.name}:{seed}".encode())
    for a in (qs.images, qs.labels, qs.negatives, qs.held_out):
        h.update(b"-" if a is None else np.ascontiguousarray(a).tobytes())
    key = h.hexdigest()
    if key not in _REALS:
        _REALS[key] = _prepare_reals(qs, seed)
    return _REALS[key]


def _prepare_reals(qs: QualitySet, seed: int) -> Reals:
    if qs.labels is not None:
        _, feature_model, acc = train_classifier(qs.images, qs.labels, seed)
        classes = NUM_CLASSES
    else:  # faces: told from non-faces
        both = np.concatenate([qs.images, qs.negatives])
        is_face = np.r_[np.ones(len(qs.images)), np.zeros(len(qs.negatives))].astype(np.int64)
        _, feature_model, acc = train_classifier(both, is_face, seed, epochs=60, num_classes=2, augment=True)
        classes = 2
    scale = [1.0]

    def features(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, logits = feature_model.predict(images, batch_size=256, verbose=0)
        return f.astype(np.float64) / scale[0], np.argmax(logits, 1)

    # Features scaled to unit RMS on the real images, so KID's cubic kernel sees O(1) dot products.
    scale[0] = float(np.sqrt(np.mean(features(qs.images)[0] ** 2)))
    feats, _ = features(qs.images)
    pixels = _pixels(qs.images)
    d = _sq_dists(pixels, pixels)
    np.fill_diagonal(d, np.inf)
    loo = np.sqrt(d.min(1) / pixels.shape[1])
    held_nn = None
    if qs.held_out is not None:
        held_nn = float(np.median(np.sqrt(_sq_dists(_pixels(qs.held_out), pixels).min(1) / pixels.shape[1])))
    return Reals(features, feats.mean(0), np.cov(feats, rowvar=False), feats, pixels,
                 float(np.quantile(loo, COPY_QUANTILE)), acc, classes, _spread(pixels), held_nn)


def _pixels(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def _spread(pixels: np.ndarray) -> float:
    """Mean pairwise distance (RMS over pixels) of up to DIVERSITY_SAMPLES images."""
    x = pixels[:DIVERSITY_SAMPLES]
    d = np.sqrt(_sq_dists(x, x) / x.shape[1])
    return float(d[np.triu_indices(len(x), 1)].mean())


def score(images: np.ndarray, reals: Reals) -> dict:
    """FD, KID, precision and recall (Kynkaanniemi et al., k = 3, on the same features), nearest-training-image
    distance of uint8 samples; class coverage and balance (digits) or the share the classifier calls a face (faces)."""
    feats, classes = reals.features(images)
    fd = frechet_distance(feats.mean(0), np.cov(feats, rowvar=False), reals.mu, reals.sigma)
    kid, _, _ = kernel_inception_distance(reals.feats, feats, subsets=50, subset_size=min(1000, len(feats)))
    nn = np.sqrt(_sq_dists(_pixels(images), reals.pixels).min(1) / reals.pixels.shape[1])
    copies = float(np.mean(nn <= reals.copy_threshold))
    pr = prdc(reals.feats, feats, ks=(3,))
    out = {"fd": fd, "kid": kid, "precision": pr["precision_k3"], "recall": pr["recall_k3"], "nn": float(np.median(nn)),
           "copies": copies, "copied": copies > COPY_FLAG, "diversity": _spread(_pixels(images)) / reals.spread}
    if reals.held_nn:
        out["copy_ratio"] = out["nn"] / reals.held_nn
    if reals.classes == 2:
        return {**out, "faces": float(np.mean(classes == 1))}
    counts = np.bincount(classes, minlength=reals.classes)
    p = counts / counts.sum()
    entropy = -np.sum(p[p > 0] * np.log(p[p > 0]))
    return {**out, "coverage": float(np.mean(counts >= len(images) / (4 * reals.classes))),
            "balance": float(np.exp(entropy) / reals.classes)}


def sample(generator, n: int = SAMPLES, batch_size: int = 250) -> np.ndarray:
    """uint8 images of `generator` (inference mode) for the fixed scoring latents."""
    from dcgan_cli.pixels import to_uint8

    z = np.random.default_rng(_Z_SEED).standard_normal((n, generator.input_shape[-1])).astype(np.float32)
    return np.concatenate([to_uint8(np.asarray(generator(z[i:i + batch_size], training=False)))
                           for i in range(0, n, batch_size)])


# ----------------------------------------------------------------------------
# the two contestants


def our_config(qs: QualitySet, seed: int, steps: int, runs_dir: Path, epochs: int = 5, preset_name: str = "dcgan",
               **overrides):
    """`preset_name` (the `dcgan` preset) on this data as `dcgan train` makes it (`preset_for_data`: its
    small-data recipe on a small set), `steps` steps in about `epochs` epochs (few per-epoch outputs)."""
    from dcgan_cli.config import preset_for_data
    from dcgan_cli.data.shards import load_manifest

    per_epoch = max(1, math.ceil(steps / epochs))
    return preset_for_data(preset_name, load_manifest(qs.data_dir), data=str(qs.data_dir), image_size=SIZE,
                           channels=1, seed=seed, runs_dir=str(runs_dir), steps_per_epoch=per_epoch,
                           epochs=math.ceil(steps / per_epoch), **overrides)


def train_ours(cfg, run_dir: Path) -> tuple[object, object | None]:
    """(sampled generator, live generator or None): trained as `dcgan train` trains, restored as `dcgan sample` does."""
    from dcgan_cli.gan.generator_io import restore
    from dcgan_cli.training.loop import train

    train(cfg, run_dir, quiet=True, log=lambda m: None)
    sampled = restore(run_dir, ema=True)
    live = restore(run_dir, ema=False).model if sampled.ema else None
    return sampled.model, live


def train_ours_curve(cfg, run_dir: Path, reals: Reals, log: Callable[[str], None]) -> tuple[list[dict], object, object]:
    """(scores after each epoch, sampled generator, live generator): `cfg` trained one epoch at a time,
    each continuing the last through a resume (the path of `dcgan train --resume RUN --epochs N`).

    Its last point is the same model `train_ours` gives: a resume continues at the exact step.
    """
    from dcgan_cli.config import TrainConfig
    from dcgan_cli.gan.generator_io import restore
    from dcgan_cli.training.loop import train

    curve = []
    for epoch in range(1, cfg.epochs + 1):
        if epoch == 1:
            train(cfg.replace(epochs=1), run_dir, quiet=True, log=lambda m: None)
        else:
            train(TrainConfig.of_run(run_dir).resumed(run_dir, epochs=epoch), resume=run_dir, quiet=True,
                  log=lambda m: None)
        sampled = restore(run_dir, ema=True)
        point = {"step": epoch * cfg.steps_per_epoch, **score(sample(sampled.model), reals)}
        curve.append(point)
        log(f"  step {point['step']}: FD {point['fd']:.3g} KID {point['kid']:.4f} nn {point['nn']:.3f}"
            + (" COPIED" if point["copied"] else ""))
    live = restore(run_dir, ema=False).model if sampled.ema else None
    return curve, sampled.model, live


def curve_summary(curve: list[dict]) -> dict:
    """Where FD was lowest, and how far the end is above it (1.0: the end is the best point)."""
    best = min(curve, key=lambda p: p["fd"])
    return {"best_step": best["step"], "best_fd": best["fd"], "final_fd": curve[-1]["fd"],
            "final_over_best": curve[-1]["fd"] / best["fd"]}


def train_reference(images: np.ndarray, seed: int, steps: int, batch_size: int = 128, nz: int = 100,
                    ngf: int = 64, ndf: int = 64):
    """A plain-Keras DCGAN (Radford et al.): stock layers, float32, the PyTorch example's step.

    The layers and initialisation of model.py's (fast=False) at this size; D is
    updated on real and detached fake images, then G through the updated D.
    """
    import keras
    import tensorflow as tf
    from keras import layers

    if keras.mixed_precision.global_policy().name != "float32":
        raise RuntimeError("the reference runs in float32: reset keras.mixed_precision's global policy first")
    keras.utils.set_random_seed(seed)
    size, ch, n = images.shape[1], images.shape[3], int(math.log2(images.shape[1] / 4))
    init, gamma = keras.initializers.RandomNormal(0, 0.02), keras.initializers.RandomNormal(1, 0.02)

    def bn():
        return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, gamma_initializer=gamma)

    G = keras.Sequential([keras.Input((nz,)), layers.Reshape((1, 1, nz)),
                          layers.Conv2DTranspose(ngf * 2 ** (n - 1), 4, 1, "valid", use_bias=False,
                                                 kernel_initializer=init), bn(), layers.ReLU()])
    for i in range(n - 2, -1, -1):
        G.add(layers.Conv2DTranspose(ngf * 2 ** i, 4, 2, "same", use_bias=False, kernel_initializer=init))
        G.add(bn())
        G.add(layers.ReLU())
    G.add(layers.Conv2DTranspose(ch, 4, 2, "same", use_bias=False, kernel_initializer=init, activation="tanh"))
    D = keras.Sequential([keras.Input((size, size, ch)),
                          layers.Conv2D(ndf, 4, 2, "same", use_bias=False, kernel_initializer=init),
                          layers.LeakyReLU(0.2)])
    for i in range(1, n):
        D.add(layers.Conv2D(ndf * 2 ** i, 4, 2, "same", use_bias=False, kernel_initializer=init))
        D.add(bn())
        D.add(layers.LeakyReLU(0.2))
    D.add(layers.Conv2D(1, 4, 1, "valid", use_bias=False, kernel_initializer=init))
    D.add(layers.Flatten())
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    g_opt, d_opt = keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5)

    @tf.function
    def step(real):
        real = to_signed(tf.cast(real, tf.float32))
        z = tf.random.normal((batch_size, nz))
        with tf.GradientTape() as g_tape:
            fake = G(z, training=True)
            with tf.GradientTape() as d_tape:
                r, f = D(real, training=True), D(tf.stop_gradient(fake), training=True)
                d_loss = bce(tf.ones_like(r), r) + bce(tf.zeros_like(f), f)
            d_opt.apply_gradients(zip(d_tape.gradient(d_loss, D.trainable_weights), D.trainable_weights))
            f = D(fake, training=True)
            g_loss = bce(tf.ones_like(f), f)
        g_opt.apply_gradients(zip(g_tape.gradient(g_loss, G.trainable_weights), G.trainable_weights))

    data = tf.data.Dataset.from_tensor_slices(images).shuffle(len(images), seed=seed).repeat()
    for batch in data.batch(batch_size, drop_remainder=True).take(steps):
        step(batch)
    return G


# ----------------------------------------------------------------------------
# the benchmark


def _fmt(s: dict) -> str:
    kind = f"faces {s['faces']:.2f}" if "faces" in s else f"cov {s['coverage']:.2f} bal {s['balance']:.2f}"
    small = f" copy ratio {s['copy_ratio']:.2f} diversity {s['diversity']:.2f}" if "copy_ratio" in s else ""
    return (f"FD {s['fd']:.3g} P {s['precision']:.2f} R {s['recall']:.2f} KID {s['kid']:.4f} {kind} "
            f"nn {s['nn']:.3f}{small}" + (" COPIED" if s["copied"] else ""))


def _mean_std(values) -> tuple[float, float]:
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def bench_quality(steps: int | None = None, seeds=DEFAULT_SEEDS, log: Callable[[str], None] = print,
                  workdir: str | Path | None = None, sets=DEFAULT_SETS, augments=("auto",), curve: int = 0,
                  **overrides) -> dict:
    """Each set of `sets`: ours (once per augment mode of `augments`) and the reference trained `steps`
    steps per seed (None: the set's own budget, QualitySet.steps), all scored; FD ratios.

    `curve` > 0: ours is also scored at that many evenly spaced points of its run (a long run's
    FD over steps: does it get worse after its best point?). `overrides` go to our config.
    Returns {set name: its figures}.
    """
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(workdir or tmp)
        figures = {}
        for name in sets:
            qs = quality_set(name, work)
            figures[name] = bench_quality_set(qs, steps or qs.steps, seeds, log, work / "runs" / name,
                                              augments=augments, curve=curve, **overrides)
        return figures


def bench_quality_set(qs: QualitySet, steps: int, seeds, log: Callable[[str], None], runs: Path,
                      reals: Reals | None = None, augments=("auto",), curve: int = 0,
                      **overrides) -> dict:
    """One set's figures (`reals`: its prepared scorer, when the caller has it already).

    One augment mode: that mode's figures. Several (none vs diffaug vs ada): {"set", "images",
    "steps", "by_augment": {mode: its figures}}, every mode scored against the same reference per seed.
    """
    reals = reals or prepare_reals(qs)
    floor = _describe_set(qs, reals, log)
    rows: dict[str, list] = {mode: [] for mode in augments}
    for seed in seeds:
        t = time.perf_counter()
        ref = score(sample(train_reference(qs.images, seed, steps, batch_size=qs.batch_size)), reals)
        t_ref = time.perf_counter() - t
        for mode in augments:
            label = f" augment {mode}" if len(augments) > 1 else ""
            cfg = our_config(qs, seed, steps, runs / mode, **({"epochs": curve} if curve else {}),
                             **{"batch_size": qs.batch_size, "augment": mode, **overrides})
            rows[mode].append(_our_row(cfg, runs / mode / f"ours-{seed}", reals, ref, t_ref, curve, log))
            r = rows[mode][-1]
            live_note = f" (live FD {r['ours_live']['fd']:.3g})" if "ours_live" in r else ""
            log(f"quality {qs.name} seed {seed}{label}: ours {_fmt(r['ours'])}{live_note} | reference "
                f"{_fmt(r['reference'])} | ratio {r['fd_ratio']:.2f} ({r['seconds_ours']:.0f} s)")
    figures = {mode: _summary(qs, rows[mode], steps, seeds, reals, floor, cfg.replace(augment=mode), log,
                              f" augment {mode}" if len(augments) > 1 else "") for mode in augments}
    if len(augments) == 1:
        return figures[augments[0]]
    return {"set": qs.name, "images": len(qs.images), "steps": steps, "seeds": list(seeds), "by_augment": figures}


def _describe_set(qs: QualitySet, reals: Reals, log) -> float:
    """Log what the set is and how low FD can go (real half vs all); returns that floor."""
    floor = score(qs.images[: len(qs.images) // 2], reals)["fd"]
    noise = np.random.default_rng(0).integers(0, 256, qs.images.shape, dtype=np.uint8)
    log(f"quality data: {qs.name} {len(qs.images)} images {SIZE}x{SIZE}x1; classifier held-out accuracy "
        f"{reals.accuracy:.3f}; FD real half vs all {floor:.3g}, uniform noise {score(noise, reals)['fd']:.1f}")
    if qs.held_out is not None:
        held = score(qs.held_out, reals)
        log(f"quality data: {qs.name} {len(qs.held_out)} held-out real images: nn {held['nn']:.3f} (copy ratio "
            f"1 by definition), diversity {held['diversity']:.2f} of the training images'")
    return floor


def _our_row(cfg, run_dir: Path, reals: Reals, ref: dict, t_ref: float, curve: int = 0,
             log: Callable[[str], None] = lambda m: None) -> dict:
    """Our model trained and scored against the seed's reference score `ref` (with `curve`: and
    scored after each of its epochs too)."""
    t = time.perf_counter()
    if curve:
        log(f"quality seed {cfg.seed} augment {cfg.augment}: ours over {cfg.epochs * cfg.steps_per_epoch} steps")
        points, ours, live = train_ours_curve(cfg, run_dir, reals, log)
    else:
        ours, live = train_ours(cfg, run_dir)
    row = {"seed": cfg.seed, "augment": cfg.augment, "ours": score(sample(ours), reals), "reference": ref,
           "seconds_ours": round(time.perf_counter() - t, 1), "seconds_reference": round(t_ref, 1)}
    if live is not None:
        row["ours_live"] = score(sample(live), reals)
    if curve:
        row["curve"], row["curve_summary"] = points, curve_summary(points)
        c = row["curve_summary"]
        log(f"quality seed {cfg.seed} curve: best FD {c['best_fd']:.3g} at step {c['best_step']}, "
            f"final {c['final_fd']:.3g} ({c['final_over_best']:.2f}x the best)")
    row["fd_ratio"] = row["ours"]["fd"] / ref["fd"]
    # KID is unbiased, so near 0 it can be negative: a ratio to such a reference means nothing.
    row["kid_ratio"] = row["ours"]["kid"] / ref["kid"] if ref["kid"] > 0 else None
    return row


def _mode(cfg, qs: QualitySet) -> str:
    """'ada', or 'auto (ada)': what the augment mode is on this set."""
    resolved = cfg.with_augment(len(qs.images)).augment
    return cfg.augment if resolved == cfg.augment else f"{cfg.augment} ({resolved})"


def _summary(qs: QualitySet, rows: list, steps: int, seeds, reals: Reals, floor: float, cfg, log,
             label: str) -> dict:
    """One mode's figures over the seeds, and its summary line."""
    fd_mean, fd_std = _mean_std([r["fd_ratio"] for r in rows])
    kids = [r["kid_ratio"] for r in rows]
    kid_mean, kid_std = _mean_std(kids) if None not in kids else (None, None)
    kid_note = (f"KID ratio {kid_mean:.2f} +- {kid_std:.2f}" if kid_mean is not None
                else "KID ratio n/a: a reference KID is <= 0, at its noise floor")
    # The live generator of the same runs against the same references: EMA must not lose to it.
    live = [r["ours_live"]["fd"] / r["reference"]["fd"] for r in rows if "ours_live" in r]
    live_mean = _mean_std(live)[0] if live else None
    live_note = f"; live generator {live_mean:.2f}" if live else ""
    small, copy = "", {}
    if reals.held_nn:
        copy = {k: _mean_std([r["ours"][k] for r in rows]) for k in ("copy_ratio", "diversity")}
        small = (f"; copy ratio {copy['copy_ratio'][0]:.2f} +- {copy['copy_ratio'][1]:.2f}, diversity "
                 f"{copy['diversity'][0]:.2f} +- {copy['diversity'][1]:.2f}")
    log(f"quality {qs.name}{label} FD ratio ours/reference: {fd_mean:.2f} +- {fd_std:.2f} over {len(rows)} seeds "
        f"({kid_note}{live_note}{small}; {steps} steps, batch {cfg.batch_size}, "
        f"lr G {cfg.lr_g:g} D {cfg.lr_d:g}, precision {cfg.precision}, ema {cfg.ema}, augment {_mode(cfg, qs)})")
    out = {"set": qs.name, "images": len(qs.images), "steps": steps, "seeds": list(seeds), "samples": SAMPLES,
           "classifier_accuracy": reals.accuracy, "fd_real_floor": floor, "per_seed": rows,
           "fd_ratio_mean": fd_mean, "fd_ratio_std": fd_std, "kid_ratio_mean": kid_mean, "kid_ratio_std": kid_std,
           "live_fd_ratio_mean": live_mean,
           "config": {k: getattr(cfg, k) for k in ("precision", "ema", "batch_size", "lr_g", "lr_d", "beta1",
                                                   "augment")}}
    for k, (mean, std) in copy.items():
        out.update({f"{k}_mean": mean, f"{k}_std": std})
    return out
