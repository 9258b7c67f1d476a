"""FID and KID numerics on feature vectors: streaming, bounded memory, stable.

No TensorFlow here. Features arrive in batches (`FeatureStats.update`); only
the running mean, the running scatter matrix (d x d, float64) and a fixed-size
uniform subsample of the feature vectors for KID are kept, so 50,000 or
500,000 images cost the same memory: about 8*d^2 + 4*d*KID_POOL bytes
(32 MB + 80 MB for InceptionV3's d = 2048).
"""

from __future__ import annotations

import numpy as np

# KID draws its subsets from at most this many feature vectors per set.
KID_POOL = 10_000
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1_000


class FeatureStats:
    """Mean and covariance of a stream of feature vectors, plus a KID pool.

    `total` is the number of vectors the stream will deliver; the KID pool
    keeps a uniform random subset of `min(total, pool)` of them, chosen by
    `seed` up front (so the same stream always keeps the same rows).
    Rows are gathered into chunks of `chunk` and each chunk is merged with
    Chan et al.'s pairwise update, which stays accurate where the textbook
    sum-of-squares formula cancels; chunks (not the caller's small batches)
    keep the d x d work per merge rare.
    """

    def __init__(self, dim: int, total: int, pool: int = KID_POOL, seed: int = 0, chunk: int = 1024):
        self.dim, self.total, self.chunk = dim, total, chunk
        self.n = 0  # rows received
        self._merged = 0  # rows merged into _mean / _scatter
        self._mean = np.zeros(dim, np.float64)
        self._scatter = np.zeros((dim, dim), np.float64)  # sum of (x - mean)(x - mean)^T
        self._buf: list[np.ndarray] = []
        keep = min(total, pool)
        self._keep_idx = np.sort(np.random.default_rng(seed).choice(total, keep, replace=False))
        self.pool = np.empty((keep, dim), np.float32)
        self._kept = 0

    def update(self, feats: np.ndarray) -> None:
        feats = np.asarray(feats)
        b = len(feats)
        if b == 0:
            return
        if feats.shape[1] != self.dim:
            raise ValueError(f"features have {feats.shape[1]} dims, expected {self.dim}")
        if self.n + b > self.total:
            raise ValueError(f"more than the announced {self.total} feature vectors")
        # KID pool: the rows of this batch whose global index was drawn.
        lo = np.searchsorted(self._keep_idx, self.n)
        hi = np.searchsorted(self._keep_idx, self.n + b)
        rows = self._keep_idx[lo:hi] - self.n
        self.pool[self._kept:self._kept + len(rows)] = feats[rows]
        self._kept += len(rows)
        self._buf.append(feats.astype(np.float64))
        self.n += b
        if self.n - self._merged >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        """Merge the buffered rows' own mean and scatter into the running ones."""
        if not self._buf:
            return
        x = np.concatenate(self._buf)
        self._buf = []
        b, n0 = len(x), self._merged
        b_mean = x.mean(axis=0)
        centred = x - b_mean
        delta = b_mean - self._mean
        n = n0 + b
        self._scatter += centred.T @ centred + np.outer(delta, delta) * (n0 * b / n)
        self._mean += delta * (b / n)
        self._merged = n

    @property
    def mean(self) -> np.ndarray:
        self._flush()
        return self._mean

    @property
    def cov(self) -> np.ndarray:
        if self.n < 2:
            raise ValueError("a covariance needs at least two feature vectors")
        self._flush()
        return self._scatter / (self.n - 1)

    @property
    def kid_features(self) -> np.ndarray:
        return self.pool[:self._kept]


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)) for covariances S1, S2.

    The trace of the matrix square root is taken through symmetric matrices
    only: for any A with S1 = A A^T, S1 S2 is similar to A^T S2 A, which is
    symmetric positive semi-definite, so tr((S1 S2)^(1/2)) is the sum of the
    square roots of its eigenvalues. A is S1's Cholesky factor (cheap), or its
    symmetric square root when S1 is singular. `eigvalsh` of a symmetric matrix
    returns real eigenvalues by construction, so the "imaginary component"
    that a general `sqrtm(S1 @ S2)` produces on singular or ill-conditioned
    covariances cannot arise, and nothing is silently dropped; eigenvalues
    that round-off pushes below zero (>= 0 in exact arithmetic) become zero.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes do not match: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}")
    s1 = (s1 + s1.T) / 2
    try:
        a = np.linalg.cholesky(s1)
    except np.linalg.LinAlgError:  # singular: fall back to the symmetric square root
        w, v = np.linalg.eigh(s1)
        a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = a.T @ s2 @ a
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = np.sqrt(np.clip(ev, 0, None)).sum()
    diff = mu1 - mu2
    fid = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean
    # Identical inputs give 0 up to round-off, which may be a hair below it.
    return float(max(fid, 0.0))


def kernel_inception_distance(
    real: np.ndarray,
    fake: np.ndarray,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float, int]:
    """(mean, std, subset size) of the unbiased MMD^2 over random subsets.

    Kernel k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018). Each subset
    draws m = min(subset_size, len(real), len(fake)) vectors from each set
    without replacement; the estimate per subset is
        sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1))
        - 2 sum_{i,j} k(x_i, y_j) / m^2,
    which has expectation 0 when both sets come from one distribution (so it
    can come out slightly negative).
    """
    real, fake = np.asarray(real, np.float32), np.asarray(fake, np.float32)
    d = real.shape[1]
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError("KID needs at least two feature vectors per set")
    rng = np.random.default_rng(seed)

    def kernel_sum(a, b, off_diagonal=False):
        # The matmuls are the cost; float32 elementwise, float64 sums.
        k = a @ b.T
        k /= np.float32(d)
        k += 1.0
        k = k * k * k
        total = np.sum(k, dtype=np.float64)
        return total - np.trace(k, dtype=np.float64) if off_diagonal else total

    values = np.empty(subsets)
    for s in range(subsets):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        within = (kernel_sum(x, x, True) + kernel_sum(y, y, True)) / (m * (m - 1))
        values[s] = within - 2.0 * kernel_sum(x, y) / (m * m)
    return float(values.mean()), float(values.std()), m
