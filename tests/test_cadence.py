"""End-of-epoch work on small data sets: checkpoints and grids every N epochs, resolved and recorded.

Real tiny training runs (tests/conftest.py's 24-image data, 3 steps an epoch).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import tiny_config

from dcgan_cli.config import AUTO_CADENCE_STEPS, TrainConfig
from dcgan_cli.training.loop import train

QUIET = dict(quiet=True, log=lambda m: None)


def _ckpt_steps(run):
    return sorted(int(p.name[len("ckpt-"):-len(".index")]) for p in (run / "checkpoints").glob("ckpt-*.index"))


def _samples(run):
    return sorted(p.name for p in (run / "samples").iterdir())


def _rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "d_loss" in x]


def _generator_weights(run):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "checkpoints")))
    names = sorted(n for n in reader.get_variable_to_shape_map() if n.startswith("generator/")
                   and "OPTIMIZER_SLOT" not in n)
    return [reader.get_tensor(n) for n in names]


def test_auto_cadence_follows_the_epoch_length():
    cfg = TrainConfig(batch_size=128)
    assert cfg.with_cadence(202_599).checkpoint_every_epochs == 1  # CelebA: 1,582 steps an epoch
    assert cfg.with_cadence(1_797).checkpoint_every_epochs == -(-AUTO_CADENCE_STEPS // 14)  # sklearn digits: 14 steps
    resolved = cfg.replace(sample_every_epochs=4).with_cadence(1_797)
    assert resolved.sample_every_epochs == 4 and resolved.checkpoint_every_epochs == 15  # a choice given is kept


@pytest.mark.slow
def test_checkpoints_and_grids_at_the_promised_epochs(data16, tmp_path):
    cfg = tiny_config(data16, tmp_path, epochs=5, checkpoint_every_epochs=3, sample_every_epochs=2, keep_checkpoints=10)
    run = train(cfg, **QUIET)
    assert _ckpt_steps(run) == [9, 15]  # end of epoch 3, and the last epoch
    assert _samples(run) == ["epoch-0002.png", "epoch-0004.png", "epoch-0005.png"]
    assert [r["epoch"] for r in _rows(run)] == [1, 2, 3, 4, 5]  # losses are logged every epoch
    assert (run / "losses.png").exists() and (run / "generator.keras").exists()
    saved = json.loads((run / "config.json").read_text())
    assert (saved["checkpoint_every_epochs"], saved["sample_every_epochs"]) == (3, 2)


@pytest.mark.slow
def test_auto_is_resolved_and_recorded_and_the_last_epoch_always_writes(data16, tmp_path):
    cfg = tiny_config(data16, tmp_path, epochs=2, checkpoint_every_epochs=0, sample_every_epochs=0)
    run = train(cfg, **QUIET)
    saved = json.loads((run / "config.json").read_text())
    auto = -(-AUTO_CADENCE_STEPS // 3)
    assert (saved["checkpoint_every_epochs"], saved["sample_every_epochs"]) == (auto, auto)
    assert _ckpt_steps(run) == [6] and _samples(run) == ["epoch-0002.png"]


@pytest.mark.slow
def test_resume_from_an_older_checkpoint_retrains_exactly_and_logs_each_epoch_once(data16, tmp_path):
    cfg = tiny_config(data16, tmp_path, epochs=5, checkpoint_every_epochs=3, sample_every_epochs=5, keep_checkpoints=10)
    straight = train(cfg, **QUIET)

    crashed = train(cfg, **QUIET)
    for p in (crashed / "checkpoints").glob("ckpt-15.*"):  # lost: as if killed before epoch 5's checkpoint
        p.unlink()
    logs = []
    train(TrainConfig.load(crashed / "config.json"), resume=crashed, quiet=True, log=logs.append)
    assert any("Resumed from" in m and "at step 9" in m for m in logs), logs
    assert [r["epoch"] for r in _rows(crashed)] == [1, 2, 3, 4, 5]
    for a, b in zip(_rows(straight), _rows(crashed)):
        assert a["d_loss"] == b["d_loss"] and a["g_loss"] == b["g_loss"]
    for a, b in zip(_generator_weights(straight), _generator_weights(crashed)):
        np.testing.assert_array_equal(a, b)


def test_the_flags_reach_the_config_and_may_change_on_resume(data16, tmp_path, tiny_run):
    from typer.testing import CliRunner

    from dcgan_cli.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["train", "--data", str(data16), "--runs-dir", str(tmp_path), "--sample-every-epochs", "3",
                            "--dry-run"])
    assert r.exit_code == 0, r.output
    cfg = json.loads(r.output)  # 24 images at batch 128: one step an epoch, so auto is every 200 epochs
    assert (cfg["sample_every_epochs"], cfg["checkpoint_every_epochs"]) == (3, AUTO_CADENCE_STEPS)

    r = runner.invoke(app, ["train", "--resume", str(tiny_run), "--checkpoint-every-epochs", "4", "--sample-every-epochs", "2",
                            "--dry-run"])
    assert r.exit_code == 0, r.output
    assert (json.loads(r.output)["checkpoint_every_epochs"], json.loads(r.output)["sample_every_epochs"]) == (4, 2)


def test_config_json_from_before_the_renames_still_loads(tmp_path):
    """A run dir written with the old names (checkpoint_every, sample_every, ...) resumes as before."""
    import json

    from dcgan_cli.config import TrainConfig

    old = {**TrainConfig().to_dict()}
    for new, was in (("checkpoint_every_steps", "checkpoint_every"), ("checkpoint_every_epochs", "checkpoint_epochs"),
                     ("sample_every_epochs", "sample_every"), ("eval_every_epochs", "eval_every")):
        old[was] = old.pop(new) + 3
    (tmp_path / "config.json").write_text(json.dumps(old))
    cfg = TrainConfig.load(tmp_path / "config.json")
    assert (cfg.checkpoint_every_steps, cfg.checkpoint_every_epochs, cfg.sample_every_epochs,
            cfg.eval_every_epochs) == (3, 3, 3, 3)
