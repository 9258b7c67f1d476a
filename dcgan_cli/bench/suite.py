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
from dcgan_cli.errors import UsageError
from dcgan_cli.generate.stylize import DEFAULT_SIZE as STYLIZE_SIZE  # the stylize part times the default run


# The step, loop and input parts' defaults: the peers' scripts time 64x64 at batch 128 too.
SIZE, BATCH_SIZE, STEPS = 64, 128, 20
FACE_IMAGES = 600  # photos of the --crop face preprocess figure


def bench_step(size: int = 64, batch_size: int = 128, steps: int = 20, precision: str = "auto",
               xla: bool = False, warmup: int = 3, channels: int = 3, augment: str = "none",
               preset_name: str = "dcgan") -> dict:
    """A preset's (the `dcgan` one's) train step alone, on an in-memory uint8 batch (`augment`: none, diffaug
    or ada; ada at p 0.5 so that its augmentations do run)."""
    import tensorflow as tf

    from dcgan_cli.gan.step import build_gan, make_train_step, resolve_precision

    cfg = preset(preset_name, image_size=size, channels=channels, batch_size=batch_size, precision=precision,
                 xla=xla, strategy="default", augment=augment, augment_p=0.5 if augment == "ada" else -1.0
                 ).with_augment(batch_size)
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
    from dcgan_cli.training.loop import train

    cfg = preset("dcgan", data=str(data), image_size=size, batch_size=batch_size, precision=precision,
                 strategy="default", steps_per_epoch=steps, epochs=3, augment="none")  # the plain loop
    with tempfile.TemporaryDirectory() as runs:
        # Epoch 1 warms up (tracing, pipeline fill); epochs 2-3 are timed from metrics.jsonl,
        # each including its own input pipeline start.
        run = train(cfg.replace(runs_dir=runs), quiet=True, log=lambda m: None)
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "d_loss" in x]
        step_time = sum(r["seconds"] for r in rows[1:]) / (steps * (len(rows) - 1))
    t_end = _end_of_epoch_seconds(cfg)
    amortised = batch_size * epoch_steps / (step_time * epoch_steps + t_end)
    return {"loop_img_per_s": round(amortised, 1), "loop_raw_img_per_s": round(batch_size / step_time, 1),
            "end_of_epoch_seconds": round(t_end, 3)}


def bench_loop_epochs(data: str | Path, batch_size: int = 128, precision: str = "auto", steps: int = 20) -> dict:
    """The real loop on `data` with its real epochs (small sets: a few seconds each) against the step.

    Trains the `dcgan` preset at the data's size for one warm-up epoch and then
    one full cycle of the end-of-epoch cadence (`TrainConfig.with_cadence`: auto
    unless given), timed from the end of the warm-up epoch to the end of the last
    one, which always writes a checkpoint and a grid. The same is done with the
    end-of-epoch work after every epoch (what training did before the cadence),
    and the step alone is timed on the same shapes: both loops are given as
    ratios to it (`loop_vs_step`, `loop_every_epoch_vs_step`). On a shared
    machine that ratio drifts with the load between the two timings, so each loop
    is also compared with its own steps, timed in the same epochs
    (`steps_share`: the share of the loop's wall time spent in training steps,
    from metrics.jsonl's per-epoch step seconds; 1 - steps_share is what the
    end-of-epoch work costs).
    """
    from dcgan_cli.data.shards import load_manifest
    from dcgan_cli.training.loop import train

    m = load_manifest(data)
    base = preset("dcgan", data=str(data), image_size=m["size"], channels=m["channels"], batch_size=batch_size,
                  precision=precision, strategy="default", augment="none")  # the plain loop
    auto = base.with_cadence(m["count"])
    spe = auto.epoch_steps(m["count"])

    def loop(cfg, timed_epochs: int) -> tuple[float, float]:
        stamps: list[float] = []
        with tempfile.TemporaryDirectory() as runs:
            run = train(cfg.replace(runs_dir=runs, epochs=1 + timed_epochs), quiet=True,
                        log=lambda line: stamps.append(time.perf_counter()))  # one line per epoch, after its writes
            rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "d_loss" in x]
        wall = stamps[-1] - stamps[0]
        return batch_size * spe * timed_epochs / wall, sum(r["seconds"] for r in rows[1:]) / wall

    cadence = max(auto.checkpoint_every_epochs, auto.sample_every_epochs)
    step = bench_step(m["size"], batch_size, steps, precision, channels=m["channels"])["step_img_per_s"]
    loop_auto, share_auto = loop(auto, max(cadence, 2))
    loop_every, share_every = loop(auto.replace(checkpoint_every_epochs=1, sample_every_epochs=1), 4)
    return {"data": str(data), "data_images": m["count"], "steps_per_epoch": spe,
            "checkpoint_every_epochs": auto.checkpoint_every_epochs, "sample_every_epochs": auto.sample_every_epochs,
            "step_img_per_s": step, "loop_img_per_s": round(loop_auto, 1), "steps_share": round(share_auto, 3),
            "loop_vs_step": round(loop_auto / step, 3),
            "loop_every_epoch_img_per_s": round(loop_every, 1), "steps_share_every_epoch": round(share_every, 3),
            "loop_every_epoch_vs_step": round(loop_every / step, 3)}


def _end_of_epoch_seconds(cfg) -> float:
    """Time (EMA statistics +) checkpoint + grid + metrics + plot as the trainer does them."""
    import tensorflow as tf

    from dcgan_cli.fsutil import append_line
    from dcgan_cli.images import make_grid, save_image
    from dcgan_cli.generate.sampling import Sampler
    from dcgan_cli.gan.step import build_gan, resolve_precision, standing_statistics
    from dcgan_cli.training.loop import plot_losses

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


def bench_identity(size: int = 64, steps: int = 20, warmup: int = 3) -> dict:
    """The identity network: embedding img/s (batches of 256) and training img/s (P=16 x K=4), per loss."""
    import numpy as np

    from dcgan_cli.identity.config import LOSSES, IdentityConfig
    from dcgan_cli.identity.train import build_state, make_augment, make_step
    from dcgan_cli.identity.verification import Embedder

    rng = np.random.default_rng(0)
    out = {}
    for loss in LOSSES:
        cfg = IdentityConfig(image_size=size, channels=3, loss=loss)
        model, centres, opt, _ = build_state(cfg, 1000, 1000)
        step = make_step(cfg, model, centres, opt, make_augment(cfg))
        x = rng.integers(0, 256, (cfg.batch_size, size, size, 3), dtype=np.uint8)
        y = np.repeat(np.arange(cfg.p_identities), cfg.k_images)
        for _ in range(warmup):
            float(step(x, y))
        t = time.perf_counter()
        for _ in range(steps):
            float(step(x, y))
        out[f"identity_train_{loss}_img_per_s"] = round(cfg.batch_size * steps / (time.perf_counter() - t), 1)
    embed = Embedder(model, 256)
    x = rng.integers(0, 256, (256, size, size, 3), dtype=np.uint8)
    embed(x)
    t = time.perf_counter()
    reps = max(2, steps // 5)
    for _ in range(reps):
        embed(x)
    out["identity_embed_img_per_s"] = round(256 * reps / (time.perf_counter() - t), 1)
    return out


def bench_stylize(size: int = 256, steps: int = 20, warmup: int = 3, default_run: bool = True) -> dict:
    """`dcgan stylize` at size x size: seconds per Adam step (the median of `steps`) with the random
    network and with VGG19's shape (random weights: the same cost as ImageNet's), and the whole default
    run (300 steps, from loading the images to the written file) when `default_run`."""
    import numpy as np
    from PIL import Image

    from dcgan_cli.generate.stylize import DEFAULT_STEPS, Features, StyleOptions, Transfer, build_features, stylize_file

    rng = np.random.default_rng(0)
    content = rng.uniform(0, 1, (1, size, size, 3)).astype(np.float32)
    style = rng.uniform(0, 1, (size, size, 3)).astype(np.float32)

    def per_step(features) -> tuple[float, float]:
        """(median wall seconds, mean CPU seconds of this process) per step. On a shared machine other
        jobs lengthen the wall time of some steps by a lot; the CPU time this process spends barely moves."""
        wall, cpu = [], []
        Transfer(features, StyleOptions(size=size, steps=warmup + steps)).run(
            content, style, on_step=lambda i, t: (wall.append(time.perf_counter()), cpu.append(time.process_time())))
        return float(np.median(np.diff(wall[warmup - 1:]))), (cpu[-1] - cpu[warmup - 1]) / steps

    random_net = build_features("random")
    wall, cpu = per_step(random_net)
    result = {"stylize_size": size, "stylize_s_per_step": round(wall, 4), "stylize_cpu_s_per_step": round(cpu, 4)}
    import keras

    from dcgan_cli.generate.stylize import CONTENT_LAYER, STYLE_LAYERS

    vgg = keras.applications.VGG19(weights=None, include_top=False, input_shape=(None, None, 3))
    names = [CONTENT_LAYER["vgg19"], *STYLE_LAYERS]
    cut = keras.Model(vgg.inputs, [vgg.get_layer(n).output for n in names])
    vgg_features = Features(cut, names[0], tuple((n, 0.2) for n in STYLE_LAYERS), "VGG19 shape")
    vgg_wall, vgg_cpu = per_step(vgg_features)
    result["stylize_vgg19_s_per_step"] = round(vgg_wall, 4)
    result["stylize_vgg19_cpu_s_per_step"] = round(vgg_cpu, 4)
    result["stylize_vgg19_vs_random_cpu"] = round(vgg_cpu / cpu, 2)  # CPU time: the ratio that load does not move
    if default_run:
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            for name, px in (("content.png", content[0]), ("style.png", style)):
                Image.fromarray((px * 255).astype(np.uint8)).save(d / name)
            t, c = time.perf_counter(), time.process_time()
            # The random network's run, as the bench has always timed it (the default is VGG19 where cached).
            stylize_file(d / "content.png", d / "style.png", d / "out.png", StyleOptions(size=size, features="random"))
            result["stylize_default_run_s"] = round(time.perf_counter() - t, 1)
            result["stylize_default_run_cpu_s"] = round(time.process_time() - c, 1)
            result["stylize_default_steps"] = DEFAULT_STEPS
    return result


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


PARTS = ("step", "loop", "input", "preprocess", "quality", "stylize", "identity", "repair")


def parse_choices(text: str, choices: tuple[str, ...], option: str) -> tuple[str, ...]:
    """'step, loop' -> ("step", "loop"): a non-empty comma-separated subset of `choices`, else a usage error."""
    wanted = tuple(p.strip() for p in text.split(",") if p.strip())
    if not wanted or set(wanted) - set(choices):
        raise UsageError(f"use a comma-separated subset of {', '.join(choices)}", option)
    return wanted


def bench(size=SIZE, batch_size=BATCH_SIZE, steps=STEPS, data=None, precision="auto", xla=False, peers=None,
          torch_python=None, log=print, parts=("step", "loop", "input", "preprocess"), face_images=FACE_IMAGES,
          stylize_size=STYLIZE_SIZE, quality_steps=None, quality_seeds=None, quality_sets=None, augment="none",
          quality_augment=("auto",), quality_curve=0, quality_workdir=None,
          repair=None, preset_name="dcgan") -> dict:
    """Each part asked for, in a fixed order; speed figures beside the peers' steps timed in the same run.

    `preset_name`: the recipe of the step and of our model in the quality part (the `dcgan` preset).
    `augment` (diffaug or ada): the step is timed with it too, after the plain one, and their ratio given.
    `quality_augment`: the quality part trains our model once per mode per seed."""
    if augment == "auto":  # auto is resolved from a data set's size, and the step is timed on no data set
        raise UsageError("the step is timed on an in-memory batch of no data set: use diffaug or ada", "--augment")
    result: dict = {"size": size, "batch": batch_size, "device": _device(), "preset": preset_name}
    ref = _peers_before(peers, torch_python, size, batch_size, steps, log) if peers else {}
    if "step" in parts:
        result.update(bench_step(size, batch_size, steps, precision, xla, preset_name=preset_name))
        log(f"step ({preset_name} preset): {result['step_img_per_s']} img/s ({result['precision']})")
        if augment != "none":
            _bench_augment_step(result, augment, size, batch_size, steps, precision, xla, log, preset_name)
    if peers:
        _peers_after(result, ref, peers, batch_size, steps)
    if "identity" in parts:
        _bench_identity_part(result, size, steps, log)
    if "stylize" in parts:
        _bench_stylize_part(result, ref, stylize_size, steps, log)
    if {"loop", "input", "preprocess"} & set(parts):
        _bench_data_parts(result, parts, data, size, batch_size, steps, precision, face_images, log)
    if "quality" in parts:
        # Its own data (digits, faces), size (32) and batch: see bench_quality.py.
        from dcgan_cli.bench import quality as bench_quality

        result["quality"] = bench_quality.bench_quality(
            steps=quality_steps,  # None: each set's own budget
            seeds=tuple(quality_seeds or bench_quality.DEFAULT_SEEDS),
            sets=tuple(quality_sets or bench_quality.DEFAULT_SETS), log=log, augments=tuple(quality_augment),
            curve=quality_curve, workdir=quality_workdir, preset_name=preset_name)
    if "repair" in parts:
        # Its own data (held-out faces and digits) and training: see repair_bench.py. `repair`: its keyword
        # arguments (seeds, sets, steps, figure).
        from dcgan_cli.bench.repair import bench_repair

        result["repair"] = bench_repair(log=log, **(repair or {}))
    return result


def _bench_augment_step(result: dict, augment: str, size: int, batch_size: int, steps: int, precision: str,
                        xla: bool, log, preset_name: str = "dcgan") -> None:
    """The step with `augment` on, then off once more (drift shows as the two offs disagreeing): on / off."""
    on = bench_step(size, batch_size, steps, precision, xla, augment=augment, preset_name=preset_name)["step_img_per_s"]
    again = bench_step(size, batch_size, steps, precision, xla, preset_name=preset_name)["step_img_per_s"]
    off = (result["step_img_per_s"] + again) / 2
    result.update({f"step_{augment}_img_per_s": on, "step_off_again_img_per_s": again,
                   f"step_{augment}_vs_off": round(on / off, 3)})
    log(f"step with --augment {augment}: {on} img/s; off {result['step_img_per_s']} and {again} img/s; "
        f"on/off {on / off:.3f}")


def _peers_before(peers, torch_python, size: int, batch_size: int, steps: int, log) -> dict:
    """The reference steps timed before ours (../shared/bench's peer scripts): img/s by name."""
    ref = {"keras_canonical_fp32": run_peer([sys.executable, str(Path(peers) / "peer_keras.py"), "canonical",
                                             str(batch_size), str(steps)])}
    log(f"reference keras canonical fp32: {ref['keras_canonical_fp32']} img/s")
    if torch_python:
        ref["torch_example"] = run_peer([str(torch_python), str(Path(peers) / "peer_torch.py"),
                                         str(batch_size), str(steps), str(size)])
        log(f"reference torch example: {ref['torch_example']} img/s")
    return ref


def _peers_after(result: dict, ref: dict, peers, batch_size: int, steps: int) -> None:
    """The Keras reference once more after our step (drift shows as disagreement), and our step's ratios."""
    again = run_peer([sys.executable, str(Path(peers) / "peer_keras.py"), "canonical", str(batch_size), str(steps)])
    if ref.get("keras_canonical_fp32") and again:
        ref["keras_canonical_fp32"] = round((ref["keras_canonical_fp32"] + again) / 2, 1)
    result["reference"] = ref
    for k, v in ref.items():
        if v and "step_img_per_s" in result:
            result[f"step_vs_{k}"] = round(result["step_img_per_s"] / v, 2)


def _bench_identity_part(result: dict, size: int, steps: int, log) -> None:
    result.update(bench_identity(size, steps))
    log(f"identity ({size}x{size}x3, fp32): embedding {result['identity_embed_img_per_s']} img/s; training "
        f"triplet {result['identity_train_triplet_img_per_s']} img/s, arcface "
        f"{result['identity_train_arcface_img_per_s']} img/s (P=16 x K=4)")
    # And how good: one-shot verification on digit classes it never saw, against raw pixels.
    from dcgan_cli.identity.bench import bench_one_shot

    result["identity_one_shot"] = bench_one_shot(log=lambda m: log(f"identity {m}"))


def _bench_stylize_part(result: dict, ref: dict, stylize_size: int, steps: int, log) -> None:
    st = bench_stylize(stylize_size, steps)
    result.update(st)
    log(f"stylize at {stylize_size}x{stylize_size}: {st['stylize_s_per_step']} s/step "
        f"({st['stylize_cpu_s_per_step']} CPU s) with the random network, {st['stylize_vgg19_s_per_step']} s/step "
        f"({st['stylize_vgg19_cpu_s_per_step']} CPU s, {st['stylize_vgg19_vs_random_cpu']}x) with VGG19's shape; "
        f"default run ({st['stylize_default_steps']} steps): {st['stylize_default_run_s']} s "
        f"({st['stylize_default_run_cpu_s']} CPU s)")
    if ref.get("keras_canonical_fp32"):
        # Machine-speed-free: how many canonical 64x64 training images one stylize step costs.
        result["stylize_step_in_canonical_images"] = round(st["stylize_s_per_step"] * ref["keras_canonical_fp32"], 1)


def _bench_data_parts(result: dict, parts, data, size: int, batch_size: int, steps: int, precision: str,
                      face_images: int, log) -> None:
    """input, preprocess and loop: on the user's --data, or on shards made here for the purpose."""
    user_data = data is not None
    with tempfile.TemporaryDirectory() as tmp:
        if data is None and ({"loop", "input"} & set(parts)):
            from dcgan_cli.bench.input import make_bench_shards

            data = make_bench_shards(Path(tmp), n_images=20_000, size=size)
        if "input" in parts:
            from dcgan_cli.bench.input import input_throughput

            result["input_img_per_s"] = round(input_throughput(data, batch_size=batch_size), 1)
            log(f"input pipeline: {result['input_img_per_s']} img/s")
        if "preprocess" in parts:
            _bench_preprocess_part(result, Path(tmp) / "preprocess", face_images, log)
        if "loop" in parts and user_data:  # its real epochs, whatever their length, at its size
            loop = bench_loop_epochs(data, batch_size, precision, steps)
            result["loop_real_epochs"] = loop
            result["loop_img_per_s"], result["loop_vs_step"] = loop["loop_img_per_s"], loop["loop_vs_step"]
            log(f"loop on {loop['data_images']:,} images ({loop['steps_per_epoch']} steps an epoch; checkpoint every "
                f"{loop['checkpoint_every_epochs']}, grid every {loop['sample_every_epochs']} epochs): "
                f"{loop['loop_img_per_s']} img/s = {loop['loop_vs_step']}x the step ({loop['step_img_per_s']} img/s), "
                f"{loop['steps_share']:.1%} of it in steps; with the end-of-epoch work every epoch: "
                f"{loop['loop_every_epoch_vs_step']}x, {loop['steps_share_every_epoch']:.1%} in steps")
        elif "loop" in parts:
            result.update(bench_loop(data, size, batch_size, steps=max(steps, 40), precision=precision))
            log(f"loop (end of epoch amortised over 2,000 steps): {result['loop_img_per_s']} img/s")
            if "step_img_per_s" in result:
                result["loop_vs_step"] = round(result["loop_img_per_s"] / result["step_img_per_s"], 3)


def _bench_preprocess_part(result: dict, where: Path, face_images: int, log) -> None:
    from dcgan_cli.bench.input import preprocess_throughput
    from dcgan_cli.data.preprocess import faces

    pre = preprocess_throughput(where, n_images=2000)
    result["preprocess"] = pre
    log(f"preprocess (CelebA-like 178x218 JPEG -> 64x64): {pre['img_per_s']} img/s")
    if faces.available():  # --crop face: detection + alignment, on the same-sized JPEGs with real faces
        # 600 photos: enough for the driver to start a worker per core (each loads TF and MTCNN)
        face = preprocess_throughput(where, n_images=face_images, crop="face")
        face["vs_celeba_crop"] = round(face["img_per_s"] / pre["img_per_s"], 4)
        result["preprocess_face"] = face
        log(f"preprocess --crop face (178x218 JPEG, one face -> 64x64): {face['img_per_s']} img/s "
            f"({face['faces_found']}/{face['images']} faces found; {face['vs_celeba_crop']}x the celeba crop)")
    else:
        log(f"preprocess --crop face: not measured ({faces.EXTRA})")


def _device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return f"{len(gpus)} GPU" if gpus else "CPU"
