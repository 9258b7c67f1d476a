"""The training-health monitor: its detectors as pure functions, then on real tiny runs made to fail each way
(and on a healthy one), and --on-collapse stop / rollback end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import dcgan_here, metrics, one_line_error, tiny_config
from dcgan_cli.gan import health
from dcgan_cli.runs import checkpoints
from dcgan_cli.runs import layout


def rows(n, every=20, **values):
    """n epoch rows of `every` steps each; values are constants or functions of the epoch index."""
    out = []
    for i in range(n):
        r = {"epoch": i + 1, "step": every * (i + 1), "d_loss": 1.0, "g_loss": 1.0, "d_real": 0.6, "d_fake": 0.4}
        r.update({k: v(i) if callable(v) else v for k, v in values.items()})
        out.append(r)
    return out


# -- the detectors, without training ------------------------------------------------------------------


def test_the_window_needs_enough_epochs_and_enough_steps():
    assert health.window(rows(2, every=100)) == ([], [])  # two epochs are not "several"
    assert health.window(rows(5, every=10)) == ([], [])  # 50 steps are too few
    w, steps = health.window(rows(8, every=10))
    assert [r["step"] for r in w] == [30, 40, 50, 60, 70, 80] and sum(steps) == 60  # steps 21-80
    w, steps = health.window(rows(4, every=1000))
    assert [r["step"] for r in w] == [2000, 3000, 4000] and steps == [1000, 1000, 1000]


def test_d_winning_needs_d_near_1_g_near_0_and_g_loss_climbing():
    winning = dict(d_real=0.97, d_fake=0.03, g_loss=lambda i: 3 + i)
    found = health.d_winning(rows(3, **winning))
    assert "the discriminator is winning: D(x) 0.970, D(G(z)) 0.030 over steps 1-60" in found
    assert health.d_winning(rows(2, **winning)) is None  # not several epochs yet
    assert health.d_winning(rows(3, **{**winning, "g_loss": lambda i: 6 - i})) is None  # G recovering
    assert health.d_winning(rows(3, **{**winning, "d_fake": 0.3})) is None  # G still fools D
    assert health.d_winning(rows(3, **{**winning, "d_real": 0.8})) is None
    assert health.d_winning(rows(20)) is None  # a healthy run


def test_under_the_hinge_loss_d_wins_at_its_margin():
    # Measured: D at 2e-3 against G at 1e-6 with --loss hinge --spectral-norm --r1-gamma 1 sits at
    # D(x) 0.82, D(G(z)) 0.13-0.16 with its loss at 0.003: won, though never near the BCE zone's 0.9 / 0.1.
    won = dict(d_real=0.82, d_fake=0.15, g_loss=lambda i: 1.6 + 0.2 * i)
    hinge = health.winning_zone("hinge")
    assert health.winning_zone("nonsaturating") == (health.D_REAL_HIGH, health.D_FAKE_LOW)
    assert health.d_winning(rows(3, **won)) is None  # the BCE zone misses it
    assert "D(x) 0.820, D(G(z)) 0.150" in health.d_winning(rows(3, **won), hinge)
    assert health.d_winning(rows(3, **{**won, "d_real": 0.7}), hinge) is None  # reals inside the margin
    assert health.d_winning(rows(20), hinge) is None  # a healthy run


def test_collapse_needs_both_pixels_and_features_after_the_warm_up():
    after = health.COLLAPSE_WARMUP_STEPS
    assert "mode collapse: the sample grid's diversity is 0.05x the real images' in pixels and 0.02x" in \
        health.collapse(0.05, 0.02, after)
    assert health.collapse(0.05, 0.02, after - 1) is None  # an untrained generator's images are all alike
    assert health.collapse(0.05, 0.9, after) is None and health.collapse(0.9, 0.05, after) is None


def test_diverging_from_saturated_losses_or_big_weights():
    assert "mean g loss 30 (over 17" in health.diverging(rows(1, g_loss=30.0)[0], None, 1e4)
    assert "mean d loss nan" in health.diverging(rows(1, d_loss=float("nan"))[0], None, 1e4)
    assert "w reached |w| = 2e+03 (over 1000" in health.diverging(rows(1)[0], ("w", 2000.0), 1e4)
    assert health.diverging(rows(1, g_loss=16.0)[0], ("w", 900.0), 1e4) is None


def test_diversity_is_the_mean_pairwise_distance():
    assert health.diversity(np.eye(3)) == pytest.approx(np.sqrt(2))
    assert health.diversity(np.ones((5, 4, 4, 3))) == 0.0
    assert health.diversity(np.zeros((1, 3))) == 0.0
    x = np.random.default_rng(0).normal(size=(6, 10))
    brute = np.mean([np.linalg.norm(x[i] - x[j]) for i in range(6) for j in range(i + 1, 6)])
    assert health.diversity(x) == pytest.approx(brute)


# Epoch rows (step, D(x), D(G(z)), G loss, D loss) of two long runs of the dcgan preset (`dcgan bench --parts
# quality --quality-curve 10`, seed 0): the digits (1,797; 300-step epochs), whose FD fell 1.57 -> 0.27 over
# 3,000 steps, and the 100 lfw faces (1,000-step epochs of a 10,000-step run), whose FD went 0.138, 0.142,
# 1.29, 2.99, 5.03 with the samples flagged as copies from step 2,000 on: D memorised the faces.
LONG_DIGITS = [(300, 0.717, 0.312, 2.182, 0.852), (600, 0.680, 0.321, 1.609, 0.907), (900, 0.694, 0.305, 1.655, 0.849),
               (1200, 0.694, 0.306, 1.670, 0.872), (1500, 0.704, 0.296, 1.760, 0.843),
               (1800, 0.725, 0.274, 1.861, 0.779), (2100, 0.745, 0.255, 2.024, 0.722),
               (2400, 0.742, 0.259, 2.044, 0.751), (2700, 0.757, 0.243, 2.116, 0.701),
               (3000, 0.742, 0.257, 2.047, 0.758)]
LONG_FACES = [(1000, 0.875, 0.132, 3.376, 0.319), (2000, 0.926, 0.074, 4.708, 0.257),
              (3000, 0.944, 0.057, 4.568, 0.143), (4000, 0.962, 0.040, 5.494, 0.129),
              (5000, 0.989, 0.011, 5.904, 0.039)]


def test_the_detectors_on_two_long_runs_rows():
    def replay(table):
        mon = health.Monitor(np.zeros((2, 2, 2, 1), np.uint8), lambda x: x.reshape(len(x), -1), 1e4)
        return [([k for k, _ in mon.examine(dict(step=s, d_real=x, d_fake=f, g_loss=g, d_loss=d))], mon.healthy)
                for s, x, f, g, d in table]

    assert replay(LONG_DIGITS) == [([], True)] * 10
    assert replay(LONG_FACES) == [([], True), ([], False), (["d_winning"], False), ([], False), ([], False)]


def test_a_finding_is_reported_once_until_it_clears():
    mon = health.Monitor(np.random.default_rng(0).integers(0, 255, (4, 8, 8, 3)).astype(np.uint8),
                         lambda x: x.reshape(len(x), -1).astype(float), 1e4)
    sick = dict(d_real=0.97, d_fake=0.03, g_loss=lambda i: 3 + i)
    kinds = lambda rs: [k for r in rs for k, _ in mon.examine(r)]  # noqa: E731
    assert kinds(rows(5, **sick)) == ["d_winning"] and not mon.healthy  # fired at epoch 3, not again at 4 and 5
    assert kinds([{**r, "step": r["step"] + 100} for r in rows(5)]) == [] and mon.healthy  # it cleared
    assert kinds([{**r, "step": r["step"] + 200} for r in rows(5, **sick)]) == ["d_winning"]  # so it may fire again
    mon.forget_after(20)  # a rollback: what came after step 20 never happened
    assert [r["step"] for r in mon.rows] == [20] and not mon.active
    measured = mon.measure(mon.real[[0, 0, 0, 0]])  # four copies of one real image: no diversity at all
    assert measured == {"pixel_diversity": 0.0, "feature_diversity": 0.0}
    alike = health.Monitor(mon.real[[1, 1]], mon.features, 1e4)  # real images all alike: nothing to fall below
    assert alike.measure(mon.real[[0, 0]]) == {"pixel_diversity": float("inf"), "feature_diversity": float("inf")}


# -- real tiny runs: made to fail each way, and a healthy one ------------------------------------------

# 20 steps an epoch, a grid (so a diversity check) and a checkpoint every epoch.
HEALTHY = dict(epochs=6, steps_per_epoch=20, num_samples=16)
D_WINS = dict(epochs=4, steps_per_epoch=20, num_samples=16, lr_g=1e-6, lr_d=2e-3)  # G barely moves, D learns fast
DIVERGES = dict(epochs=2, steps_per_epoch=20, num_samples=16, lr_g=0.5, lr_d=0.5)  # absurd rates
# Rates 750x the paper's: within 20 steps every sample is the same image (the generator ignores z), while the
# losses stay finite and under the divergence line (G loss 6-9); D wins too.
COLLAPSES = dict(epochs=5, steps_per_epoch=20, num_samples=16, lr_g=0.15, lr_d=0.15)


def train_tiny(data, tmp_path, **kw):
    """(the run dir, the log lines, the error or None) of a real tiny run on `data`."""
    from dcgan_cli.errors import DcganError
    from dcgan_cli.training.loop import train

    logs, runs = [], tmp_path / "runs"
    try:
        run, error = train(tiny_config(data, runs, **kw), quiet=True, log=logs.append), None
    except DcganError as e:
        run, error = next(runs.iterdir()), e
    return run, logs, error


def epoch_rows(run: Path) -> list[dict]:
    return [r for r in metrics(run) if "d_loss" in r]


def health_records(run: Path) -> list[dict]:
    return [r["health"] for r in metrics(run) if "health" in r]


def findings(run: Path) -> list[str]:
    return [f["kind"] for h in health_records(run) for f in h["findings"]]


@pytest.mark.slow
def test_a_healthy_run_triggers_nothing(data16, tmp_path):
    run, logs, error = train_tiny(data16, tmp_path, **HEALTHY)
    assert error is None and not [m for m in logs if m.startswith("Health")]
    assert health_records(run) == []
    rows = epoch_rows(run)
    assert [r["step"] for r in rows] == [20, 40, 60, 80, 100, 120] and all(r["healthy"] for r in rows)
    assert min(min(r["pixel_diversity"], r["feature_diversity"]) for r in rows[-2:]) > health.COLLAPSE_RATIO
    assert max(r["largest_weight"] for r in rows) < 2
    assert not (run / layout.HEALTHY_DIR).exists()  # kept only for --on-collapse rollback
    print("monitor seconds per epoch:", [r["health_seconds"] for r in rows])


def _tensorboard_tags(run: Path) -> set[str]:
    import tensorflow as tf

    tags = set()
    for f in (run / layout.TENSORBOARD_DIR).glob("events.*"):
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            tags |= {v.tag for v in event.summary.value}
    return tags


@pytest.mark.slow
def test_mode_collapse_is_reported_from_the_grid_in_pixels_and_features(data16, tmp_path):
    run, logs, error = train_tiny(data16, tmp_path, **COLLAPSES)
    assert error is None and "collapse" in findings(run) and "diverging" not in findings(run)
    record = next(h for h in health_records(run) if "collapse" in [f["kind"] for f in h["findings"]])
    assert record["step"] == health.COLLAPSE_WARMUP_STEPS  # the first check after the warm-up
    row = next(r for r in epoch_rows(run) if r["step"] == record["step"])
    assert row["pixel_diversity"] < 0.05 and row["feature_diversity"] < 0.05 and not row["healthy"]
    line = next(m for m in logs if "mode collapse" in m)
    assert "try a lower --lr-g or `--augment ada`" in line and f"dcgan train --resume {run} --lr-g 0.075" in line


@pytest.mark.slow
def test_divergence_is_reported_before_any_nan(data16, tmp_path):
    run, logs, error = train_tiny(data16, tmp_path, **DIVERGES)
    assert error is None
    assert "diverging" in findings(run)
    line = next(m for m in logs if "training is diverging" in m)
    assert f"lower both rates; continue with: dcgan train --resume {run} --lr-g 0.25 --lr-d 0.25" in line


# -- --on-collapse ----------------------------------------------------------------------------------


def test_a_bad_on_collapse_is_one_usage_line_and_a_good_one_is_saved(data16, tmp_path):
    one_line_error(dcgan_here("train", "--data", data16, "--on-collapse", "retry", "--dry-run"),
                   "Invalid value for '--on-collapse'", "'warn', 'stop', 'rollback'", code=2)
    r = dcgan_here("train", "--data", data16, "--on-collapse", "rollback", "--dry-run")
    assert r.returncode == 0 and json.loads(r.stdout)["on_collapse"] == "rollback"
    from dcgan_cli.errors import DcganError

    with pytest.raises(DcganError, match="on-collapse must be one of warn, stop, rollback, got 'never'"):
        tiny_config(data16, tmp_path, on_collapse="never")


@pytest.mark.slow
def test_d_winning_is_reported_and_on_collapse_stop_ends_the_run_with_its_checkpoint(data16, tmp_path):
    """D at 2e-3, G at 1e-6: D(x) 0.99 and D(G(z)) 0.02 from step 40; the finding at step 60 stops the run."""
    runs = tmp_path / "runs"
    r = dcgan_here("train", "--data", data16, "--runs-dir", runs, "--latent-dim", 8, "--g-filters", 8, "--d-filters",
                   8, "--batch-size", 8, "--steps-per-epoch", 20, "--epochs", 4, "--precision", "fp32", "--strategy",
                   "default", "--checkpoint-every-epochs", 1, "--sample-every-epochs", 1, "--lr-g", 1e-6, "--lr-d",
                   2e-3, "--on-collapse", "stop", "--quiet")
    line = one_line_error(r, "training stopped at step 60 (--on-collapse stop): the discriminator is winning",
                          "ckpt-60 is kept", "--augment ada")
    run = next(runs.iterdir())
    assert f"continue with: dcgan train --resume {run} --lr-d 0.001" in line
    assert "the last healthy checkpoint is ckpt-20" in line  # step 40 was already in D's winning zone
    (logged,) = [m for m in r.stdout.splitlines() if m.startswith("Health")]
    assert "Health: the discriminator is winning: D(x) 0.9" in logged and "(epoch 3, step 60)" in logged
    (record,) = health_records(run)
    assert record["step"] == 60 and record["action"] == "stop"
    assert [f["kind"] for f in record["findings"]] == ["d_winning"]
    assert [r["healthy"] for r in epoch_rows(run)] == [True, False, False]
    tags = _tensorboard_tags(run)
    assert {"health/d_winning", "health/healthy", "health/pixel_diversity", "health/feature_diversity"} <= tags
    assert checkpoints.checkpoint_paths(run / layout.CKPT_DIR)[-1].endswith("ckpt-60")
    assert not (run / layout.GENERATOR_FILE).exists()  # not finished: nothing exported
    layout.lock_run(run).release()  # the run's lock was released: it can be resumed


def _variables(path: str) -> dict[str, np.ndarray]:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(path)
    # Every weight, Adam moment, batch-norm statistic and counter; not the rates (lowered) or the save counter.
    names = [n for n, _ in tf.train.list_variables(path)
             if not any(s in n for s in ("_learning_rate", "save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"))]
    return {n: reader.get_tensor(n) for n in names}


@pytest.mark.slow
def test_on_collapse_rollback_restores_the_healthy_checkpoint_with_halved_rates_once(data16, tmp_path):
    import os

    run, logs, error = train_tiny(data16, tmp_path, **{**D_WINS, "epochs": 8}, on_collapse="rollback")
    # D wins by step 60; epoch 2 (step 40) was already in D's winning zone, so ckpt-20 is the healthy one.
    rolled = [m for m in logs if m.startswith("Health: rolled back")]
    assert rolled == ["Health: rolled back from step 60 to ckpt-20 (--on-collapse rollback) with both learning rates "
                      "halved (lr-g 1e-06 -> 5e-07, lr-d 0.002 -> 0.001: smaller steps, the same G/D ratio); "
                      "recorded in config.json's history"], logs
    history = layout.read_history(run)
    assert [e["event"] for e in history] == ["start", "rollback"]
    assert history[1]["step"] == 20 and history[1]["from_step"] == 60
    assert history[1]["changed"] == {"lr_g": [1e-6, 5e-7], "lr_d": [2e-3, 1e-3]}
    assert history[1]["because"][0]["kind"] == "d_winning"
    cfg = layout.load_config(run)
    assert (cfg.lr_g, cfg.lr_d) == (5e-7, 1e-3)  # a later --resume goes on at the lowered rates
    # The checkpoint written right after the rollback holds the healthy checkpoint's weights (other files).
    healthy, again = str(run / layout.HEALTHY_DIR / "ckpt-20"), str(run / layout.CKPT_DIR / "ckpt-20")
    assert os.stat(healthy + ".index").st_ino != os.stat(again + ".index").st_ino
    a, b = _variables(healthy), _variables(again)
    assert a.keys() == b.keys() and len(a) > 40 and all(np.array_equal(a[k], b[k]) for k in a)
    # Halving did not stop D winning: the second finding would roll back to ckpt-20 again, so it stops instead.
    assert isinstance(error, health.TrainingStopped)
    assert "already rolled back to ckpt-20 1 time(s) with lower rates, and it went wrong again" in str(error)
    steps = [r["step"] for r in epoch_rows(run)]
    assert steps == sorted(set(steps)) and steps[-1] >= 60  # epochs after ckpt-20 were logged once, after the rollback
    rolled_back, stopped = health_records(run)
    assert rolled_back["step"] == 20 and rolled_back["from_step"] == 60 and rolled_back["action"] == "rollback"
    assert stopped["action"] == "stop" and stopped["step"] >= 60


@pytest.mark.slow
def test_on_collapse_rollback_after_a_nan_goes_back_to_the_healthy_checkpoint_once(data16, tmp_path):
    from dcgan_cli.runs.checkpoints import NonFiniteLoss
    from dcgan_cli.training.loop import train

    cfg = tiny_config(data16, tmp_path / "runs", epochs=1, steps_per_epoch=20, num_samples=16, on_collapse="rollback")
    run = train(cfg, quiet=True, log=lambda m: None)
    assert checkpoints.checkpoint_paths(run / layout.HEALTHY_DIR)[-1].endswith("ckpt-20")
    logs = []
    with pytest.raises(NonFiniteLoss, match="stopped without checkpointing") as caught:  # the second NaN stands
        train(cfg.replace(epochs=3, lr_g=1e30, lr_d=1e30), resume=run, quiet=True, log=logs.append)
    rolled = [m for m in logs if m.startswith("Health: rolled back")]
    assert len(rolled) == 1 and " to ckpt-20 " in rolled[0] and "lr-g 1e+30 -> 5e+29" in rolled[0], logs
    events = layout.read_history(run)
    assert [e["event"] for e in events] == ["start", "resume", "rollback"] and events[-1]["step"] == 20
    assert events[-1]["because"][0]["what"].startswith("training diverged: loss became")
    assert "the last good checkpoint, ckpt-20, is kept" in str(caught.value)


def test_on_collapse_rollback_on_several_workers_is_refused_before_training(tmp_path):
    from dcgan_cli.errors import DcganError
    from dcgan_cli.gan.on_collapse import check_workers

    cfg = tiny_config(tmp_path / "data", tmp_path / "runs", on_collapse="rollback")
    with pytest.raises(DcganError, match=r"--on-collapse rollback needs one worker \(this cluster has 2\)"):
        check_workers(cfg, 2)
    check_workers(cfg, 1)
    check_workers(cfg.replace(on_collapse="stop"), 2)  # stop and warn work on a cluster
