"""The triplet and ArcFace losses against brute-force NumPy loops over every triplet."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dcgan_cli.identity import losses


def unit(rng, n, d):
    x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_distances(e):
    return np.array([[np.linalg.norm(a - b) for b in e] for a in e])


def brute_semi_hard(labels, e, margin):
    d = brute_distances(e.astype(np.float64))
    n = len(labels)
    terms = []
    for a in range(n):
        negs = [j for j in range(n) if labels[j] != labels[a]]
        if not negs:
            continue
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            farther = [d[a, j] for j in negs if d[a, j] > d[a, p]]
            dn = min(farther) if farther else max(d[a, j] for j in negs)
            terms.append(max(d[a, p] - dn + margin, 0.0))
    return np.mean(terms)


def brute_batch_hard(labels, e, margin):
    d = brute_distances(e.astype(np.float64))
    n = len(labels)
    terms = []
    for a in range(n):
        pos = [d[a, p] for p in range(n) if p != a and labels[p] == labels[a]]
        neg = [d[a, j] for j in range(n) if labels[j] != labels[a]]
        if pos and neg:
            terms.append(max(max(pos) - min(neg) + margin, 0.0))
    return np.mean(terms)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_triplet_losses_match_brute_force(seed, margin):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), 3)  # P=4 x K=3
    rng.shuffle(labels)
    e = unit(rng, len(labels), 8)
    got_semi = float(losses.semi_hard_triplet_loss(labels, e, margin))
    got_hard = float(losses.batch_hard_triplet_loss(labels, e, margin))
    assert got_semi == pytest.approx(brute_semi_hard(labels, e, margin), abs=1e-5)
    assert got_hard == pytest.approx(brute_batch_hard(labels, e, margin), abs=1e-5)
    assert got_hard >= got_semi - 1e-6  # the hardest triplets cost at least as much as semi-hard ones


def test_semi_hard_uses_the_farthest_negative_when_none_is_farther_than_the_positive():
    # Two identities on a line: every negative is closer to the anchor than its positive.
    e = np.array([[1, 0], [-1, 0], [0.9, 0.436], [-0.9, 0.436]], np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    labels = np.array([0, 0, 1, 1])
    assert float(losses.semi_hard_triplet_loss(labels, e, 0.2)) == pytest.approx(brute_semi_hard(labels, e, 0.2),
                                                                                 abs=1e-5)


def test_distances_have_finite_gradients_at_zero():
    import tensorflow as tf

    e = tf.Variable(unit(np.random.default_rng(0), 3, 4)[[0, 0, 1]])  # two identical rows
    with tf.GradientTape() as tape:
        loss = losses.batch_hard_triplet_loss(np.array([0, 0, 1]), e, 0.2)
    g = tape.gradient(loss, e)
    assert np.isfinite(g.numpy()).all()


def test_arcface_matches_the_formula():
    rng = np.random.default_rng(3)
    e, w = unit(rng, 6, 8), rng.standard_normal((5, 8)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 4, 0])
    m, s = 0.5, 30.0
    wn = w / np.linalg.norm(w, axis=1, keepdims=True)
    cos = e.astype(np.float64) @ wn.T
    expected = []
    for i, y in enumerate(labels):
        logits = s * cos[i].copy()
        theta = math.acos(cos[i, y])
        logits[y] = s * (math.cos(theta + m) if theta + m < math.pi else cos[i, y] - math.sin(math.pi - m) * m)
        logits -= logits.max()
        expected.append(-(logits[y] - math.log(np.exp(logits).sum())))
    assert float(losses.arcface_loss(labels, e, w, m, s)) == pytest.approx(np.mean(expected), rel=1e-4)
    # m = 0 is the plain normalised softmax.
    logits = losses.arcface_logits(e, labels, w, 0.0, s).numpy()
    np.testing.assert_allclose(logits, s * cos, atol=1e-4)
