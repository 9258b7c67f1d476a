"""Conditional digits: does `sample --class k` draw a k, and what does conditioning cost?

sklearn's 1,797 digits as class folders (0/ .. 9/) -> `preprocess --labels folders` (32x32 grey), then, per
seed, the quality bench's digits budget (bench/quality.py: the dcgan preset, DEFAULT_STEPS steps) trained
twice: unconditional, and with --condition classes. The quality bench's digits classifier
(train_classifier / prepare_reals, seed 0) scores:
  - per class k: the share of SAMPLES / 10 `--class k` samples it calls k (the bench's scoring latents);
  - the pooled conditional samples' FD on its features, against the unconditional run's SAMPLES.
Then the step time: both models' train steps (batch 128, fp32 as the bench trains) timed in this process,
interleaved, ROUNDS x STEPS each; the ratio of the medians.

    PYTHONPATH=. python scripts/conditional_digits.py WORKDIR [SEED ...]    (default seeds: 0 1)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROUNDS, STEPS = int(os.environ.get("ROUNDS", 7)), 10
BUDGET = os.environ.get("BUDGET")  # steps per training run, for a quick check of this script (default: the bench's)


def class_folders(workdir: Path) -> Path:
    from PIL import Image
    from sklearn.datasets import load_digits

    from dcgan_cli.data.preprocess import PreprocessConfig, preprocess

    digits = load_digits()
    raw = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    src = workdir / "digits-classes"
    for i, (img, k) in enumerate(zip(raw, digits.target)):
        (src / str(k)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, "L").save(src / str(k) / f"{i:04d}.png")
    out = workdir / "digits-classes-32"
    preprocess(PreprocessConfig(source=str(src), out=str(out), size=32, crop="none", channels=1, workers=1,
                                labels="folders"), log=lambda m: None)
    return out


def quality_set(data: Path):
    from dcgan_cli.bench.quality import QualitySet
    from dcgan_cli.data.pipeline import labelled_batches

    batches = list(labelled_batches(data, 512, labels=("identity",)))
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1]["identity"] for b in batches]).astype(np.int64)  # folder k is class index k
    return QualitySet("digits", data, images, labels)


def conditional_samples(generator, n: int, k: int) -> np.ndarray:
    from dcgan_cli.bench.quality import _Z_SEED
    from dcgan_cli.pixels import to_uint8

    z = np.random.default_rng(_Z_SEED).standard_normal((n, generator.inputs[0].shape[-1])).astype(np.float32)
    y = np.zeros((n, 10), np.float32)
    y[:, k] = 1
    return to_uint8(np.asarray(generator([z, y], training=False)))


def measure_seed(qs, reals, seed: int, runs: Path) -> dict:
    from dcgan_cli.bench.quality import DEFAULT_STEPS, SAMPLES, our_config, sample, score, train_ours

    cfg = our_config(qs, seed, int(BUDGET or DEFAULT_STEPS), runs, precision="fp32", strategy="default")
    t = time.time()
    g_uncond, _ = train_ours(cfg, runs / f"uncond-{seed}")
    t_u = time.time() - t
    t = time.time()
    g_cond, _ = train_ours(cfg.replace(condition="classes"), runs / f"cond-{seed}")
    t_c = time.time() - t
    uncond = score(sample(g_uncond, SAMPLES), reals)
    per_class, pooled = [], []
    for k in range(10):
        images = conditional_samples(g_cond, SAMPLES // 10, k)
        per_class.append(float(np.mean(reals.features(images)[1] == k)))
        pooled.append(images)
    cond = score(np.concatenate(pooled), reals)
    uncond_called = reals.features(sample(g_uncond, SAMPLES))[1]
    return {"seed": seed, "per_class": per_class, "mean": float(np.mean(per_class)), "fd_cond": cond["fd"],
            "fd_uncond": uncond["fd"], "coverage_cond": cond["coverage"], "coverage_uncond": uncond["coverage"],
            "uncond_class_shares": np.bincount(uncond_called, minlength=10).tolist(),
            "train_seconds": {"uncond": round(t_u, 1), "cond": round(t_c, 1)}}


def step_ratio(data: Path, qs) -> dict:
    import tensorflow as tf

    from dcgan_cli.bench.quality import our_config
    from dcgan_cli.data import conditions
    from dcgan_cli.data.pipeline import make_dataset
    from dcgan_cli.data.shards import load_manifest
    from dcgan_cli.gan.step import build_gan, make_train_step

    cfg = our_config(qs, 0, 300, Path("/tmp"), precision="fp32", strategy="default").with_augment(1797)
    manifest = load_manifest(data)
    table = conditions.read_table(data, manifest, conditions.resolve("classes", manifest, data))
    strategy = tf.distribute.get_strategy()
    steps, batches = {}, {}
    for name, labels in (("uncond", None), ("cond", table)):
        gan = build_gan(cfg, "fp32", labels)
        steps[name] = make_train_step(cfg, gan, strategy, "fp32")
        ds = make_dataset(data, cfg.batch_size, labels=("identity",) if labels else ())
        b = next(iter(ds))
        batches[name] = (b[0], b[1]["identity"]) if labels else b
        for _ in range(3):  # trace and warm up
            steps[name](batches[name])
    times = {"uncond": [], "cond": []}
    for _ in range(ROUNDS):
        for name in ("uncond", "cond"):
            t = time.perf_counter()
            for _ in range(STEPS):
                out = steps[name](batches[name])
            float(out["d_loss"])
            times[name].append((time.perf_counter() - t) / STEPS)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"median_step_ms": {k: round(v * 1000, 2) for k, v in med.items()},
            "ratio_cond_over_uncond": round(med["cond"] / med["uncond"], 3), "rounds": ROUNDS, "steps": STEPS}


def main(workdir: str, *seeds: str) -> None:
    from dcgan_cli.bench.quality import prepare_reals

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    data = class_folders(work)
    qs = quality_set(data)
    print(json.dumps({"step": step_ratio(data, qs)}), flush=True)
    reals = prepare_reals(qs, 0)
    print(json.dumps({"classifier_accuracy": reals.accuracy}), flush=True)
    for seed in [int(s) for s in seeds] or [0, 1]:
        print(json.dumps(measure_seed(qs, reals, seed, work / "runs")), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
