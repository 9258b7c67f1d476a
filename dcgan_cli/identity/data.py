"""Labelled shards -> arrays; the held-out identities; P identities x K images batches.

The images are held in memory as uint8 (CelebA at 64x64x3: 202,599 x 12 KiB =
2.5 GB), so a P x K batch is a gather, not a shuffle buffer's lucky draw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.errors import DcganError

IDENTITY = "identity"
CLASS = "label"  # preprocess/arrays.py's class label (MNIST, Fashion-MNIST)
# The held-out identities depend on the data alone (not on --seed): every run, and the
# evaluation of any run, holds out the same people for the same --holdout.
HOLDOUT_SEED = 0x1D


def load_identities(data_dir: str | Path, advance: Callable[[int], None] | None = None):
    """(uint8 images (N, S, S, C), identity ids (N,), manifest) of the images that have an identity."""
    from dcgan_cli.data.pipeline import labelled_batches
    from dcgan_cli.data.shards import label_specs, load_manifest

    manifest = load_manifest(data_dir)
    # A class label (MNIST's "label") serves as the identity when there is no person label.
    name = CLASS if CLASS in label_specs(manifest) and IDENTITY not in label_specs(manifest) else IDENTITY
    images, ids = [], []
    for batch, labels in labelled_batches(data_dir, 1024, (name,)):
        keep = labels[name] >= 0
        images.append(batch[keep])
        ids.append(labels[name][keep])
        if advance:
            advance(len(batch))
    if not images or not sum(len(i) for i in ids):
        raise DcganError(f"no image in {data_dir} has an identity; preprocess with --labels celeba or --labels folders")
    return np.concatenate(images), np.concatenate(ids).astype(np.int64), manifest


def split_identities(ids: np.ndarray, holdout: float) -> tuple[np.ndarray, np.ndarray]:
    """(training identities, held-out identities), sorted and disjoint; `holdout` is a share (< 1) or a count."""
    people = np.unique(ids)
    n = int(holdout) if holdout >= 1 else int(round(holdout * len(people)))
    n = max(n, 2)
    if len(people) - n < 2:
        raise DcganError(f"the data has {len(people)} identities: too few to hold out {n} and train on the rest "
                         f"(at least 2 each); use more data or a smaller --holdout")
    order = np.random.default_rng(HOLDOUT_SEED).permutation(people)
    heldout, train = np.sort(order[:n]), np.sort(order[n:])
    check_disjoint(train, heldout)
    return train, heldout


def check_disjoint(train, heldout, what: str = "held-out") -> None:
    """Evaluation is on people the network never saw: refuse anything else."""
    both = np.intersect1d(np.asarray(train), np.asarray(heldout))
    if len(both):
        raise DcganError(f"{len(both)} {what} identities (e.g. {int(both[0])}) were also trained on; the "
                         f"evaluation would be on people the network has seen. Evaluate on the model's own "
                         f"held-out identities")


DIHEDRAL = 8  # the square's symmetries: 0, 1, 2 or 3 quarter turns, each plain or mirrored


def dihedral(images: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(N, S, S, C) images, each under its symmetry t in [0, 8): t % 4 quarter turns, of the mirror image if t >= 4."""
    out = np.empty_like(images)
    for i, (img, k) in enumerate(zip(images, np.asarray(t))):
        out[i] = np.rot90(img[:, ::-1] if k >= 4 else img, int(k) % 4)
    return out


def view_identities(ids: np.ndarray, views: int) -> np.ndarray:
    """Class augmentation's labels: sample i * views + t is image i under symmetry t, of identity
    ids[i] * views + t (a turned or mirrored digit is another class; views 1: the identities as they are)."""
    return (np.asarray(ids)[:, None] * views + np.arange(views)).ravel()


def view_batch(images: np.ndarray, samples: np.ndarray, views: int) -> np.ndarray:
    """The images of `samples` (indices into view_identities' samples), turned and mirrored as they say.
    Drawn per batch: no copy of the whole data set is made."""
    x = images[samples // views]
    return dihedral(x, samples % views) if views > 1 else x


class PKSampler:
    """Batch for step s: P identities (with >= 2 images) x K images each, drawn from (seed, s) alone.

    A resumed run draws the same batches as an uninterrupted one. An identity with
    fewer than K images repeats some (the augmentation makes the copies differ).
    """

    def __init__(self, ids: np.ndarray, p: int, k: int, seed: int):
        order = np.argsort(ids, kind="stable")
        people, starts, counts = np.unique(ids[order], return_index=True, return_counts=True)
        keep = counts >= 2
        if keep.sum() < 2:
            raise DcganError("fewer than 2 training identities have 2 or more images; a positive pair needs two "
                             "images of one person: use more data")
        self.members = [order[s:s + c] for s, c, ok in zip(starts, counts, keep) if ok]
        self.p, self.k, self.seed = min(p, len(self.members)), k, seed

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def batch(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step])
        chosen = rng.choice(len(self.members), self.p, replace=False)
        out = []
        for c in chosen:
            m = self.members[c]
            out.append(rng.choice(m, self.k, replace=len(m) < self.k))
        return np.concatenate(out)
