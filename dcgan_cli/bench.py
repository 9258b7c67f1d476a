"""`dcgan bench`: how fast the step, the whole loop and the input pipeline run (and, with the
`quality` part, how good the samples are: bench_quality.py).

Figures are img/s. Shared machines drift by tens of percent from minute to
minute, so speed claims are ratios against reference steps timed in the same
run (`--peers DIR` runs ../shared/bench/peer_*.py back to back with our step).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dcgan_cli.config import preset


def bench_step(size: int = 64, batch_size: int = 128, steps: int = 20, precision: str = "auto",
               xla: bool = False, warmup: int = 3) -> dict:
    """The `dcgan` preset's train step alone, on an in-memory uint8 batch."""
    import tensorflow as tf

    from dcgan_cli.training import build_gan, make_train_step, resolve_precision

    cfg = preset("dcgan", image_size=size, batch_size=batch_size, precision=precision, xla=xla,
                 strategy="default")
    precision = resolve_precision(cfg.precision)
    strategy = tf.distribute.get_strategy()
    gan = build_gan(cfg, precision)
    step = make_train_step(cfg, gan, strategy, precision)
    batch = tf.random.uniform((batch_size, size, size, cfg.channels), 0, 256, dtype=tf.int32)
    batch = tf.cast(batch, tf.uint8)
    for _ in range(warmup):
        out = step(batch)
    float(out["d_loss"])
    t = time.perf_counter()
    for _ in range(steps):
        out = step(batch)
    float(out["d_loss"])
    dt = time.perf_counter() - t
    return {"step_img_per_s": round(batch_size * steps / dt, 1), "precision": precision, "xla": xla}


def bench_loop(data: str | Path, size: int = 64, batch_size: int = 128, steps: int = 40,
               precision: str = "auto", epoch_steps: int = 2000) -> dict:
    """The real training loop from shards on disk, with the per-epoch work
    (checkpoint, grid, metrics, plot) measured and amortised over `epoch_steps`."""
    from dcgan_cli.training import train

    cfg = preset("dcgan", data=str(data), image_size=size, batch_size=batch_size, precision=precision,
                 strategy="default", steps_per_epoch=steps, epochs=3)
    with tempfile.TemporaryDirectory() as runs:
        # Epoch 1 warms up (tracing, pipeline fill); epochs 2-3 are timed from metrics.jsonl,
        # each including its own input pipeline start.
        run = train(cfg.replace(runs_dir=runs), quiet=True, log=lambda m: None)
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        step_time = sum(r["seconds"] for r in rows[1:]) / (steps * (len(rows) - 1))
    t_end = _end_of_epoch_seconds(cfg)
    amortised = batch_size * epoch_steps / (step_time * epoch_steps + t_end)
    return {"loop_img_per_s": round(amortised, 1), "loop_raw_img_per_s": round(batch_size / step_time, 1),
            "end_of_epoch_seconds": round(t_end, 3)}


def _end_of_epoch_seconds(cfg) -> float:
    """Time (EMA statistics +) checkpoint + grid + metrics + plot as the trainer does them."""
    import tensorflow as tf

    from dcgan_cli.fsutil import append_line
    from dcgan_cli.images import make_grid, save_image
    from dcgan_cli.sampling import Sampler
    from dcgan_cli.training import build_gan, plot_losses, resolve_precision, standing_statistics

    gan = build_gan(cfg, resolve_precision(cfg.precision))
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        manager = tf.train.CheckpointManager(gan.checkpoint(), str(d), max_to_keep=3)
        manager.save(0)  # warm
        row = {"epoch": 1, "d_loss": 1.0, "g_loss": 1.0}
        t = time.perf_counter()
        if gan.g_ema is not None:  # the EMA's own batch-norm statistics, before every checkpoint
            standing_statistics(gan.g_ema, cfg.seed)
        manager.save(1)
        grids = Sampler(gan.output_generator, batch_size=cfg.num_samples)  # built once per run, like the trainer's
        save_image(d / "grid.png", make_grid(grids(gan.fixed_z.numpy())))
        for epoch in range(60):  # a loss plot of a long run
            append_line(d / "metrics.jsonl", json.dumps({**row, "epoch": epoch + 1}))
        plot_losses(d / "metrics.jsonl", d / "losses.png")
        return time.perf_counter() - t


def run_peer(cmd: list[str]) -> float | None:
    """img/s printed by a reference script (its last `img/s=N`), or None."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in reversed(out.splitlines()):
        if "img/s=" in line:
            return float(line.rsplit("img/s=", 1)[1].split()[0])
    return None


PARTS = ("step", "loop", "input", "preprocess", "quality")


def bench(size=64, batch_size=128, steps=20, data=None, precision="auto", xla=False, peers=None,
          torch_python=None, log=print, parts=("step", "loop", "input", "preprocess"),
          quality_steps=None, quality_seeds=None) -> dict:
    result: dict = {"size": size, "batch": batch_size, "device": _device()}
    ref: dict = {}
    if peers:
        peer = Path(peers) / "peer_keras.py"
        ref["keras_canonical_fp32"] = run_peer([sys.executable, str(peer), "canonical", str(batch_size), str(steps)])
        log(f"reference keras canonical fp32: {ref['keras_canonical_fp32']} img/s")
        if torch_python:
            ref["torch_example"] = run_peer([str(torch_python), str(Path(peers) / "peer_torch.py"),
                                             str(batch_size), str(steps), str(size)])
            log(f"reference torch example: {ref['torch_example']} img/s")
    if "step" in parts:
        result.update(bench_step(size, batch_size, steps, precision, xla))
        log(f"step: {result['step_img_per_s']} img/s ({result['precision']})")
    if peers:
        # Once more after our step, so drift shows up as disagreement between the two.
        again = run_peer([sys.executable, str(Path(peers) / "peer_keras.py"), "canonical", str(batch_size), str(steps)])
        if ref.get("keras_canonical_fp32") and again:
            ref["keras_canonical_fp32"] = round((ref["keras_canonical_fp32"] + again) / 2, 1)
        result["reference"] = ref
        for k, v in ref.items():
            if v and "step_img_per_s" in result:
                result[f"step_vs_{k}"] = round(result["step_img_per_s"] / v, 2)
    with tempfile.TemporaryDirectory() as tmp:
        if data is None and ({"loop", "input"} & set(parts)):
            from dcgan_cli.bench_input import make_bench_shards

            data = make_bench_shards(Path(tmp), n_images=20_000, size=size)
        if "input" in parts:
            from dcgan_cli.bench_input import input_throughput

            result["input_img_per_s"] = round(input_throughput(data, batch_size=batch_size), 1)
            log(f"input pipeline: {result['input_img_per_s']} img/s")
        if "preprocess" in parts:
            from dcgan_cli.bench_input import preprocess_throughput

            pre = preprocess_throughput(Path(tmp) / "preprocess", n_images=2000)
            result["preprocess"] = pre
            log(f"preprocess (CelebA-like 178x218 JPEG -> 64x64): {pre['img_per_s']} img/s")
        if "loop" in parts:
            result.update(bench_loop(data, size, batch_size, steps=max(steps, 40), precision=precision))
            log(f"loop (end of epoch amortised over 2,000 steps): {result['loop_img_per_s']} img/s")
            if "step_img_per_s" in result:
                result["loop_vs_step"] = round(result["loop_img_per_s"] / result["step_img_per_s"], 3)
    if "quality" in parts:
        # Its own data (digits), size (32) and batch (the preset's): see bench_quality.py.
        from dcgan_cli import bench_quality

        result["quality"] = bench_quality.bench_quality(
            steps=quality_steps or bench_quality.DEFAULT_STEPS,
            seeds=tuple(quality_seeds or bench_quality.DEFAULT_SEEDS), log=log)
    return result


def _device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return f"{len(gpus)} GPU" if gpus else "CPU"
