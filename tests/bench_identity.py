"""The offline quality bar of the identity network: one-shot verification on digit classes it never saw.

sklearn's digits preprocessed to 16x16 grey with --labels folders; 7 classes
trained, 3 held out (3, 7, 8); the LFW protocol on 6,000 pairs of the 3 unseen
classes, against the same protocol on raw pixels (see dcgan_cli/identity/bench.py).
Per-seed lines, then one summary line per setup:

    .venv/bin/python tests/bench_identity.py [EPOCHS] [SEEDS] [SETUP,SETUP...]

SETUPs (default: all): arcface (the default setup: --class-augment dihedral is the
only digits-specific change), triplet (batch-hard, dihedral), semi-hard (dihedral), arcface-plain and triplet-plain
(no class augmentation), before (the bench before class augmentation: triplet
batch-hard, width 16, P 7 x K 8, 10 epochs of the 7 classes). EPOCHS applies
to the dihedral setups (default 4); the plain ones train 8x as many epochs, so
every setup takes about as many steps.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from dcgan_cli.identity.bench import EPOCHS, SEEDS, format_one_shot, one_shot, preprocess_digits

PLAIN = dict(class_augment="none")
SETUPS = {
    "arcface": dict(loss="arcface"),
    "triplet": dict(loss="triplet", mining="batch-hard"),
    "semi-hard": dict(loss="triplet", mining="semi-hard"),
    "arcface-plain": dict(loss="arcface", **PLAIN),
    "triplet-plain": dict(loss="triplet", mining="batch-hard", **PLAIN),
    "before": dict(loss="triplet", mining="batch-hard", width=16, p_identities=7, k_images=8, **PLAIN),
}


def main(epochs: int = EPOCHS, seeds: int = len(SEEDS), setups: str = ",".join(SETUPS)) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-identity-"))
    data = preprocess_digits(root)
    results = []
    for name in setups.split(","):
        extra = SETUPS[name]
        n = 10 if name == "before" else epochs * 8 if extra.get("class_augment") == "none" else epochs
        results.append(one_shot(data, root / "runs", range(seeds), n, log=lambda m: print(m, flush=True),
                                name=name, **extra))
    print(f"reference, raw 16x16 pixels: {results[0]['pixels'] * 100:.2f}%")
    for r in results:
        print(format_one_shot(r))


if __name__ == "__main__":
    args = sys.argv[1:]
    main(*(int(a) for a in args[:2]), *args[2:3])
