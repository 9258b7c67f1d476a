"""Shared fixtures and checks: real tiny images, real tiny preprocessed data, ONE real tiny trained run,
one local HTTP server, and the one check of a refused command's error line.

Fixtures (pytest finds them here):
    image_folder, data16   24 face-like images, and the same preprocessed to 16x16 RGB shards (session).
    tiny_run               one finished tiny run, trained once per test process; read it, never write it.
    tiny_run_copy          a private copy of tiny_run in the test's tmp_path, to resume, damage or evaluate.
    server                 a local HTTP server (fake_http.FakeServer), closed after the test.
    fast_backoff           download retries without the real back-off waits (modules opt in).
Helpers (import them: `from conftest import ...`):
    tiny_config, write_faces, copy_run, snapshot, ok, one_line_error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image


def write_faces(folder, n=24, size=(40, 48), seed=0):
    """n small RGB images with a face-like blob, so the data is not pure noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        cx, cy = w / 2 + rng.normal(0, 2), h / 2 + rng.normal(0, 2)
        blob = np.exp(-(((xx - cx) / (w / 4)) ** 2 + ((yy - cy) / (h / 3)) ** 2))
        img = (blob[..., None] * rng.uniform(120, 255, 3) + rng.normal(0, 10, (h, w, 3))).clip(0, 255)
        Image.fromarray(img.astype(np.uint8)).save(folder / f"img-{i:03d}.png")
    return folder


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    return write_faces(tmp_path_factory.mktemp("images") / "faces")


@pytest.fixture(scope="session")
def data16(tmp_path_factory, image_folder):
    """24 images preprocessed to 16x16 RGB shards."""
    from dcgan_cli.data.preprocess import PreprocessConfig, preprocess

    out = tmp_path_factory.mktemp("processed") / "faces-16"
    preprocess(PreprocessConfig(source=str(image_folder), out=str(out), size=16, crop="center"))
    return out


def tiny_config(data, runs_dir, **kw):
    """A real but tiny training config: 16x16, 8 filters, batch 8."""
    from dcgan_cli.config import TrainConfig

    values = dict(data=str(data), runs_dir=str(runs_dir), image_size=16, channels=3, latent_dim=8, g_filters=8,
                  d_filters=8, batch_size=8, epochs=2, steps_per_epoch=3, num_samples=4, precision="fp32",
                  strategy="default", preset="dcgan", checkpoint_every_epochs=1, sample_every_epochs=1,
                  augment="none")  # tests of augmentation (test_augment.py) ask for it
    values.update(kw)
    return TrainConfig(**values)


# ----------------------------------------------------------------------------
# one trained tiny run


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by relative path: equal snapshots mean nothing was written."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def tiny_run(data16, tmp_path_factory):
    """ONE finished tiny run per test process, alone in its runs dir, on data16: 16x16 RGB, latent 8, EMA 0.9,
    fp32, 2 epochs of 3 steps, so checkpoints ckpt-3 and ckpt-6 (a fall-back exists), a grid per epoch and
    generator.keras. Tests only read it (sample, export, restore); a test that writes to a run (resume,
    damage, evaluate's metrics rows) takes `tiny_run_copy`. The end of the session checks nobody wrote."""
    from dcgan_cli.gan.training import train

    runs = tmp_path_factory.mktemp("tiny-runs")
    run = train(tiny_config(data16, runs, ema=0.9), quiet=True, log=lambda m: None)
    before = snapshot(run)
    yield run
    assert snapshot(run) == before, f"a test wrote into the shared tiny_run {run}: take tiny_run_copy instead"


def copy_run(run: Path, runs_dir: Path, data: Path | None = None) -> Path:
    """A copy of `run` as runs_dir/NAME; with `data`, its config.json names that data set (a moved run)."""
    copy = Path(shutil.copytree(run, Path(runs_dir) / run.name))
    if data is not None:
        path = copy / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "data": str(data)}, indent=2) + "\n")
    return copy


@pytest.fixture()
def tiny_run_copy(tiny_run, tmp_path):
    """A private copy of `tiny_run` at tmp_path/runs/NAME (same data), free to change."""
    return copy_run(tiny_run, tmp_path / "runs")


# ----------------------------------------------------------------------------
# one local HTTP server


@pytest.fixture()
def server():
    """A real HTTP server on 127.0.0.1 (fake_http.FakeServer); add routes with server.route(path, handler)."""
    from fake_http import FakeServer

    s = FakeServer()
    yield s
    s.close()


@pytest.fixture()
def fast_backoff(monkeypatch):
    """Retries without the real back-off waits. A module opts in: pytestmark = pytest.mark.usefixtures(...)."""
    from dcgan_cli.data.datasets import http

    monkeypatch.setattr(http, "BACKOFF_SECONDS", 0.001)


# ----------------------------------------------------------------------------
# the one check of a command's outcome: CliRunner results and subprocesses alike


def _outcome(result) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a typer.testing Result or a subprocess.CompletedProcess."""
    if isinstance(result, subprocess.CompletedProcess):
        return result.returncode, result.stdout or "", result.stderr or ""
    return result.exit_code, result.stdout, result.stderr


def ok(result):
    """`result` of a command that succeeded (exit 0); if it did not, the assertion shows what it printed."""
    code, out, err = _outcome(result)
    assert code == 0, (code, (out + err)[-3000:])
    return result


def one_line_error(result, *fragments: str, code: int = 1) -> str:
    """The error of a refused command, checked: exit `code`, no traceback, and every fragment in it.

    Exit 1 (the library refused): stderr is a single line starting "Error: ", returned. Exit 2 (a usage
    error): Typer's usage box is a few lines, returned joined into one string.
    """
    status, out, err = _outcome(result)
    assert status == code, (status, (out + err)[-3000:])
    assert "Traceback" not in out + err, (out + err)[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 2:
        text = " ".join(lines)
    else:
        assert len(lines) == 1 and lines[0].startswith("Error: "), err[-2000:]
        text = lines[0]
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return text
