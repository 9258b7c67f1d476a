"""Precision, recall, density, coverage and the Inception Score on feature vectors (NumPy only).

Precision and recall are Kynkaanniemi et al. 2019 ("Improved precision and
recall metric for assessing generative models"): each set's manifold is the
union of balls around its points, each ball's radius the distance to the
point's k-th nearest neighbour within its own set (the point itself not
counted). Precision: the share of generated points inside the real manifold;
recall: the share of real points inside the generated manifold.

Density and coverage are Naeem et al. 2020 ("Reliable fidelity and diversity
metrics for generative models"), with real balls only:
    density  = 1/(k M) sum_j sum_i [d(fake_j, real_i) < r_i]
    coverage = 1/N sum_i [min_j d(real_i, fake_j) < r_i]
where r_i is real_i's k-NN radius, N real and M generated points. The
comparisons are strict (`<`), as in the authors' `prdc` package.

Distances come in blocks of `chunk` x `chunk` and only each row's k + 1
smallest so far are kept, so the memory besides the feature sets themselves
is O(chunk^2 + chunk k), whatever the number of points. The dot products are
float32 matrix products (the cost: half that of float64), the squared norms
and the sums float64.

The Inception Score (Salimans et al. 2016) is exp(E_x KL(p(y|x) || p(y))),
computed on 10 equal, consecutive splits of the samples, reported as the
mean and standard deviation over the splits, as the paper's code does;
`InceptionScore` streams class probabilities in batches.
"""

from __future__ import annotations

import numpy as np

K_VALUES = (3, 5)
CHUNK = 1024
IS_SPLITS = 10


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x.astype(np.float64), x.astype(np.float64))


def _block_distances(a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows of a and b (float64), through ||a||^2 + ||b||^2 - 2 a.b."""
    d2 = a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T).astype(np.float64)  # a, b float32
    return np.sqrt(np.maximum(d2, 0.0))


def _blocks(n: int, chunk: int):
    for lo in range(0, n, chunk):
        yield lo, min(n, lo + chunk)


def knn_radii(x: np.ndarray, ks=K_VALUES, chunk: int = CHUNK) -> dict[int, np.ndarray]:
    """{k: distance from each row of x to its k-th nearest other row}, in chunks."""
    x = np.asarray(x, np.float32)
    n, kmax = len(x), max(ks)
    if n <= kmax:
        raise ValueError(f"k-NN radii with k = {kmax} need more than {kmax} points, got {n}")
    sq = _sq_norms(x)
    best = np.empty((n, kmax + 1))
    for lo, hi in _blocks(n, chunk):
        keep = np.full((hi - lo, 0), np.inf)
        for clo, chi in _blocks(n, chunk):
            d = _block_distances(x[lo:hi], sq[lo:hi], x[clo:chi], sq[clo:chi])
            if clo < hi and lo < chi:  # the block holds the rows themselves: their distance 0, exactly
                rows = np.arange(max(lo, clo), min(hi, chi))
                d[rows - lo, rows - clo] = 0.0
            both = np.concatenate([keep, d], axis=1)
            take = min(kmax + 1, both.shape[1])
            keep = np.partition(both, take - 1, axis=1)[:, :take]
        best[lo:hi] = np.sort(keep, axis=1)
    # Column 0 is the row itself (distance 0); column k its k-th nearest other row.
    return {k: best[:, k] for k in ks}


def prdc(real: np.ndarray, fake: np.ndarray, ks=K_VALUES, chunk: int = CHUNK) -> dict[str, float]:
    """{"precision_k3": ..., "recall_k3": ..., "density_k3": ..., "coverage_k3": ..., ...} for each k."""
    real, fake = np.asarray(real, np.float32), np.asarray(fake, np.float32)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sets of shapes {real.shape} and {fake.shape} do not match")
    r_radii, f_radii = knn_radii(real, ks, chunk), knn_radii(fake, ks, chunk)
    r_sq, f_sq = _sq_norms(real), _sq_norms(fake)
    n, m = len(real), len(fake)
    fake_in = {k: np.zeros(m, bool) for k in ks}  # precision: fake j inside some real ball
    real_in = {k: np.zeros(n, bool) for k in ks}  # recall: real i inside some fake ball
    inside = {k: np.zeros(m) for k in ks}  # density: real balls holding fake j
    covered = {k: np.zeros(n, bool) for k in ks}  # coverage: real i's ball holds a fake point
    for lo, hi in _blocks(n, chunk):
        for clo, chi in _blocks(m, chunk):
            d = _block_distances(real[lo:hi], r_sq[lo:hi], fake[clo:chi], f_sq[clo:chi])  # (real, fake)
            for k in ks:
                in_real_ball = d < r_radii[k][lo:hi, None]
                fake_in[k][clo:chi] |= in_real_ball.any(axis=0)
                inside[k][clo:chi] += in_real_ball.sum(axis=0)
                covered[k][lo:hi] |= in_real_ball.any(axis=1)
                real_in[k][lo:hi] |= (d < f_radii[k][None, clo:chi]).any(axis=1)
    out = {}
    for k in ks:
        out[f"precision_k{k}"] = float(fake_in[k].mean())
        out[f"recall_k{k}"] = float(real_in[k].mean())
        out[f"density_k{k}"] = float(inside[k].sum() / (k * m))
        out[f"coverage_k{k}"] = float(covered[k].mean())
    return out


class InceptionScore:
    """exp(E KL(p(y|x) || p(y))) over `splits` consecutive equal splits of `total` samples, streamed.

    Split s holds samples [s * total // splits, (s + 1) * total // splits), as in
    the paper's code. Per split only sum_x p(y|x) and sum_x sum_y p log p are kept.
    """

    def __init__(self, classes: int, total: int, splits: int = IS_SPLITS):
        if total < splits:
            raise ValueError(f"the Inception Score over {splits} splits needs at least {splits} samples, got {total}")
        self.total, self.splits, self.n = total, splits, 0
        self._bounds = np.array([s * total // splits for s in range(splits + 1)])
        self._p_sum = np.zeros((splits, classes))
        self._plogp = np.zeros(splits)

    def update(self, probs: np.ndarray) -> None:
        p = np.asarray(probs, np.float64)
        if self.n + len(p) > self.total:
            raise ValueError(f"more than the announced {self.total} samples")
        idx = np.searchsorted(self._bounds, np.arange(self.n, self.n + len(p)), side="right") - 1
        plogp = np.sum(p * np.log(np.maximum(p, 1e-30)), axis=1)
        np.add.at(self._p_sum, idx, p)
        np.add.at(self._plogp, idx, plogp)
        self.n += len(p)

    def result(self) -> tuple[float, float]:
        if self.n != self.total:
            raise ValueError(f"{self.n} of the announced {self.total} samples arrived")
        sizes = np.diff(self._bounds).astype(np.float64)
        py = self._p_sum / sizes[:, None]
        # E_x KL = E_x sum p log p - sum_y p(y) log p(y)
        kl = self._plogp / sizes - np.sum(py * np.log(np.maximum(py, 1e-30)), axis=1)
        scores = np.exp(kl)
        return float(scores.mean()), float(scores.std())
