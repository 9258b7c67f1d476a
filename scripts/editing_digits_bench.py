"""Do `dcgan edit --attr k=+a` moves on a digits run make "more of a k"? Measured with the quality bench's judge.

    PYTHONPATH=$PWD python scripts/editing_digits_bench.py [--seeds 0,1] [--workdir /tmp/dirs-digits]

For each training seed: scikit-learn's 1,797 digits as class folders (`preprocess --labels folders`, 32x32
grey), an unconditional run of the `dcgan` preset for the quality bench's budget (300 steps), `dcgan
directions` on it (its own classifier, one-vs-rest per digit), then 1,000 latents (seeds 0-999) edited by
+a along each digit's direction. The judge is NOT the classifier that fitted the directions: it is the
quality bench's digits classifier (bench/quality.train_classifier, softmax over 10 classes, trained on the
same images with its own held-out accuracy). Printed per a: the share of samples the judge calls k before
and after (mean over k, and per k at a = 2), the other classes' shares' mean absolute change, and the
pixels' RMS change (pixels in [0, 1]); and the same for a random unit direction in z as a control.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np

STEPS = (0.5, 1.0, 2.0, 3.0)
EDITED = 1000


def shares(classes: np.ndarray) -> np.ndarray:
    return np.bincount(classes, minlength=10) / len(classes)


def one_seed(work: Path, seed: int, log) -> dict:
    from dcgan_cli.bench import quality
    from dcgan_cli.config import preset
    from dcgan_cli.data.pipeline import labelled_batches
    from dcgan_cli.generate import directions as dirs
    from dcgan_cli.generate.sampling import Sampler, latents, load_generator
    from dcgan_cli.identity.bench import preprocess_digits
    from dcgan_cli.training.loop import train

    data = work / "digits-32"
    if not data.exists():
        preprocess_digits(work, size=32)
    batches = list(labelled_batches(data, 512, ("identity",)))
    images = np.concatenate([b for b, _ in batches])
    labels = np.concatenate([v["identity"] for _, v in batches])
    judge, _, judge_acc = quality.train_classifier(images, labels, seed=seed)
    per_epoch = math.ceil(quality.DEFAULT_STEPS / 5)
    cfg = preset("dcgan", data=str(data), image_size=32, channels=1, seed=seed, runs_dir=str(work / "runs"),
                 steps_per_epoch=per_epoch, epochs=5)
    run = train(cfg, quiet=True, log=lambda m: None)
    log(dirs.fulfil_directions(dirs.DirectionsRequest(run=run, seed=seed), say=log))
    d = dirs.load_directions(run)
    sampler = Sampler(load_generator(run).model)
    z = latents(range(EDITED), sampler.latent_dim)
    base = sampler(z)
    base_cls = np.argmax(judge.predict(base, verbose=0), 1)
    random_dir = np.random.default_rng(seed).standard_normal(sampler.latent_dim).astype(np.float32)
    random_dir /= np.linalg.norm(random_dir)
    out = {"judge_accuracy": judge_acc, "before": shares(base_cls), "rows": {}}
    for a in STEPS:
        for which in ("direction", "random"):
            after_k, others, pixels = [], [], []
            for k in range(10):
                n = d.normal(str(k)) if which == "direction" else random_dir
                img = sampler(z + a * n)
                s = shares(np.argmax(judge.predict(img, verbose=0), 1))
                after_k.append(s[k])
                rest = [j for j in range(10) if j != k]
                others.append(float(np.mean(np.abs(s[rest] - out["before"][rest]))))
                pixels.append(float(np.sqrt(np.mean((img.astype(np.float32) - base) ** 2)) / 255))
            out["rows"][(a, which)] = (np.array(after_k), float(np.mean(others)), float(np.mean(pixels)))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", default="0")
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dirs-digits-"))
    results = [one_seed(work / f"seed{s}", int(s), print) for s in args.seeds.split(",")]
    print("\njudge (bench/quality.train_classifier) held-out accuracy: "
          + ", ".join(f"{r['judge_accuracy']:.3f}" for r in results))
    print(f"{'edit':<19}{'seed':>5}{'share called k':>16}{'before':>8}{'others |d|':>12}{'pixel RMS':>11}")
    for a in STEPS:
        for which in ("direction", "random"):
            for s, r in zip(args.seeds.split(","), results):
                after, others, pixels = r["rows"][(a, which)]
                label = f"k=+{a:g} {which}"
                print(f"{label:<19}{s:>5}{np.mean(after):>16.3f}{np.mean(r['before']):>8.3f}"
                      f"{others:>12.4f}{pixels:>11.4f}")
    for s, r in zip(args.seeds.split(","), results):
        print(f"seed {s}, per digit k, share called k before -> after k=+2: " + "  ".join(
            f"{k}:{r['before'][k]:.2f}->{r['rows'][(2.0, 'direction')][0][k]:.2f}" for k in range(10)))


if __name__ == "__main__":
    main()
