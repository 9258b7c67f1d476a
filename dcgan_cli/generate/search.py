"""The latent search behind project, inpaint, restore and anonymize: find z with G(z) fitting what is known.

Adam on z, the generator and discriminator in inference mode, from several
random starts per photo, batched over photos x starts in one fixed batch shape
(as `sampling.Sampler`: a row's result does not depend on its neighbours).

z stays where the generator was trained (PULSE, Menon et al. 2020): Gaussian
latents of size d live near the sphere of radius sqrt(d), and a free descent
drifts off it (a z twice as long draws blotchy, high-contrast faces the
generator never learned to make). So every start is put on that sphere and z
is projected back onto it after each Adam step (`Search.sphere`).

The restart kept is chosen by realism as well as fit: of the starts whose fit
(the loss without its realism term) is within `Search.fit_slack` of the
photo's best, the one the discriminator rates most real. A start that fits a
few known pixels slightly better with a face D finds implausible loses to a
start that fits almost as well with a face D believes.

The losses (`kind`):
- project: pixel MSE + w * MSE of D's last hidden features (feature matching);
- inpaint (Yeh et al. 2017): the context loss ||W * (G(z) - y)||_1 + lambda * log(1 - D(G(z)));
- restore (PULSE): MSE(degrade(G(z)), y) + lambda * log(1 - D(G(z))), `degrade`
  a TensorFlow function of the degradation the input went through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from dcgan_cli.errors import UsageError

WINDOW = 7  # Yeh et al.'s window for the context weights
PRIOR_WEIGHT = 0.003  # their lambda
FEATURE_WEIGHT = 1.0
RESTORE_PRIOR_WEIGHT = 0.003
DEFAULT_STEPS = 300
DEFAULT_RESTARTS = 4
DEFAULT_LR = 0.05
DEFAULT_BATCH = 64  # rows (photos x starts) per compiled step
FIT_SLACK = 0.1  # restarts within 10% of the best fit compete on realism
ADAM = (0.9, 0.999, 1e-8)
KINDS = ("project", "inpaint", "restore")
TERMS = {"project": ("total", "pixel", "feature"), "inpaint": ("total", "context", "prior"),
         "restore": ("total", "consistency", "prior")}


@dataclass(frozen=True)
class Search:
    """How z is searched for (the same for every command that searches)."""

    steps: int = DEFAULT_STEPS
    restarts: int = DEFAULT_RESTARTS
    lr: float = DEFAULT_LR
    seed: int = 0
    batch_size: int = DEFAULT_BATCH
    feature_weight: float = FEATURE_WEIGHT  # project
    prior_weight: float = PRIOR_WEIGHT  # inpaint, restore
    window: int = WINDOW  # inpaint
    sphere: bool = True  # keep z on the sphere of radius sqrt(latent size)
    fit_slack: float = FIT_SLACK  # 0: keep the best fit, ignoring realism

    def check(self) -> None:
        for option, value, least in (("--steps", self.steps, 1), ("--restarts", self.restarts, 1),
                                     ("--batch-size", self.batch_size, 1), ("--seed", self.seed, 0),
                                     ("--window", self.window, 1)):
            if value < least:
                raise UsageError(f"{value} is less than the minimum of {least}", option)
        if self.window % 2 == 0:
            raise UsageError(f"{self.window} is even: the window is centred on a pixel; use an odd --window "
                             f"such as {self.window + 1}", "--window")
        for option, value in (("--lr", self.lr), ("--feature-weight", self.feature_weight),
                              ("--prior-weight", self.prior_weight)):
            if not np.isfinite(value) or value < 0 or (option == "--lr" and value == 0):
                raise UsageError(f"{value} is not a positive finite number", option)


def to_sphere(z, nz: int):
    """z (rows, nz) scaled onto the sphere of radius sqrt(nz) (numpy or a tensor)."""
    if isinstance(z, np.ndarray):
        norm = np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        return (z * np.sqrt(nz) / norm).astype(z.dtype)
    import tensorflow as tf

    return z * (float(np.sqrt(nz)) / tf.maximum(tf.norm(z, axis=1, keepdims=True), 1e-12))


def _terms_fn(models, search: Search, kind: str, rows: int, degrade: Callable | None):
    """(z, target, weight, feat_target) -> (total, fit, other term, D's logit), each (rows,)."""
    import tensorflow as tf

    g, feats = models.generator, models.features

    def terms(z, target, weight, feat_target):
        x = g(z, training=False)
        f, logit = feats(x, training=False)
        logit = logit[:, 0]
        if kind == "project":
            pixel = tf.reduce_mean(tf.square(x - target), axis=[1, 2, 3])
            feature = tf.reduce_mean(tf.square(tf.reshape(f, [rows, -1]) - feat_target), axis=1)
            return pixel + search.feature_weight * feature, pixel, feature, logit
        prior = -tf.nn.softplus(logit)  # log(1 - D(G(z))), D = sigmoid(logit)
        if kind == "inpaint":
            fit = tf.reduce_sum(weight * tf.abs(x - target), axis=[1, 2, 3])
        else:
            fit = tf.reduce_mean(tf.square(degrade(x) - target), axis=[1, 2, 3])
        return fit + search.prior_weight * prior, fit, prior, logit

    return terms


def _compiled_step(models, search: Search, kind: str, rows: int, target_shape: tuple, degrade: Callable | None):
    """One Adam step on z for `rows` rows, its loss terms, and D's features of the targets (project)."""
    import tensorflow as tf

    g, feats = models.generator, models.features
    nz = int(g.input_shape[-1])
    b1, b2, eps = ADAM
    zs = tf.TensorSpec([rows, nz], tf.float32)
    img = tf.TensorSpec([rows, *models.shape], tf.float32)
    tgt = tf.TensorSpec([rows, *target_shape], tf.float32)
    fdim = int(np.prod(feats.output_shape[0][1:]))
    fspec = tf.TensorSpec([rows, fdim], tf.float32)
    terms = _terms_fn(models, search, kind, rows, degrade)

    @tf.function(autograph=False, input_signature=[zs, zs, zs, tf.TensorSpec([], tf.float32), tgt, img, fspec])
    def step(z, m, v, t, target, weight, feat_target):
        with tf.GradientTape() as tape:
            tape.watch(z)
            total = tf.reduce_sum(terms(z, target, weight, feat_target)[0])
        grad = tape.gradient(total, z)
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * tf.square(grad)
        z = z - search.lr * (m / (1 - b1 ** t)) / (tf.sqrt(v / (1 - b2 ** t)) + eps)
        return (to_sphere(z, nz) if search.sphere else z), m, v

    @tf.function(autograph=False, input_signature=[zs, tgt, img, fspec])
    def losses(z, target, weight, feat_target):
        return terms(z, target, weight, feat_target)

    @tf.function(autograph=False, input_signature=[img])
    def features_of(x):
        return tf.reshape(feats(x, training=False)[0], [rows, -1])

    return step, losses, features_of, fdim


def starts(n: int, nz: int, search: Search) -> np.ndarray:
    """float32 (n * restarts, nz): row i*r + j is photo i's start j, from its own generator (seed, i)."""
    z = np.concatenate([np.random.default_rng([search.seed, i]).standard_normal((search.restarts, nz))
                        for i in range(n)]).astype(np.float32)
    return to_sphere(z, nz) if search.sphere else z


def pick(fit: np.ndarray, logit: np.ndarray, slack: float) -> int:
    """The start kept: of those with fit <= (1 + slack) * the best fit, the one D rates most real."""
    close = np.flatnonzero(fit <= fit.min() * (1 + slack) + 1e-12)
    return int(close[np.argmax(logit[close])])


def search_latents(models, targets: np.ndarray, weights: np.ndarray, kind: str, search: Search,
                   on_step: Callable[[int], None] | None = None, degrade: Callable | None = None,
                   first: np.ndarray | None = None, prefer: Callable | None = None) -> tuple[np.ndarray, dict]:
    """The kept z of `search.restarts` starts per photo: (float32 (N, nz), {term: float (N,)}).

    targets: float32 (N, ...) in [-1, 1], the run's image shape, or the degraded
    shape for restore; weights: float32 (N, H, W, C), the context weights
    (inpaint; the others ignore them). `degrade`: restore's TensorFlow function
    from G's images to the targets' shape. `first`: (N * restarts, nz) starts
    instead of `starts(...)`. `prefer(z (N * restarts, nz)) -> (N * restarts,)`:
    what decides among the close fits instead of D's logit (anonymize: the
    face least like the one it replaces). Rows (photo, start) go through one
    compiled step of `search.batch_size` rows, the last batch padded. The terms
    include "realism", D's logit of the kept G(z).
    """
    nz = int(models.generator.input_shape[-1])
    n, r, rows = len(targets), search.restarts, search.batch_size
    z0 = starts(n, nz, search) if first is None else np.asarray(first, np.float32)
    photo = np.repeat(np.arange(n), r)
    step, losses, features_of, fdim = _compiled_step(models, search, kind, rows, targets.shape[1:], degrade)
    final = np.zeros((n * r, 4), np.float32)
    found = np.zeros_like(z0)
    for lo in range(0, n * r, rows):
        idx = np.arange(lo, min(lo + rows, n * r))
        pad = lambda a: np.concatenate([a, np.zeros((rows - len(idx), *a.shape[1:]), a.dtype)])  # noqa: E731
        z, target, weight = pad(z0[idx]), pad(targets[photo[idx]]), pad(weights[photo[idx]])
        if len(idx) < rows and search.sphere:
            z[len(idx):] = 1.0  # padding rows stay finite on the sphere
        feat = features_of(target).numpy() if kind == "project" else np.zeros((rows, fdim), np.float32)
        m = v = np.zeros_like(z)
        for t in range(1, search.steps + 1):
            z, m, v = step(z, m, v, np.float32(t), target, weight, feat)
            if on_step:
                on_step(1)
        found[idx] = z.numpy()[:len(idx)]
        final[idx] = np.stack([a.numpy() for a in losses(z, target, weight, feat)], 1)[:len(idx)]
    fit = final[:, 0] if kind == "project" else final[:, 1]
    score = final[:, 3] if prefer is None else np.asarray(prefer(found), np.float64)
    best = np.array([i * r + pick(fit[i * r:(i + 1) * r], score[i * r:(i + 1) * r], search.fit_slack)
                     for i in range(n)], np.int64)
    names = (*TERMS[kind], "realism")
    return found[best], {k: final[best, j] for j, k in enumerate(names)}


def search_steps(n: int, search: Search) -> int:
    """Compiled steps `search_latents` takes for n photos (the progress bar's total)."""
    return -(-n * search.restarts // search.batch_size) * search.steps


def generate(models, z: np.ndarray) -> np.ndarray:
    """float32 (N, H, W, C) in [-1, 1]: G(z) in inference mode, through one batch shape."""
    from dcgan_cli.generate.sampling import DEFAULT_BATCH as SAMPLE_BATCH

    nz = int(models.generator.input_shape[-1])
    out = []
    for i in range(0, len(z), SAMPLE_BATCH):
        chunk = np.zeros((SAMPLE_BATCH, nz), np.float32)
        chunk[:len(z[i:i + SAMPLE_BATCH])] = z[i:i + SAMPLE_BATCH]
        out.append(np.asarray(models.generator(chunk, training=False))[:len(z[i:i + SAMPLE_BATCH])])
    return np.concatenate(out)
