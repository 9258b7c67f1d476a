"""The trainer, trained for real on tiny data: shapes, steps, resume, faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import metrics as _metrics, tiny_config, wait_for_checkpoint as _wait_for_checkpoint
from dcgan_cli.errors import DcganError


# -- models -------------------------------------------------------------------


@pytest.mark.parametrize("size", [28, 32, 64])
def test_generator_and_discriminator_shapes_and_ranges(size):
    from dcgan_cli.gan.model import build_discriminator, build_generator

    g = build_generator(size, channels=3, latent_dim=16, filters=8)
    d = build_discriminator(size, channels=3, filters=8)
    z = np.random.default_rng(0).standard_normal((5, 16)).astype("float32")
    img = np.asarray(g(z, training=False))
    assert img.shape == (5, size, size, 3)
    assert img.min() >= -1 and img.max() <= 1  # tanh
    logits = np.asarray(d(img, training=False))
    assert logits.shape == (5, 1) and logits.dtype == np.float32


def test_64px_models_match_the_paper_architecture():
    """Same trainable parameter counts as the PyTorch DCGAN example (ngf = ndf = 64, nz = 100)."""
    from dcgan_cli.gan.model import build_discriminator, build_generator

    def trainable(m):
        return sum(int(np.prod(w.shape)) for w in m.trainable_weights)

    assert trainable(build_generator(64)) == 3_576_704
    assert trainable(build_discriminator(64)) == 2_765_568


def test_bf16_models_keep_float32_outputs():
    from dcgan_cli.gan.model import build_discriminator, build_generator

    g = build_generator(32, latent_dim=8, filters=8, dtype="mixed_bfloat16")
    d = build_discriminator(32, filters=8, dtype="mixed_bfloat16")
    img = g(np.zeros((2, 8), "float32"))
    assert img.dtype == "float32" and d(img).dtype == "float32"


# -- training -----------------------------------------------------------------


def _weights(run_dir, key="generator"):
    import tensorflow as tf

    from dcgan_cli.config import TrainConfig
    from dcgan_cli.gan.step import build_gan

    cfg = TrainConfig.load(run_dir / "config.json")
    gan = build_gan(cfg, "fp32")  # any precision restores: the checkpoint holds the plain Adam state
    path = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    gan.checkpoint().restore(path).assert_existing_objects_matched()
    return gan


def test_training_writes_per_epoch_files_and_moves_the_weights(data16, tmp_path):
    from dcgan_cli.training.loop import train

    cfg = tiny_config(data16, tmp_path, epochs=2, ema=0.9)
    run = train(cfg, quiet=True, log=lambda m: None)
    assert run.name == "00000-faces-16-dcgan"
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch-0001.png", "epoch-0002.png"]
    rows = _metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2] and [r["step"] for r in rows] == [3, 6]
    assert {"d_loss", "g_loss", "d_real", "d_fake", "img_per_s", "seconds"} <= set(rows[0])
    assert all(np.isfinite(r["d_loss"]) and 0 < r["d_real"] < 1 for r in rows)
    assert (run / "losses.png").stat().st_size > 1000
    assert list((run / "tensorboard").iterdir())
    saved = json.loads((run / "config.json").read_text())
    assert [e["event"] for e in saved.pop("history")] == ["start"]
    assert saved == cfg.to_dict()
    from dcgan_cli.runs import checkpoints

    # last-good/ holds the last epoch's checkpoint, and the one owner of checkpoints finds it there.
    assert [checkpoints.checkpoint_step(p) for p in checkpoints.checkpoint_paths(run / "last-good")] == [6]
    assert not (run / ".dcgan.lock").exists(), "the run's lock goes when training ends"

    gan = _weights(run)
    assert int(gan.step.numpy()) == 6 and int(gan.epoch.numpy()) == 2
    assert int(gan.g_opt.iterations.numpy()) == 6 and int(gan.d_opt.iterations.numpy()) == 6
    from dcgan_cli.gan.step import build_gan

    init = build_gan(cfg, "fp32")  # the same seeded initial weights
    moved = [np.abs(a.numpy() - b.numpy()).max() for a, b in
             zip(gan.generator.trainable_variables, init.generator.trainable_variables)]
    assert max(moved) > 1e-4, "six Adam steps left the generator unchanged"
    # The EMA generator trails the live one: different, but close.
    ema_gap = max(np.abs(e.numpy() - w.numpy()).max() for e, w in
                  zip(gan.g_ema.trainable_variables, gan.generator.trainable_variables))
    assert 0 < ema_gap < max(moved) * 2

    # generator.keras loads without this package's code and agrees with the checkpoint's sampler.
    import keras

    g = keras.saving.load_model(run / "generator.keras")
    z = gan.fixed_z.numpy()[:2]
    np.testing.assert_allclose(np.asarray(g(z, training=False)), np.asarray(gan.g_ema(z, training=False)), atol=1e-5)


def test_ema_decay_ramps_up_to_the_configured_one():
    from dcgan_cli.gan.step import ema_decay

    assert float(ema_decay(0.999, 0)) == pytest.approx(0.1)
    assert float(ema_decay(0.999, 90)) == pytest.approx(0.91)
    assert float(ema_decay(0.999, 100_000)) == pytest.approx(0.999)
    assert float(ema_decay(0.5, 3)) == pytest.approx(4 / 13) and float(ema_decay(0.5, 30)) == 0.5


def test_ema_leaves_its_random_start_within_a_few_steps(data16, tmp_path):
    """With decay 0.999 and no ramp-up, six steps would leave the EMA at 0.6% of the way from the init."""
    from dcgan_cli.gan.step import build_gan
    from dcgan_cli.training.loop import train

    cfg = tiny_config(data16, tmp_path, epochs=2, ema=0.999)
    gan = _weights(train(cfg, quiet=True, log=lambda m: None))
    init = build_gan(cfg, "fp32")

    def dist(a, b):
        return np.sqrt(sum(float(np.sum((x.numpy() - y.numpy()) ** 2)) for x, y in zip(a, b)))

    live_moved = dist(gan.generator.trainable_variables, init.generator.trainable_variables)
    ema_moved = dist(gan.g_ema.trainable_variables, init.generator.trainable_variables)
    assert 0.5 * live_moved < ema_moved < live_moved


def test_ema_batch_norm_statistics_come_from_its_own_forward_passes(data16, tmp_path):
    import keras
    import tensorflow as tf

    from dcgan_cli.gan.step import STANDING_STATS_BATCH, STANDING_STATS_SAMPLES, _STANDING_SEED, standing_statistics
    from dcgan_cli.training.loop import train

    cfg = tiny_config(data16, tmp_path, epochs=1, ema=0.9)
    gan = _weights(train(cfg, quiet=True, log=lambda m: None))
    ema_bn, live_bn = gan.g_ema.get_layer("project_bn"), gan.generator.get_layer("project_bn")
    saved = [ema_bn.moving_mean.numpy(), ema_bn.moving_variance.numpy()]
    # Not the live model's statistics (which the EMA used to copy) ...
    assert not np.allclose(saved[0], live_bn.moving_mean.numpy(), atol=1e-4)
    # ... but the batch statistics of the EMA's own layer input, averaged over the seeded batches.
    before_bn = keras.Model(gan.g_ema.input, gan.g_ema.get_layer("project").output)
    b, n = STANDING_STATS_BATCH, STANDING_STATS_SAMPLES // STANDING_STATS_BATCH
    batches = [before_bn(tf.random.stateless_normal([b, cfg.latent_dim], seed=[cfg.seed, _STANDING_SEED + i]))
               for i in range(n)]
    means = np.mean([np.mean(b.numpy(), axis=(0, 1, 2)) for b in batches], axis=0)
    variances = np.mean([np.var(b.numpy(), axis=(0, 1, 2)) for b in batches], axis=0)
    np.testing.assert_allclose(saved[0], means, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(saved[1], variances, rtol=2e-3)  # biased or Bessel-corrected: n = 4,096 a batch
    # Deterministic: recomputing gives the same statistics, and the layer keeps its momentum.
    standing_statistics(gan.g_ema, cfg.seed)
    np.testing.assert_allclose(ema_bn.moving_mean.numpy(), saved[0], rtol=1e-6, atol=1e-7)
    assert ema_bn.momentum == live_bn.momentum


@pytest.mark.slow
def test_resume_equals_uninterrupted_training(data16, tmp_path):
    from dcgan_cli.training.loop import train

    cfg = tiny_config(data16, tmp_path / "a", epochs=3, ema=0.5, label_smoothing=0.1, instance_noise=0.1,
                      flip=True)
    straight = train(cfg, quiet=True, log=lambda m: None)

    cfg_b = cfg.replace(runs_dir=str(tmp_path / "b"), epochs=1)
    run = train(cfg_b, quiet=True, log=lambda m: None, max_steps=2)  # stops mid-epoch 1, checkpointed
    assert int(_weights(run).step.numpy()) == 2
    run = train(cfg_b, resume=run, quiet=True, log=lambda m: None)  # finishes epoch 1
    logs = []
    run = train(cfg_b.replace(epochs=3), resume=run, quiet=True, log=logs.append)  # --epochs raised
    assert any("Resumed from" in m and "step 3" in m for m in logs)

    a, b = _weights(straight), _weights(run)
    assert int(b.step.numpy()) == int(a.step.numpy()) == 9
    assert int(b.epoch.numpy()) == 3
    assert int(b.g_opt.iterations.numpy()) == int(a.g_opt.iterations.numpy()) == 9
    for va, vb in zip(a.generator.variables + a.discriminator.variables + a.g_ema.variables,
                      b.generator.variables + b.discriminator.variables + b.g_ema.variables):
        np.testing.assert_allclose(va.numpy(), vb.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(a.fixed_z.numpy(), b.fixed_z.numpy())
    assert [r["step"] for r in _metrics(run)] == [3, 6, 9]


def test_resume_refuses_data_of_another_size(tiny_run_copy, tmp_path, image_folder):
    from dcgan_cli.data.preprocess import PreprocessConfig, preprocess
    from dcgan_cli.training.loop import train

    run = tiny_run_copy
    data32 = tmp_path / "faces-32"
    preprocess(PreprocessConfig(source=str(image_folder), out=str(data32), size=32))
    from dcgan_cli.config import TrainConfig

    cfg = TrainConfig.load(run / "config.json").replace(data=str(data32), epochs=2)
    with pytest.raises(DcganError, match=r"data is 32x32x3 .* wants 16x16x3.*--size 16"):
        train(cfg, resume=run, quiet=True, log=lambda m: None)


def test_resume_without_checkpoint_is_an_error(data16, tmp_path):
    from dcgan_cli.training.loop import train

    run = tmp_path / "00000-empty"
    run.mkdir()
    with pytest.raises(DcganError, match="is not a run directory"):
        train(tiny_config(data16, tmp_path), resume=run, quiet=True, log=lambda m: None)
    from dcgan_cli.runs import layout

    layout.save_config(run, tiny_config(data16, tmp_path))
    with pytest.raises(DcganError, match="no checkpoint to resume from"):
        train(tiny_config(data16, tmp_path), resume=run, quiet=True, log=lambda m: None)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data16, tmp_path):
    import tensorflow as tf

    from dcgan_cli.training.loop import train
    from dcgan_cli.runs.checkpoints import NonFiniteLoss

    cfg = tiny_config(data16, tmp_path, epochs=1)
    run = train(cfg, quiet=True, log=lambda m: None)
    good = tf.train.latest_checkpoint(str(run / "checkpoints"))
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}

    # An absurd learning rate blows the weights up within a step or two.
    bad = cfg.replace(epochs=5, lr_d=1e30, lr_g=1e30)
    (run / "config.json").write_text(bad.to_json())
    with pytest.raises(NonFiniteLoss, match=r"(NaN|Inf) at step \d+") as err:
        train(bad, resume=run, quiet=True, log=lambda m: None)
    assert "last good checkpoint" in str(err.value)
    assert tf.train.latest_checkpoint(str(run / "checkpoints")) == good
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before
    assert all(np.all(np.isfinite(v.numpy())) for v in _weights(run).generator.variables)


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(data16, tmp_path):
    import tensorflow as tf

    from dcgan_cli.training.loop import train

    cfg = tiny_config(data16, tmp_path, epochs=2)
    run = train(cfg, quiet=True, log=lambda m: None)
    newest = tf.train.latest_checkpoint(str(run / "checkpoints"))
    data_file = Path(newest + ".data-00000-of-00001")
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 3])  # truncated by a crash

    logs = []
    train(cfg.replace(epochs=3), resume=run, quiet=True, log=logs.append)
    assert any("could not be read" in m for m in logs)
    assert any("Resumed from" in m and "step 3" in m for m in logs)
    assert int(_weights(run).step.numpy()) == 9


def _train_cmd(data, runs, *extra):
    return [sys.executable, "-m", "dcgan_cli", "train", "--data", str(data), "--runs-dir", str(runs),
            "--batch-size", "8", "--g-filters", "8", "--d-filters", "8", "--latent-dim", "8", "--precision", "fp32",
            "--strategy", "default", "--steps-per-epoch", "3", "--checkpoint-every-epochs", "1", "--quiet", *extra]


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_writes_a_checkpoint_and_exits_130(data16, tmp_path, sig):
    runs = tmp_path / "runs"
    proc = subprocess.Popen(_train_cmd(data16, runs, "--epochs", "100000"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    run = _wait_for_checkpoint(runs, proc)
    time.sleep(0.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"dcgan train --resume {run}" in err
    assert "Traceback" not in err
    gan = _weights(run)
    assert int(gan.step.numpy()) >= 3


@pytest.mark.slow
@pytest.mark.subprocess
def test_kill_9_leaves_a_loadable_checkpoint(data16, tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.Popen(_train_cmd(data16, runs, "--epochs", "100000", "--checkpoint-every-steps", "1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = _wait_for_checkpoint(runs, proc)
    time.sleep(1.5)  # mid-save is likely with a checkpoint every step
    proc.kill()
    proc.wait()
    step = int(_weights(run).step.numpy())
    assert step >= 1
    # And the run continues from it.
    from dcgan_cli.config import TrainConfig
    from dcgan_cli.training.loop import train

    cfg = TrainConfig.load(run / "config.json")
    target = (step // 3 + 1) * 3
    train(cfg.replace(epochs=target // 3, checkpoint_every_steps=0), resume=run, quiet=True, log=lambda m: None)
    assert int(_weights(run).step.numpy()) == target


def test_missing_data_is_a_one_line_error_naming_preprocess(tmp_path):
    from dcgan_cli.training.loop import train

    with pytest.raises(DcganError, match="dcgan preprocess"):
        train(tiny_config(tmp_path / "nothing", tmp_path), quiet=True, log=lambda m: None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DcganError, match="no manifest.json.*dcgan preprocess"):
        train(tiny_config(empty, tmp_path), quiet=True, log=lambda m: None)


def test_precision_auto_follows_the_hardware():
    """Asked on any machine: what `auto` picks is checked against the devices TensorFlow sees and the CPU's
    own flags, read here (fp16 needs a GPU with tensor cores, bf16 a TPU or a CPU with BF16 units)."""
    import re

    import tensorflow as tf

    from dcgan_cli.gan.step import resolve_precision

    for name in ("fp32", "bf16", "fp16"):
        assert resolve_precision(name) == name  # an explicit choice is never second-guessed
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:  # the first GPU is the one TensorFlow places the model on
        capability = tuple(tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0)))
        fast = "fp16" if capability >= (7, 0) else "fp32"  # tensor cores: Volta (7.0) and later
    elif tf.config.list_logical_devices("TPU"):
        fast = "bf16"
    else:
        cpuinfo = Path("/proc/cpuinfo")
        flags = set(re.findall(r"\w+", cpuinfo.read_text())) if cpuinfo.exists() else set()
        fast = "bf16" if flags & {"avx512_bf16", "amx_bf16"} else "fp32"
    assert resolve_precision("auto") == fast, (fast, gpus)


def test_bf16_training_runs_and_stays_finite(data16, tmp_path):
    from dcgan_cli.training.loop import train

    run = train(tiny_config(data16, tmp_path, epochs=1, precision="bf16"), quiet=True, log=lambda m: None)
    assert np.isfinite(_metrics(run)[0]["g_loss"])


def test_fused_batch_norm_matches_keras_batch_norm():
    import keras

    from dcgan_cli.gan.model import FusedBatchNorm

    x = np.random.default_rng(0).normal(2.0, 3.0, (16, 5, 5, 4)).astype("float32")
    ours, ref = FusedBatchNorm(momentum=0.9, epsilon=1e-5), keras.layers.BatchNormalization(momentum=0.9,
                                                                                            epsilon=1e-5)
    ours.build(x.shape)
    ref.build(x.shape)
    np.testing.assert_allclose(np.asarray(ours(x, training=True)), np.asarray(ref(x, training=True)), atol=1e-4)
    np.testing.assert_allclose(ours.moving_mean.numpy(), ref.moving_mean.numpy(), rtol=1e-5)
    # The fused kernel keeps the unbiased variance (as PyTorch does); Keras the biased one.
    np.testing.assert_allclose(ours.moving_variance.numpy(), ref.moving_variance.numpy(), rtol=1e-2)
    np.testing.assert_allclose(np.asarray(ours(x, training=False)), np.asarray(ref(x, training=False)),
                               rtol=1e-2, atol=1e-2)


def test_fp16_training_uses_loss_scaling_and_stays_finite(data16, tmp_path):
    from dcgan_cli.training.loop import train

    cfg = tiny_config(data16, tmp_path, epochs=1, precision="fp16")
    run = train(cfg, quiet=True, log=lambda m: None)
    gan = _weights(run)
    assert int(gan.step.numpy()) == 3 and int(gan.g_opt.iterations.numpy()) == 3
    assert np.isfinite(_metrics(run)[0]["d_loss"])
    # A resume may switch precision (e.g. moving from a GPU to a CPU).
    train(cfg.replace(epochs=2, precision="bf16"), resume=run, quiet=True, log=lambda m: None)
    assert int(_weights(run).step.numpy()) == 6


@pytest.mark.parametrize("transpose", [False, True])
def test_patch_gradient_convolutions_match_keras(transpose):
    """The faster kernel gradient equals Keras' own, for the conv and the transposed conv."""
    import keras
    import tensorflow as tf

    from dcgan_cli.gan.model import PatchGradConv2D, PatchGradConv2DTranspose

    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 4, 5) if transpose else (3, 8, 8, 5)).astype("float32")
    ours = (PatchGradConv2DTranspose if transpose else PatchGradConv2D)(6, 4, 2, "same", use_bias=False)
    ref = (keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D)(6, 4, 2, "same", use_bias=False)
    ours.build(x.shape)
    ref.build(x.shape)
    ref.set_weights(ours.get_weights())
    xt = tf.constant(x)
    grads = []
    for layer in (ours, ref):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt)
            loss = tf.reduce_sum(y * y)
        grads.append((y.numpy(), *[g.numpy() for g in tape.gradient(loss, [xt, layer.kernel])]))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
