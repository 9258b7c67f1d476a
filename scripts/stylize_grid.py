"""docs/stylize-grid.png: content, style, the random network's result, VGG19's result (when its weights exist).

    PYTHONPATH=$PWD python scripts/stylize_grid.py [--vgg-weights FILE] [--size 128] [--steps 300]

Content: scikit-image's astronaut (a face); style: its coffee photograph. Each panel
is labelled; where the VGG19 ImageNet weights are not on the machine (neither
in Keras' cache nor given) the last panel says so instead of showing a result.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dcgan_cli.data import weights
from dcgan_cli.generate.stylize import StyleOptions, stylize_file


def _panel(pixels: np.ndarray | None, label: str, side: int) -> Image.Image:
    im = Image.new("RGB", (side, side + 28), "white")
    if pixels is not None:
        im.paste(Image.fromarray(pixels).resize((side, side)), (0, 0))
    else:
        ImageDraw.Draw(im).multiline_text((8, side // 2 - 20), "VGG19 weights not\non this machine:\n"
                                          "`dcgan download vgg19`", fill="black")
    ImageDraw.Draw(im).text((6, side + 8), label, fill="black")
    return im


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vgg-weights", type=Path)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path("docs/stylize-grid.png"))
    a = ap.parse_args()
    from skimage import data

    tmp = Path(tempfile.mkdtemp())
    content, style = tmp / "content.png", tmp / "style.png"
    Image.fromarray(data.astronaut()[:300, 100:400]).save(content)  # the face
    Image.fromarray(data.coffee()).save(style)
    vgg = a.vgg_weights or weights.cached("vgg19")
    results = {}
    for name, features in (("random", "random"), ("vgg19", f"vgg19:{vgg}" if vgg else None)):
        if features is None:
            continue
        out = tmp / f"{name}.png"
        r = stylize_file(content, style, out, StyleOptions(size=a.size, steps=a.steps, features=features), log=print)
        print(f"{name}: {r.seconds:.1f} s")
        results[name] = np.asarray(Image.open(out).convert("RGB"))
    side = a.size
    panels = [_panel(np.asarray(Image.open(content).convert("RGB")), "content", side),
              _panel(np.asarray(Image.open(style).convert("RGB")), "style", side),
              _panel(results["random"], "random VGG-shaped", side),
              _panel(results.get("vgg19"), "VGG19 ImageNet", side)]
    grid = Image.new("RGB", (len(panels) * (side + 4), side + 28), "white")
    for i, p in enumerate(panels):
        grid.paste(p, (i * (side + 4), 0))
    grid.save(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
