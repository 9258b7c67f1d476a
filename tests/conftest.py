"""Shared fixtures and hooks: real tiny images, real tiny preprocessed data, ONE real tiny trained run,
the digits data set, one local HTTP server. Helpers that tests call are in helpers.py (`from helpers import`).

Fixtures (pytest finds them here):
    image_folder, data16   24 face-like images, and the same preprocessed to 16x16 RGB shards (session).
    tiny_run               one finished tiny run, trained once per test process; read it, never write it.
    tiny_run_copy          a private copy of tiny_run in the test's tmp_path, to resume, damage or evaluate.
    digits                 scikit-learn's digits as a folder data set with classes, 40 per class (per module).
    server                 a local HTTP server (fake_http.FakeServer), closed after the test.
    fast_backoff           download retries without the real back-off waits (modules opt in).
Hooks:
    _python_processes_are_marked   a test that starts a Python process without the `subprocess` mark fails.
"""

from __future__ import annotations

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from helpers import copy_run, snapshot, tiny_config, write_faces


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


# ----------------------------------------------------------------------------
# one trained tiny run


@pytest.fixture(scope="session")
def tiny_run(data16, tmp_path_factory):
    """ONE finished tiny run per test process, alone in its runs dir, on data16: 16x16 RGB, latent 8, EMA 0.9,
    fp32, 2 epochs of 3 steps, so checkpoints ckpt-3 and ckpt-6 (a fall-back exists), a grid per epoch and
    generator.keras. Tests only read it (sample, export, restore); a test that writes to a run (resume,
    damage, evaluate's metrics rows) takes `tiny_run_copy`. The end of the session checks nobody wrote."""
    from dcgan_cli.training.loop import train

    runs = tmp_path_factory.mktemp("tiny-runs")
    run = train(tiny_config(data16, runs, ema=0.9), quiet=True, log=lambda m: None)
    before = snapshot(run)
    yield run
    assert snapshot(run) == before, f"a test wrote into the shared tiny_run {run}: take tiny_run_copy instead"


@pytest.fixture()
def tiny_run_copy(tiny_run, tmp_path):
    """A private copy of `tiny_run` at tmp_path/runs/NAME (same data), free to change."""
    return copy_run(tiny_run, tmp_path / "runs")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """scikit-learn's digits, 40 per class, preprocessed to 16x16 grey shards labelled by digit: the offline
    stand-in for face identities (train on seven digits, verify on the three never seen)."""
    from dcgan_cli.identity.bench import preprocess_digits

    return preprocess_digits(tmp_path_factory.mktemp("digits"), per_class=40)


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
# the tiers: `make test-fast` leaves out tests marked slow or subprocess (pyproject.toml's markers)


@pytest.fixture(autouse=True)
def _python_processes_are_marked(request, monkeypatch):
    """A test that starts a Python process (`python -m dcgan_cli`, a script, `python -c`) is marked `subprocess`,
    or it fails here saying so: the fast tier stays free of them without anyone keeping a list."""
    if request.node.get_closest_marker("subprocess"):
        return
    real_init = subprocess.Popen.__init__

    def checked(self, args, *a, **kw):
        program = str(args if isinstance(args, (str, bytes, os.PathLike)) else args[0])
        if program == sys.executable or os.path.basename(program).startswith("python"):
            pytest.fail(f"{request.node.nodeid} starts a Python process ({program}): mark it "
                        "@pytest.mark.subprocess", pytrace=False)
        real_init(self, args, *a, **kw)

    monkeypatch.setattr(subprocess.Popen, "__init__", checked)
