"""docs/editing-bright.png: a "Bright" direction on real LFW faces, with an attribute measured from the pixels.

    PYTHONPATH=$PWD python scripts/editing_bright_figure.py [--work /tmp/bright] [--seeds 0-7]

CelebA's own attributes are not on this machine, so the attribute is one anyone can check: scikit-image's
100 LFW faces (`dcgan download lfw-sample`) are labelled "Bright" when their mean pixel is above the median
of the 100 (a list_attr_celeba.txt written here, so `preprocess --labels celeba` reads it as CelebA's).
Then, each a `dcgan` command: preprocess (32x32 grey, as `make demo`), train --preset demo (2,500 steps),
directions, and edit --sweep Bright --frames 7 (-3..+3) on 8 seeds. The figure is that strip, enlarged 2x.
Printed: the directions' accuracies, and the mean pixel of 1,000 samples (seeds 0-999) moved by -3..+3 along
Bright and, as a control, along a random unit direction.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
FIGURE = ROOT / "docs" / "editing-bright.png"


def dcgan(*args) -> None:
    print("$ dcgan", " ".join(map(str, args)), flush=True)
    subprocess.run([sys.executable, "-m", "dcgan_cli", *map(str, args)], check=True)


def label_brightness(faces: Path) -> None:
    """faces/../list_attr_celeba.txt: Bright = 1 when the face's mean pixel is above the median."""
    names = sorted(p.name for p in faces.glob("*.png"))
    means = {n: float(np.asarray(Image.open(faces / n), np.float32).mean()) for n in names}
    median = float(np.median(list(means.values())))
    rows = [f"{n} {1 if means[n] > median else -1}" for n in names]
    (faces.parent / "list_attr_celeba.txt").write_text("\n".join([str(len(names)), "Bright", *rows]) + "\n")


def measure(run: Path) -> None:
    from dcgan_cli.generate.directions import load_directions
    from dcgan_cli.generate.sampling import Sampler, latents, load_generator

    d = load_directions(run)
    sampler = Sampler(load_generator(run).model)
    z = latents(range(1000), sampler.latent_dim)
    rnd = np.random.default_rng(0).standard_normal(sampler.latent_dim).astype(np.float32)
    rnd /= np.linalg.norm(rnd)
    print("mean pixel (0-255) of 1,000 samples moved by a:")
    for name, n in (("Bright", d.normal("Bright")), ("random", rnd)):
        row = [float(sampler(z + a * n).mean()) for a in (-3, -2, -1, 0, 1, 2, 3)]
        print(f"  {name:<7}" + "  ".join(f"{a:+d}: {m:6.1f}" for a, m in zip(range(-3, 4), row)))


def figure(strip: Path, frames: int) -> None:
    im = Image.open(strip).convert("L")
    big = im.resize((im.width * 2, im.height * 2), Image.NEAREST)
    out = Image.new("L", (big.width, big.height + 22), 255)
    out.paste(big, (0, 22))
    draw = ImageDraw.Draw(out)
    cell = big.width / frames
    for i, a in enumerate(np.linspace(-3, 3, frames)):
        draw.text((i * cell + cell / 2 - 8, 5), f"{a:+g}", fill=0)
    FIGURE.parent.mkdir(exist_ok=True)
    out.save(FIGURE, optimize=True)
    print(f"wrote {FIGURE.relative_to(ROOT)} ({FIGURE.stat().st_size // 1024} KB)")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--work", type=Path, default=Path("/tmp/bright"))
    p.add_argument("--seeds", default="0-7")
    args = p.parse_args()
    w = args.work.resolve()
    data, runs = w / "data", w / "runs"
    dcgan("download", "lfw-sample", "--data-dir", data)
    label_brightness(data / "lfw-sample")
    out = data / "processed" / "lfw-bright-32"
    dcgan("preprocess", data / "lfw-sample", "-o", out, "--size", 32, "--crop", "none", "--channels", 1,
          "--labels", "celeba")
    if not list(runs.glob("*/generator.keras")):
        dcgan("train", "--preset", "demo", "--data", out, "--runs-dir", runs, "--quiet")
    run = sorted(runs.glob("0*"))[-1]
    dcgan("directions", "--run", run, "--force")
    strip = w / "bright-strip.png"
    dcgan("edit", "--run", run, "--sweep", "Bright", "--frames", 7, "--seeds", args.seeds, "-o", strip, "--force")
    measure(run)
    figure(strip, 7)


if __name__ == "__main__":
    main()
