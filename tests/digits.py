"""scikit-learn's handwritten digits as a folder data set with real classes: DIR/<digit>/NNNN.png.

1,797 8x8 images of 10 classes (about 180 each), shipped with scikit-learn:
the offline stand-in for face identities (train on seven digits, verify one-shot
on the three never seen).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_digits(folder: Path, per_class: int | None = None) -> Path:
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


def preprocess_digits(root: Path, per_class: int | None = None, size: int = 16) -> Path:
    from dcgan_cli.preprocess import PreprocessConfig, preprocess

    src = write_digits(root / "digits", per_class)
    out = root / f"digits-{size}"
    preprocess(PreprocessConfig(source=str(src), out=str(out), size=size, crop="none", channels=1, workers=1,
                                labels="folders"))
    return out
