"""The run lifecycle both trainers share (lifecycle.py), seen through the identity trainer and the GAN trainer.

Real tiny training on real files; the lock test runs two real `dcgan identity train --resume` processes.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dcgan_cli.errors import DcganError
from dcgan_cli.identity.config import IdentityConfig
from dcgan_cli.runs import lifecycle
from dcgan_cli.runs.checkpoints import NonFiniteLoss
from helpers import TINY_IDENTITY, tiny_config

PACKAGE = Path(__file__).resolve().parent.parent / "dcgan_cli"
TINY = {**TINY_IDENTITY, "steps_per_epoch": 2}
QUIET = dict(quiet=True, log=lambda m: None)


def _identity_run(digits, runs, **kw):
    from dcgan_cli.identity.train import train_identity

    return train_identity(IdentityConfig(data=str(digits), runs_dir=str(runs), epochs=1, **{**TINY, **kw}),
                          pairs=200, **QUIET)


def test_no_function_of_either_trainer_is_over_80_lines():
    for path in (PACKAGE / "training" / "loop.py", PACKAGE / "gan" / "step.py", PACKAGE / "gan" / "on_collapse.py",
                 PACKAGE / "identity" / "train.py"):
        tree = ast.parse(path.read_text())
        long = [(f.name, f.end_lineno - f.lineno + 1) for f in ast.walk(tree)
                if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.end_lineno - f.lineno + 1 > 80]
        assert long == [], f"{path.name}: {long} (split them into named phases)"


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_identity_resumes_of_one_run_one_is_refused_in_one_line(digits, tmp_path):
    run = _identity_run(digits, tmp_path / "runs")
    cmd = [sys.executable, "-m", "dcgan_cli", "identity", "train", "--resume", str(run), "--epochs", "100000",
           "--quiet"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = run / ".dcgan.lock"
        deadline = time.time() + 120
        while not (lock.exists() and lock.read_text().split()[:1] == [str(first.pid)]):
            assert first.poll() is None, first.communicate()
            assert time.time() < deadline, "the first resume never took the run's lock"
            time.sleep(0.2)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr[-2000:]
        assert len(lines) == 1 and lines[0].startswith("Error: "), second.stderr[-2000:]
        assert f"{run} is in use by another dcgan process writing this run (PID {first.pid})" in lines[0]
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 130, err[-2000:]
    assert f"dcgan identity train --resume {run}" in err
    assert not (run / ".dcgan.lock").exists(), "the lock goes with the process that held it"


@pytest.mark.slow
def test_the_identity_trainer_keeps_the_resume_rule_history_and_last_good(digits, tmp_path):
    from dcgan_cli.identity.train import train_identity

    run = _identity_run(digits, tmp_path / "runs", checkpoint_every_steps=1, keep_checkpoints=1)
    cfg = IdentityConfig.load(run)
    # A Python caller cannot slip another model past --resume either (the rule is FrozenConfig.resumed).
    with pytest.raises(DcganError, match="cannot change --loss when resuming"):
        train_identity(cfg.replace(loss="triplet", epochs=2), resume=run, **QUIET)
    assert sorted(p.name for p in (run / "last-good").iterdir()) == ["checkpoint", "ckpt-2.data-00000-of-00001",
                                                                     "ckpt-2.index"]
    # checkpoints/ lost: the resume falls back to last-good/, and the history says what changed.
    shutil.rmtree(run / "checkpoints")
    logs = []
    train_identity(cfg.replace(epochs=2), resume=run, pairs=200, quiet=True, log=logs.append)
    assert any(f"Resumed from {run / 'last-good'}/ckpt-2 at step 2" in m for m in logs), logs
    assert any("Changed on resume (recorded in identity_config.json's history): epochs 1 -> 2" in m for m in logs)
    history = json.loads((run / "identity_config.json").read_text())["history"]
    assert [e["event"] for e in history] == ["start", "resume"] and history[1]["changed"] == {"epochs": [1, 2]}
    assert IdentityConfig.load(run) == cfg.replace(epochs=2)  # the history is not a setting
    assert [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [2, 4]


def test_both_trainers_refuse_data_of_another_shape_naming_the_preprocess_flags(digits, data16, tmp_path):
    from dcgan_cli.identity.train import train_identity
    from dcgan_cli.training.loop import train

    with pytest.raises(DcganError, match=r"data is 16x16x1 but the config wants 32x32x1.*--size 32`"):
        train_identity(IdentityConfig(data=str(digits), runs_dir=str(tmp_path), **{**TINY, "image_size": 32}),
                       **QUIET)
    with pytest.raises(DcganError, match=r"data is 16x16x3 but the config wants 16x16x1.*--channels 1`"):
        train(tiny_config(data16, tmp_path, channels=1), **QUIET)
    assert not list(tmp_path.iterdir()), "nothing is written before the data is checked"


def test_a_trainer_takes_the_run_to_continue_or_a_new_runs_folder_not_both(data16, tmp_path):
    from dcgan_cli.training.loop import train

    with pytest.raises(TypeError, match="names the run directory to continue"):
        train(tiny_config(data16, tmp_path), resume=True, **QUIET)
    with pytest.raises(ValueError, match="not both"):
        train(tiny_config(data16, tmp_path), tmp_path / "new", resume=tmp_path / "old", **QUIET)


def test_a_new_identity_run_that_fails_before_its_first_checkpoint_is_removed(digits, tmp_path):
    runs = tmp_path / "runs"
    # An absurd rate: the loss or the weights blow up in the first steps, before any checkpoint.
    with pytest.raises(NonFiniteLoss, match="start a new run with a lower --lr"):
        _identity_run(digits, runs, lr=1e38, steps_per_epoch=30)
    assert not list(runs.iterdir()), "the failed run's folder is gone, and with it its number"


def test_stop_signals_first_asks_second_leaves_and_the_handlers_come_back():
    before = signal.getsignal(signal.SIGINT)
    with lifecycle.StopSignals() as signals:
        assert not signals.stopping()
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.stopping() and signals.name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    # Another worker's signal (shared through an all-reduce) stops this one too.
    with lifecycle.StopSignals() as other:
        assert other.stopping(share=lambda mine: True) and other.name == "SIGTERM"
    assert signal.getsignal(signal.SIGINT) is before



def test_a_signal_that_lands_during_the_all_reduce_stops_every_worker_at_the_next_step(tmp_path):
    """The decision is the shared one: a worker must not leave at a step its peers go past."""
    run = lifecycle.Run(tmp_path, "dcgan train --resume R", steps_per_epoch=4, epochs=3, checkpoints=None)

    def reduce_then_signal(mine: bool) -> bool:  # the peers have all sent 0 when the signal arrives
        os.kill(os.getpid(), signal.SIGTERM)
        return mine

    with run.signals:
        assert not run.leave_epoch(4, share=reduce_then_signal)
        assert run.signals.received == signal.SIGTERM
        assert run.epoch_complete(4), "the peers finish the epoch, so this worker must too"
        assert run.leave_epoch(5, share=lambda mine: mine) and not run.epoch_complete(5)
