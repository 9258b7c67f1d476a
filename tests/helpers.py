"""What more than one test module needs, as plain functions: `from helpers import ...` (pytest puts tests/ on
sys.path: pyproject.toml's `pythonpath`). Fixtures live in conftest.py, which imports from here too.

    write_faces, tiny_config, TINY_IDENTITY    tiny real data and tiny real configs
    copy_run, snapshot, metrics                 a run's files: copy it, freeze it to compare, read its metrics rows
    dcgan, dcgan_here                           `dcgan ARGS` in a fresh process, or in this one (Typer's runner)
    ok, one_line_error                          the one check of a command's outcome
    wait_for_checkpoint                         poll a training process until its checkpoint is on disk
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from dcgan_cli.runs import checkpoints, layout

# ----------------------------------------------------------------------------
# tiny real data and configs


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


def tiny_config(data, runs_dir, **kw):
    """A real but tiny training config: 16x16, 8 filters, batch 8."""
    from dcgan_cli.config import TrainConfig

    values = dict(data=str(data), runs_dir=str(runs_dir), image_size=16, channels=3, latent_dim=8, g_filters=8,
                  d_filters=8, batch_size=8, epochs=2, steps_per_epoch=3, num_samples=4, precision="fp32",
                  strategy="default", preset="dcgan", checkpoint_every_epochs=1, sample_every_epochs=1,
                  augment="none")  # tests of augmentation (test_augment.py) ask for it
    values.update(kw)
    return TrainConfig(**values)


# A tiny identity network (IdentityConfig's fields) on the digits fixture: 7 digits trained, 3 held out.
TINY_IDENTITY = dict(image_size=16, channels=1, width=8, embedding_dim=16, p_identities=7, k_images=4, holdout=3,
                     flip=False, augment=0.0)


# ----------------------------------------------------------------------------
# a run's files


def copy_run(run: Path, runs_dir: Path, data: Path | None = None) -> Path:
    """A copy of `run` as runs_dir/NAME; with `data`, its config.json names that data set (a moved run)."""
    copy = Path(shutil.copytree(run, Path(runs_dir) / run.name))
    if data is not None:
        path = copy / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "data": str(data)}, indent=2) + "\n")
    return copy


def snapshot(root: Path, times: bool = False) -> dict[str, object]:
    """Everything under `root` by relative path: equal snapshots mean nothing was written.

    A folder is "dir", a regular file its bytes (with `times`, its size and modification time instead, so
    that rewriting the same bytes counts too), anything else (a named pipe, a link) its kind, never read.
    """
    seen: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode):
                seen[path.relative_to(root).as_posix()] = "dir"
            elif stat.S_ISREG(st.st_mode):
                seen[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns) if times else path.read_bytes()
            else:
                seen[path.relative_to(root).as_posix()] = oct(stat.S_IFMT(st.st_mode))
    return seen


def metrics(run: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl, in order (epoch rows, health records, evaluation rows)."""
    return [json.loads(line) for line in (Path(run) / layout.METRICS_FILE).read_text().splitlines()]


# ----------------------------------------------------------------------------
# running a command and checking its outcome


def dcgan(*args, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """`dcgan ARGS` in a fresh process (mark the test `subprocess`); kw go to subprocess.run (cwd, env)."""
    return subprocess.run([sys.executable, "-m", "dcgan_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kw)


def dcgan_here(*args, **kw) -> subprocess.CompletedProcess:
    """`dcgan ARGS` in this process (Typer's runner), for tables of cases where a process each is slow.

    kw go to CliRunner.invoke (env: variables to set, None to unset). A Python exception that escaped the
    command fails here, with its traceback: a real process would have printed one.
    """
    from typer.testing import CliRunner

    from dcgan_cli.cli import app

    r = _no_escaped_exception(CliRunner().invoke(app, [str(a) for a in args], **kw))
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)


def _no_escaped_exception(result):
    """`result` of Typer's runner, unless the command raised (the runner catches it: exit 1, stderr empty)."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        raise AssertionError("the command raised:\n" + "".join(traceback.format_exception(*result.exc_info)))
    return result


def _outcome(result) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a typer.testing Result or a subprocess.CompletedProcess."""
    if isinstance(result, subprocess.CompletedProcess):
        return result.returncode, result.stdout or "", result.stderr or ""
    result = _no_escaped_exception(result)
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


# ----------------------------------------------------------------------------
# training processes


def wait_for_checkpoint(runs: Path, procs: subprocess.Popen | Sequence[subprocess.Popen], step: int | None = None,
                        timeout: float = 300, log: Callable[[], str] | None = None) -> Path:
    """The run directory under `runs` once a checkpoint is on disk: the first one, or that of `step`.

    Fails if a process of `procs` exits first (showing `log()`, or what the process printed to its pipes)
    or after `timeout` seconds, a bound against hangs on a busy machine.
    """
    procs = [procs] if isinstance(procs, subprocess.Popen) else list(procs)
    name = f"{checkpoints.checkpoint_name(step)}.index" if step is not None else "checkpoint"
    pattern = f"*/{layout.CKPT_DIR}/{name}"
    deadline = time.monotonic() + timeout
    while not (found := sorted(Path(runs).glob(pattern))):
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"training exited (code {p.returncode}) before its checkpoint: "
                                     f"{log()[-3000:] if log else p.communicate()}")
        assert time.monotonic() < deadline, f"no checkpoint {pattern} under {runs} after {timeout} s"
        time.sleep(0.2)
    return found[0].parent.parent
