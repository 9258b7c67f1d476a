"""Shared fixtures: real tiny images and real tiny preprocessed data, on disk."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image


def write_faces(folder, n=24, size=(40, 48), seed=0):
    """n small RGB images with a face-like blob, so the data is not pure noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        cx, cy = w / 2 + rng.normal(0, 2), h / 2 + rng.normal(0, 2)
        blob = np.exp(-(((xx - cx) / (w / 4)) ** 2 + ((yy - cy) / (h / 3)) ** 2))
        img = (blob[..., None] * rng.uniform(120, 255, 3) + rng.normal(0, 10, (h, w, 3))).clip(0, 255)
        Image.fromarray(img.astype(np.uint8)).save(folder / f"img-{i:03d}.png")
    return folder


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    return write_faces(tmp_path_factory.mktemp("images") / "faces")


@pytest.fixture(scope="session")
def data16(tmp_path_factory, image_folder):
    """24 images preprocessed to 16x16 RGB shards."""
    from dcgan_cli.preprocess import PreprocessConfig, preprocess

    out = tmp_path_factory.mktemp("processed") / "faces-16"
    preprocess(PreprocessConfig(source=str(image_folder), out=str(out), size=16, crop="center"))
    return out


def tiny_config(data, runs_dir, **kw):
    """A real but tiny training config: 16x16, 8 filters, batch 8."""
    from dcgan_cli.config import TrainConfig

    values = dict(data=str(data), runs_dir=str(runs_dir), image_size=16, channels=3, latent_dim=8, g_filters=8,
                  d_filters=8, batch_size=8, epochs=2, steps_per_epoch=3, num_samples=4, precision="fp32",
                  strategy="default", preset="dcgan", checkpoint_every_epochs=1, sample_every_epochs=1)
    values.update(kw)
    return TrainConfig(**values)
