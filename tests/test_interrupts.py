"""SIGINT and SIGTERM take one path in every command: temp files removed, "Interrupted." (exit 130); in
training a second signal still says what was saved and the exact command that resumes from it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from helpers import copy_run, wait_for_checkpoint

# A command of the real app's kind (the same _App wrapper every `dcgan` command goes through) that is
# writing an output through fsutil.atomic_path when the signal comes.
WRITER = """
import sys, time
from dcgan_cli.cli import _App
from dcgan_cli.fsutil import atomic_path

app = _App()

@app.command()
def download(out: str):  # named as the one command that does not import TensorFlow first: a fast test
    with atomic_path(out) as tmp:
        tmp.write_bytes(b"half an image")
        print("writing", flush=True)
        time.sleep(60)

app()
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_write_leaves_no_temp_file(tmp_path, signum):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "out.webp")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    try:
        assert proc.stdout.readline().strip() == "writing", proc.communicate()
        assert [p.name for p in tmp_path.iterdir()][0].startswith(".out."), "the temp file is there meanwhile"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and err.strip() == "Interrupted.", (proc.returncode, err)
    assert list(tmp_path.iterdir()) == [], "no .out.xxxx.webp left beside the output"


@pytest.mark.slow
@pytest.mark.subprocess
def test_training_interrupted_twice_resumes_from_the_checkpoint_it_names(tiny_run, data16, tmp_path):
    from dcgan_cli.cli import app

    run = copy_run(tiny_run, tmp_path / "runs", data=data16)
    proc = subprocess.Popen([sys.executable, "-m", "dcgan_cli", "train", "--resume", str(run), "--epochs", "100000",
                             "--checkpoint-every-steps", "2", "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    try:
        wait_for_checkpoint(tmp_path / "runs", proc, step=8, timeout=240)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)  # two signals at once would be one
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    # Either the second signal came while the stop's checkpoint was written (it waited for it), or it left
    # mid-step: both name the checkpoint on disk and the command.
    said = re.search(r"(?:checkpoint written to|the newest checkpoint is) (\S+?)(?: \(step \d+\))?\. "
                     rf"Continue with: (dcgan train --resume {re.escape(str(run))})$", err.strip())
    assert said and "Traceback" not in err, err[-2000:]
    print(said.group(0))  # for -s: which of the two it was
    named = said.group(1)
    step = int(named.rsplit("-", 1)[1])
    assert step >= 8 and (run / "checkpoints" / f"ckpt-{step}.index").is_file()
    epochs = str(step // 3 + 1)  # the tiny run: 3 steps per epoch; to the end of the next one
    r = CliRunner().invoke(app, [*said.group(2).split()[1:], "--epochs", epochs, "--quiet"])
    assert r.exit_code == 0, r.output
    assert f"Resumed from {named} at step {step}" in r.output, r.output
