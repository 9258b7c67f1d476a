"""Precision/recall/density/coverage and the Inception Score against brute-force NumPy on small sets."""

from __future__ import annotations

import numpy as np
import pytest

from dcgan_cli.metrics.prdc import InceptionScore, knn_radii, prdc


def _brute_force(real, fake, k):
    """The papers' definitions, written the slow obvious way: full distance matrices."""
    dist = lambda a, b: np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))  # noqa: E731
    rr, ff, rf = dist(real, real), dist(fake, fake), dist(real, fake)
    r_rad = np.sort(rr, axis=1)[:, k]  # column 0: the point itself
    f_rad = np.sort(ff, axis=1)[:, k]
    precision = np.mean([any(rf[i, j] < r_rad[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(rf[i, j] < f_rad[j] for j in range(len(fake))) for i in range(len(real))])
    density = sum((rf[:, j] < r_rad).sum() for j in range(len(fake))) / (k * len(fake))
    coverage = np.mean([rf[i].min() < r_rad[i] for i in range(len(real))])
    return r_rad, precision, recall, density, coverage


@pytest.mark.parametrize("chunk", [7, 1024])  # blocks smaller than the sets, and one block
def test_prdc_matches_brute_force(chunk):
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 5))
    fake = rng.normal(0.4, 1.3, size=(45, 5))
    got = prdc(real, fake, ks=(3, 5), chunk=chunk)
    for k in (3, 5):
        r_rad, p, r, d, c = _brute_force(real, fake, k)
        np.testing.assert_allclose(knn_radii(real, (k,), chunk)[k], r_rad, rtol=1e-9)
        assert got[f"precision_k{k}"] == pytest.approx(p)
        assert got[f"recall_k{k}"] == pytest.approx(r)
        assert got[f"density_k{k}"] == pytest.approx(d)
        assert got[f"coverage_k{k}"] == pytest.approx(c)
    # The shifted, wider fake set is neither perfect nor empty: the check can fail.
    assert 0 < got["precision_k3"] < 1 and 0 < got["coverage_k3"] < 1


def test_prdc_of_a_set_with_itself_and_with_a_far_set():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 4))
    same = prdc(x, x, ks=(3,), chunk=16)
    assert same["precision_k3"] == same["recall_k3"] == same["coverage_k3"] == 1.0
    far = prdc(x, x + 100.0, ks=(3,), chunk=16)
    assert far == {"precision_k3": 0.0, "recall_k3": 0.0, "density_k3": 0.0, "coverage_k3": 0.0}


def _inception_score_numpy(p, splits):
    scores = []
    for s in range(splits):
        part = p[s * len(p) // splits:(s + 1) * len(p) // splits]
        py = part.mean(0, keepdims=True)
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(py)), axis=1))))
    return np.mean(scores), np.std(scores)


def test_inception_score_streamed_matches_the_papers_formula():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(103, 12)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    score = InceptionScore(12, len(p), splits=10)
    for lo, hi in [(0, 1), (1, 40), (40, 41), (41, 103)]:  # batches crossing the split boundaries
        score.update(p[lo:hi])
    mean, std = score.result()
    ref_mean, ref_std = _inception_score_numpy(p, 10)
    assert mean == pytest.approx(ref_mean, rel=1e-10) and std == pytest.approx(ref_std, rel=1e-8)
    # One class for every sample: IS 1; a different confident class each: IS up to the class count.
    one = InceptionScore(12, 20, splits=2)
    one.update(np.tile(np.eye(12)[0], (20, 1)))
    assert one.result()[0] == pytest.approx(1.0)
    spread = InceptionScore(12, 24, splits=2)
    spread.update(np.tile(np.eye(12), (2, 1)))
    assert spread.result()[0] == pytest.approx(12.0)
    with pytest.raises(ValueError, match="announced"):
        InceptionScore(12, 24, 2).result()  # nothing arrived yet
