"""Differentiable augmentation (DiffAugment) and ADA: the ops, the step, p's control, resume, the flags.

Real ops on real tensors, real tiny training on data16 (24 images, 16x16); no mocks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import metrics as _metrics, one_line_error, tiny_config
from dcgan_cli.gan import augment as aug
from dcgan_cli.cli import app

HERE = Path(__file__).parent

OFF, ON = 0.99, 0.0  # an on/off column of the draw: on when under p (0.5 below)


def _draw(n: int, on: tuple[int, ...] = (), **cols: float) -> np.ndarray:
    """A (n, DRAWS) draw with only the augmentations `on` switched on (at p 0.5), the other columns `cols`."""
    u = np.full((n, aug.DRAWS), 0.2, np.float32)  # every magnitude away from its no-op value
    u[:, :5] = OFF
    for k in on:
        u[:, k] = ON
    for name, v in cols.items():
        u[:, getattr(aug, name)] = v
    return u


def _images(n=4, size=16, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, channels)).astype(np.float32)


def test_p0_is_the_identity_and_p1_changes_every_image_keeping_shape_and_dtype():
    import tensorflow as tf

    x = _images()
    u = tf.random.stateless_uniform([4, aug.DRAWS], seed=[1, 2])
    assert np.array_equal(aug.diff_augment(x, u, 0.0).numpy(), x)
    y = aug.diff_augment(x, u, 1.0).numpy()
    assert y.shape == x.shape and y.dtype == np.float32
    assert all(not np.allclose(y[i], x[i]) for i in range(4))
    # Each augmentation alone, off for the samples whose draw is over p: those pass through unchanged.
    for k in range(5):
        u = _draw(4, on=(k,))
        u[2:, k] = OFF
        y = aug.diff_augment(x, u, 0.5).numpy()
        assert np.array_equal(y[2:], x[2:]) and not np.allclose(y[:2], x[:2]), k


def test_translation_shifts_with_zero_padding_and_cutout_zeroes_half_the_side():
    x = _images(2)
    # u 0 -> the largest shift up/left: 16 * 1/8 = 2 pixels, zeros come in at the bottom/right.
    y = aug.diff_augment(x, _draw(2, on=(3,), _TX=0.0, _TY=0.0), 0.5).numpy()
    np.testing.assert_array_equal(y[:, :14, :14], x[:, 2:, 2:])
    assert not y[:, 14:].any() and not y[:, :, 14:].any()
    # Middle draw -> no shift at all.
    assert np.array_equal(aug.diff_augment(x, _draw(2, on=(3,), _TX=0.5, _TY=0.5), 0.5).numpy(), x)
    # Cutout at the centre: an 8x8 square of zeros, rows/cols 4..11, the rest untouched.
    y = aug.diff_augment(x, _draw(2, on=(4,), _CX=0.5, _CY=0.5), 0.5).numpy()
    assert not y[:, 4:12, 4:12].any()
    mask = np.ones((16, 16), bool)
    mask[4:12, 4:12] = False
    np.testing.assert_array_equal(y[:, mask], x[:, mask])


def test_colour_ops_have_the_reference_ranges():
    x = _images(3)
    for v, shift in ((0.0, -0.5), (1.0 - 1e-7, 0.5)):  # brightness: + U(-0.5, 0.5)
        y = aug.diff_augment(x, _draw(3, on=(0,), _BRIGHT=v), 0.5).numpy()
        np.testing.assert_allclose(y - x, shift, atol=1e-5)
    y = aug.diff_augment(x, _draw(3, on=(1,), _SAT=0.0), 0.5).numpy()  # saturation x 0: grey
    np.testing.assert_allclose(y, np.repeat(x.mean(3, keepdims=True), 3, axis=3), atol=1e-6)
    y = aug.diff_augment(x, _draw(3, on=(2,), _CONTRAST=1.0 - 1e-7), 0.5).numpy()  # contrast x 1.5
    m = x.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(y, (x - m) * 1.5 + m, atol=1e-5)
    np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), m.ravel(), atol=1e-5)  # the mean stays


def test_gradients_flow_through_to_the_images_and_slices_match_the_whole_batch():
    import tensorflow as tf

    x = tf.constant(_images(4))
    u = tf.random.stateless_uniform([4, aug.DRAWS], seed=[3, 4])
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(aug.diff_augment(x, u, 0.7) ** 2)
    g = tape.gradient(loss, x).numpy()
    assert np.isfinite(g).all() and np.abs(g).sum() > 0
    # Per sample: two replicas' halves of the global draw give the global batch's images.
    whole = aug.diff_augment(x, u, 0.7).numpy()
    halves = np.concatenate([aug.diff_augment(x[i:i + 2], u[i:i + 2], 0.7).numpy() for i in (0, 2)])
    np.testing.assert_array_equal(halves, whole)


def test_ada_adjust_moves_p_by_the_papers_rate_and_clips():
    rate = 32 * 4 / (100 * 1000)
    assert float(aug.ada_adjust(0.5, 0.9, 0.6, 32, 4, 100)) == pytest.approx(0.5 + rate)
    assert float(aug.ada_adjust(0.5, 0.1, 0.6, 32, 4, 100)) == pytest.approx(0.5 - rate)
    assert float(aug.ada_adjust(0.0, 0.1, 0.6, 32, 4, 100)) == 0.0
    assert float(aug.ada_adjust(1.0, 0.9, 0.6, 32, 4, 0.001)) == 1.0


# -- the step and the loop ----------------------------------------------------


def _state(run: Path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "checkpoints")))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if not k.startswith(("_CHECKPOINTABLE", "save_counter"))}  # how many saves: not training state


def _p(state: dict) -> float:
    return float(next(v for k, v in state.items() if k.startswith("augment_p/")))


@pytest.mark.slow
def test_ada_raises_p_when_d_overfits_and_lowers_it_when_d_cannot_tell(data16, tmp_path):
    from dcgan_cli.training.loop import train

    # Fast ADA (p moves 8 / 100 = 0.08 a step) so a few steps show the direction.
    fast = dict(augment="ada", augment_p=0.5, ada_kimg=0.1, ada_interval=1, epochs=1, steps_per_epoch=6)
    # D at 50x G's rate memorises 24 images at once: r_t -> 1, over the 0.6 target.
    strong = train(tiny_config(data16, tmp_path / "a", lr_d=1e-2, lr_g=1e-5, **fast), quiet=True, log=lambda m: None)
    # D barely learning: its signs on real images stay mixed, r_t under 0.6.
    weak = train(tiny_config(data16, tmp_path / "b", lr_d=1e-7, lr_g=1e-3, **fast), quiet=True, log=lambda m: None)
    rs, rw = _metrics(strong)[-1], _metrics(weak)[-1]
    assert rs["r_t"] > 0.6 > rw["r_t"]
    assert _p(_state(strong)) > 0.5 > _p(_state(weak))
    saved = json.loads((strong / "config.json").read_text())
    assert (saved["augment"], saved["augment_p"]) == ("ada", 0.5)


@pytest.mark.slow
def test_resume_with_ada_gives_the_same_weights_and_p_as_one_run(data16, tmp_path):
    from dcgan_cli.training.loop import train

    # Interval 4 over 3-step epochs: the interruption at step 2 and the epoch ends fall mid-interval,
    # so ADA's running sums must come back from the checkpoint too. Flips and EMA on as well.
    cfg = tiny_config(data16, tmp_path / "a", epochs=3, augment="ada", augment_p=0.3, ada_kimg=0.2, ada_interval=4,
                      flip=True, ema=0.5)
    straight = train(cfg, quiet=True, log=lambda m: None)
    cfg_b = cfg.replace(runs_dir=str(tmp_path / "b"))
    run = train(cfg_b, quiet=True, log=lambda m: None, max_steps=2)
    run = train(cfg_b, resume=run, quiet=True, log=lambda m: None, max_steps=5)
    run = train(cfg_b, resume=run, quiet=True, log=lambda m: None)
    a, b = _state(straight), _state(run)
    assert a.keys() == b.keys() and any(k.startswith("ada_sums/") for k in a)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert _p(a) == _p(b) != 0.3  # p moved, and the same way
    ra, rb = _metrics(straight), _metrics(run)
    assert [r["step"] for r in rb] == [3, 6, 9]
    # An epoch row averages the steps run since the (re)start: compare the last epoch, whole in both runs.
    for k in ("augment_p", "r_t", "d_loss"):
        assert rb[-1][k] == pytest.approx(ra[-1][k], rel=1e-5, abs=1e-6), k


@pytest.mark.slow
def test_no_augmentation_adds_nothing_to_the_step(data16, tmp_path):
    import tensorflow as tf

    from dcgan_cli.gan.step import build_gan, make_train_step

    batch = tf.zeros([8, 16, 16, 3], tf.uint8)
    ops = {}
    for mode in ("none", "diffaug"):
        cfg = tiny_config(data16, tmp_path, augment=mode).with_augment(24)
        gan = build_gan(cfg, "fp32")
        step = make_train_step(cfg, gan, tf.distribute.get_strategy(), "fp32")
        graph = step.get_concrete_function(batch).graph
        ops[mode] = {op.type for op in graph.get_operations()}
        out = step(batch)
        extra = {"augment_p", "r_t"} if mode != "none" else set()
        assert set(out) == {"d_loss", "g_loss", "d_real", "d_fake"} | extra
        assert gan.augment_p is None  # diffaug's p is a constant: nothing new in the checkpoint
    # The plain step holds no uniform draws beyond today's, no gathers; diffaug's does.
    assert "GatherV2" not in ops["none"] and "GatherV2" in ops["diffaug"]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_the_augmented_step_runs_in_mixed_precision(data16, tmp_path, precision):
    import tensorflow as tf

    from dcgan_cli.gan.step import build_gan, make_train_step

    cfg = tiny_config(data16, tmp_path, augment="ada", augment_p=0.5, ada_interval=1, ada_kimg=0.1)
    gan = build_gan(cfg, precision)
    step = make_train_step(cfg, gan, tf.distribute.get_strategy(), precision)
    batch = tf.cast(tf.random.stateless_uniform([8, 16, 16, 3], [0, 1], maxval=256, dtype=tf.int32), tf.uint8)
    for _ in range(2):
        out = {k: float(v) for k, v in step(batch).items()}
    assert all(np.isfinite(v) for v in out.values()) and out["augment_p"] != 0.5  # p moved after step 1
    assert float(gan.augment_p.numpy()) != out["augment_p"]  # and again after step 2


def test_auto_is_ada_on_small_data_and_none_on_large():
    from dcgan_cli.config import SMALL_DATA_BELOW, TrainConfig

    cfg = TrainConfig()
    assert cfg.augment == "auto"
    assert (cfg.with_augment(80).augment, cfg.with_augment(80).augment_p) == ("ada", 0.0)
    assert cfg.with_augment(SMALL_DATA_BELOW).augment == "none"
    assert cfg.replace(augment="diffaug").with_augment(10).augment_p == 1.0
    assert cfg.replace(augment="diffaug", augment_p=0.4).with_augment(10).augment_p == 0.4
    # A run saved before augmentation existed resumes without it.
    old = {k: v for k, v in cfg.to_dict().items() if not k.startswith(("augment", "ada_"))}
    assert TrainConfig.from_dict(old).augment == "none"


@pytest.mark.subprocess
@pytest.mark.slow
def test_two_replicas_augment_like_one_device(data16, tmp_path):
    overrides = dict(epochs=1, steps_per_epoch=3, augment="ada", augment_p=0.5, ada_kimg=0.1, ada_interval=1,
                     flip=True)
    proc = subprocess.run([sys.executable, str(HERE / "two_replicas.py"), str(data16), str(tmp_path / "runs"),
                           json.dumps(overrides), "default,mirrored"], capture_output=True, text=True, timeout=600,
                          cwd=HERE.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(proc.stdout.strip().splitlines()[-1])
    one, two = _state(Path(runs["default"])), _state(Path(runs["mirrored"]))
    assert one.keys() == two.keys()
    for k in one:
        np.testing.assert_allclose(two[k], one[k], rtol=1e-4, atol=1e-5, err_msg=k)
    assert _p(one) != 0.5


# -- the command line ---------------------------------------------------------


def test_train_flags_resolve_in_the_dry_run(data16, tmp_path):
    def dry(*args):
        r = CliRunner().invoke(app, ["train", "--data", str(data16), "--runs-dir", str(tmp_path), "--dry-run", *args])
        assert r.exit_code == 0, r.output
        return json.loads(r.output)

    auto = dry()
    assert (auto["augment"], auto["augment_p"]) == ("ada", 0.0)  # 24 images: ada
    assert (dry("--augment", "diffaug")["augment_p"]) == 1.0
    assert (dry("--augment", "ada", "--augment-p", "0.25")["augment_p"]) == 0.25
    assert dry("--preset", "demo")["augment"] == "none"  # pinned


def test_bad_augment_flags_are_one_line_usage_errors(data16, tmp_path):
    base = ["train", "--data", str(data16), "--runs-dir", str(tmp_path), "--dry-run"]
    one_line_error(CliRunner().invoke(app, base + ["--augment", "always"]), "'--augment'", code=2)
    one_line_error(CliRunner().invoke(app, base + ["--augment-p", "1.5"]), "'--augment-p'", code=2)
    one_line_error(CliRunner().invoke(app, ["bench", "--parts", "quality", "--quality-augment", "ada,more"]),
                   "'--quality-augment'", code=2)
    assert not list(tmp_path.iterdir())
