"""The offline quality bar of the identity network: one-shot verification on digit classes it never saw.

sklearn's digits (1,797 images, 10 classes) preprocessed to 16x16 grey with
--labels folders; 7 classes trained, 3 held out (data.split_identities: 3, 7, 8);
the LFW protocol on 6,000 pairs of the 3 unseen classes. The reference is
the same protocol on raw pixels (unit-normalised), in the same run.

    .venv/bin/python tests/bench_identity.py [EPOCHS] [SEEDS]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from digits import preprocess_digits  # noqa: E402


def main(epochs: int = 10, seeds: int = 3) -> None:
    from dcgan_cli.identity.config import IdentityConfig
    from dcgan_cli.identity.data import load_identities
    from dcgan_cli.identity.train import train_identity
    from dcgan_cli.identity.verification import distances, make_pairs, protocol

    root = Path(tempfile.mkdtemp(prefix="bench-identity-"))
    data = preprocess_digits(root)
    images, ids, _ = load_identities(data)
    results = {}
    for loss, extra in (("triplet", {"mining": "batch-hard"}), ("triplet", {"mining": "semi-hard"}),
                        ("arcface", {})):
        name = f"{loss}/{extra['mining']}" if extra else loss
        accs = []
        for seed in range(seeds):
            t = time.time()
            cfg = IdentityConfig(data=str(data), runs_dir=str(root / "runs"), image_size=16, channels=1, width=16,
                                 epochs=epochs, holdout=3, flip=False, p_identities=7, k_images=8, seed=seed,
                                 loss=loss, **extra)
            run = train_identity(cfg, quiet=True, log=lambda m: None)
            meta = json.loads((run / "embedding.json").read_text())
            v = meta["verification"]
            accs.append(v["accuracy"])
            print(f"{name} seed {seed}: {v['accuracy'] * 100:.2f}% ± {v['accuracy_std'] * 100:.2f} "
                  f"AUC {v['roc_auc']:.4f} ({v['pairs']} pairs, held out {meta['heldout_identities']}) "
                  f"{time.time() - t:.0f}s", flush=True)
        results[name] = accs
    held = np.isin(ids, meta["heldout_identities"])
    x = images[held].reshape(held.sum(), -1).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    a, b, same, fold = make_pairs(ids[held])
    pixels = protocol(distances(x[a], x[b]), same, fold)["accuracy"]
    print(f"reference, raw 16x16 pixels: {pixels * 100:.2f}%")
    for name, accs in results.items():
        print(f"{name}: {np.mean(accs) * 100:.2f}% mean over {len(accs)} seeds (min {min(accs) * 100:.2f}%), "
              f"{np.mean(accs) / pixels:.3f}x the pixel reference")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
