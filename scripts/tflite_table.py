"""The table of docs/studio.md: a run's generator as a SavedModel and as TFLite (float32, float16, dynamic).

    python scripts/tflite_table.py RUN [--rounds 9] [--batch 1] [--latents 256]

Size on disk; latency per call (median over interleaved rounds, after a warm-up, one thread each, in this
one process); and how far each TFLite file's pixels are from the SavedModel's on the same latents
(max and mean |difference| out of 255, and the share of pixels that differ at all).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--latents", type=int, default=256)
    args = ap.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from dcgan_cli.gan import generator_io
    from dcgan_cli.generate import sampling

    restored = generator_io.restore(args.run)
    work = Path(tempfile.mkdtemp(prefix="tflite-table-"))
    paths = {"SavedModel": sampling.export(restored, work / "saved", "savedmodel")[0]}
    for q in ("float32", "float16", "dynamic"):
        paths[f"TFLite {q}"] = sampling.export(restored, work / f"g-{q}.tflite", "tflite",
                                               quantize=None if q == "float32" else q)[0]
    nz = restored.config.latent_dim
    z = np.random.default_rng(0).standard_normal((args.latents, nz)).astype(np.float32)
    saved = tf.saved_model.load(str(paths["SavedModel"])).signatures["serving_default"]
    runners = {"SavedModel": lambda x: saved(latent=tf.constant(x))["images"].numpy()}
    for name, path in paths.items():
        if name != "SavedModel":
            runner = tf.lite.Interpreter(model_path=str(path), num_threads=1).get_signature_runner("serving_default")
            runners[name] = lambda x, r=runner: r(latent=x)["images"]
    reference = runners["SavedModel"](z).astype(np.int16)
    times = {name: [] for name in runners}
    batch = z[:args.batch]
    for f in runners.values():
        f(batch)  # warm-up
    for _ in range(args.rounds):
        for name, f in runners.items():
            t = time.perf_counter()
            f(batch)
            times[name].append(time.perf_counter() - t)
    base_size, base_ms = _size(paths["SavedModel"]), statistics.median(times["SavedModel"]) * 1e3
    shape = f"{restored.config.image_size}x{restored.config.image_size}x{restored.config.channels}"
    print(f"{args.run.name}: {shape}, latent {nz}; batch {args.batch}, {args.rounds} rounds; pixels over "
          f"{args.latents} latents")
    print("| format | size | size vs SavedModel | latency (median) | vs SavedModel | max abs diff | mean abs diff "
          "| pixels that differ |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, f in runners.items():
        diff = np.abs(f(z).astype(np.int16) - reference)
        ms = statistics.median(times[name]) * 1e3
        print(f"| {name} | {_size(paths[name]) / 1e6:.2f} MB | {_size(paths[name]) / base_size:.2f} | {ms:.2f} ms "
              f"| {ms / base_ms:.2f} | {diff.max()} | {diff.mean():.3f} | {(diff > 0).mean():.2%} |")


if __name__ == "__main__":
    main()
