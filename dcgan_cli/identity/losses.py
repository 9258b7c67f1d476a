"""Metric-learning losses, written here (tensorflow-addons, which had the triplet one, is end-of-life).

All take L2-normalised embeddings (B, D) and integer identity labels (B,).
Distances are Euclidean on the unit sphere: d = |a - b| in [0, 2].

- Triplet loss (Schroff et al., FaceNet 2015): max(d(a, p) - d(a, n) + margin, 0),
  with the triplets mined online inside a P identities x K images batch:
  * semi-hard: every anchor-positive pair takes the closest negative that is
    still farther than the positive (d(a, n) > d(a, p)); when there is none, the
    farthest negative. Averaged over the positive pairs. (As FaceNet, and as
    tfa.losses.TripletSemiHardLoss did, on distances rather than squared ones.)
  * batch-hard (Hermans, Beyer & Leibe, "In Defense of the Triplet Loss", 2017):
    every anchor takes its farthest positive and its closest negative.
- ArcFace (Deng et al. 2019): softmax over identities on s * cos(theta), with the
  true class's angle widened to theta + m. The class centres W are trained with the
  network and thrown away after: only the embedding is kept.

Tests check each against a brute-force NumPy loop over all triplets.
"""

from __future__ import annotations


def pairwise_distances(emb):
    """(B, D) -> (B, B) Euclidean distances, with a gradient that stays finite at 0."""
    import tensorflow as tf

    sq = tf.reduce_sum(tf.square(emb), axis=1)
    d2 = tf.maximum(sq[:, None] + sq[None, :] - 2.0 * tf.matmul(emb, emb, transpose_b=True), 0.0)
    zero = tf.cast(d2 <= 1e-16, emb.dtype)
    return tf.sqrt(d2 + zero * 1e-16) * (1.0 - zero)


def _masks(labels):
    import tensorflow as tf

    labels = tf.reshape(labels, [-1])
    same = tf.equal(labels[:, None], labels[None, :])
    eye = tf.eye(tf.shape(labels)[0], dtype=tf.bool)
    return tf.logical_and(same, tf.logical_not(eye)), tf.logical_not(same)


def batch_hard_triplet_loss(labels, emb, margin: float = 0.2):
    """Mean over anchors (with a positive and a negative) of max(hardest pos - hardest neg + margin, 0)."""
    import tensorflow as tf

    d = pairwise_distances(emb)
    pos, neg = _masks(labels)
    big = tf.reduce_max(d) + 1.0
    hardest_pos = tf.reduce_max(tf.where(pos, d, 0.0), axis=1)
    hardest_neg = tf.reduce_min(tf.where(neg, d, big), axis=1)
    valid = tf.cast(tf.logical_and(tf.reduce_any(pos, 1), tf.reduce_any(neg, 1)), d.dtype)
    per_anchor = tf.nn.relu(hardest_pos - hardest_neg + margin) * valid
    return tf.reduce_sum(per_anchor) / tf.maximum(tf.reduce_sum(valid), 1.0)


def semi_hard_triplet_loss(labels, emb, margin: float = 0.2):
    """Mean over anchor-positive pairs of max(d(a,p) - d(a,n*) + margin, 0), n* semi-hard (see above)."""
    import tensorflow as tf

    d = pairwise_distances(emb)
    pos, neg = _masks(labels)
    d_ap = d[:, :, None]  # (a, p, 1)
    d_an = d[:, None, :]  # (a, 1, n)
    negative = neg[:, None, :]
    outside = tf.logical_and(negative, d_an > d_ap)  # (a, p, n): negatives farther than this positive
    inf = tf.constant(float("inf"), d.dtype)
    semi = tf.reduce_min(tf.where(outside, d_an, inf), axis=2)
    farthest = tf.reduce_max(tf.where(neg, d, -inf), axis=1)[:, None]  # (a, 1)
    chosen = tf.where(tf.reduce_any(outside, axis=2), semi, farthest)
    valid = tf.logical_and(pos, tf.reduce_any(neg, axis=1)[:, None])
    per_pair = tf.where(valid, tf.nn.relu(d - chosen + margin), 0.0)
    return tf.reduce_sum(per_pair) / tf.maximum(tf.reduce_sum(tf.cast(valid, d.dtype)), 1.0)


def arcface_logits(emb, labels, centres, margin: float = 0.5, scale: float = 30.0):
    """s * cos(theta_j), with the true class j = label at s * cos(theta + m) (insightface's form).

    When theta + m would pass pi the logit would rise again; there the
    additive cosine penalty cos(theta) - m sin(m) is used instead, as insightface does.
    """
    import math

    import tensorflow as tf

    w = tf.math.l2_normalize(centres, axis=1)
    cos = tf.clip_by_value(tf.matmul(emb, w, transpose_b=True), -1.0 + 1e-7, 1.0 - 1e-7)
    sin = tf.sqrt(1.0 - tf.square(cos))
    with_margin = cos * math.cos(margin) - sin * math.sin(margin)
    with_margin = tf.where(cos > math.cos(math.pi - margin), with_margin, cos - math.sin(math.pi - margin) * margin)
    onehot = tf.one_hot(tf.reshape(labels, [-1]), tf.shape(w)[0]) > 0.5
    return scale * tf.where(onehot, with_margin, cos)


def arcface_loss(labels, emb, centres, margin: float = 0.5, scale: float = 30.0):
    import tensorflow as tf

    logits = arcface_logits(emb, labels, centres, margin, scale)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.reshape(labels, [-1]),
                                                                         logits=logits))
