"""Hostile inputs through the real command line, one subprocess each, as a user would meet them.

Every case gets its own workspace (the current directory of the command):
copies of a tiny trained run (`run/`), its 16x16 data (`data/`) and a few
images (`faces/`), plus whatever the case breaks. The command must

  - exit 1 (an `Error: ...` from the library) or 2 (a usage error),
  - say so in at most a few lines on stderr, with no traceback,
  - and touch no file: the workspace is snapshotted before and after
    (names, kinds, sizes, modification times), and only what a case lists
    in `may_change` may differ.

Downloads go to a server on 127.0.0.1 (tests/fake_http.py). A full disk is a
real tmpfs and a read-only folder a real read-only mount (tests/fs_faults.py:
root only; those cases skip elsewhere).
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from conftest import tiny_config
from fake_http import FakeServer, file_route, html_route, trickling_route, unsized_route
from fs_faults import read_only, small_disk

# An error: one line (the download's "every mirror failed" lists its mirror: 3 lines). A usage error: Typer's
# usage line, its hint, and the message in a box.
MAX_STDERR_LINES = {1: 4, 2: 6}
TIMEOUT = 240  # seconds: a case that hangs fails (a pipe named .jpg used to hang preprocess forever)
TINY = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "8", "--latent-dim", "8", "--g-filters", "8",
        "--d-filters", "8", "--precision", "fp32", "--quiet"]  # if a train case is wrongly accepted, it ends fast


@dataclass
class Case:
    id: str
    args: list[str]  # after `dcgan`; "{url}" is the local server's root
    setup: Callable[[Path, "Context"], None] | None = None
    says: str = ""  # a piece of the message that must be there (the fix it names)
    must_not_say: str = ""
    may_change: tuple[str, ...] = ()  # globs of workspace paths the command may create or change
    code: tuple[int, ...] = (1, 2)
    mounts: tuple[str, ...] = ()  # "ro:PATH" (read-only) or "disk:PATH:KB" (a small tmpfs), under the workspace


@dataclass
class Context:
    server: FakeServer
    run: Path
    data: Path
    grey: Path
    faces: Path
    routes: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------
# fixtures: one tiny run, one server, shared by every case (each case copies what it breaks)


@pytest.fixture(scope="module")
def context(data16, image_folder, tmp_path_factory):
    from dcgan_cli.data.preprocess import PreprocessConfig, preprocess
    from dcgan_cli.gan.training import train

    root = tmp_path_factory.mktemp("hostile")
    run = train(tiny_config(data16, root / "runs", epochs=1, steps_per_epoch=1), quiet=True, log=lambda m: None)
    grey = root / "grey-16"
    preprocess(PreprocessConfig(source=str(image_folder), out=str(grey), size=16, channels=1), log=lambda m: None)
    server = FakeServer()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(image_folder.iterdir())[:4]:
            zf.writestr(f"faces/{p.name}", p.read_bytes())
        zf.writestr("../../escaped.png", b"x")
    routes = {
        "slip": server.route("/slip.zip", file_route(buf.getvalue())),
        "page": server.route("/page.zip", html_route("<html><title>Welcome to nginx!</title></html>")),
        "noise": server.route("/noise.zip", file_route(np.random.default_rng(0).bytes(5000))),
        "good": server.route("/good.zip", file_route(_faces_zip(image_folder))),
        "big": server.route("/big.zip", unsized_route(_faces_zip(image_folder, noise_kb=600))),
        "trickle": server.route("/trickle.zip", trickling_route(_faces_zip(image_folder), every=0.02, for_seconds=5,
                                                                times=None)),
    }
    yield Context(server, run, data16, grey, image_folder, routes)
    server.close()


def _faces_zip(folder: Path, noise_kb: int = 0) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(folder.iterdir())[:4]:
            zf.writestr(f"faces/{p.name}", p.read_bytes())
        if noise_kb:
            zf.writestr("faces/noise.bin", np.random.default_rng(1).bytes(noise_kb << 10))
    return buf.getvalue()


# ----------------------------------------------------------------------------
# what the cases break


def _text(rel: str, content: str | bytes):
    def setup(ws: Path, ctx: Context) -> None:
        path = ws / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return setup


def _manifest(edit: Callable[[dict], object]):
    def setup(ws: Path, ctx: Context) -> None:
        path = ws / "data/manifest.json"
        m = json.loads(path.read_text())
        m = edit(m) or m
        path.write_text(m if isinstance(m, str) else json.dumps(m))

    return setup


def _truncate_shard(ws: Path, ctx: Context) -> None:
    shard = sorted((ws / "data").glob("*.tfrecord"))[0]
    shard.write_bytes(shard.read_bytes()[:100])


def _fifo_only(ws: Path, ctx: Context) -> None:
    (ws / "pipes").mkdir()
    os.mkfifo(ws / "pipes/face.jpg")


def _not_images(ws: Path, ctx: Context) -> None:
    (ws / "docs").mkdir()
    (ws / "docs/a.jpg").write_text("not a picture")
    (ws / "docs/b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")


def _damaged_zip(ws: Path, ctx: Context) -> None:
    data = _faces_zip(ctx.faces)
    (ws / "photos.zip").write_bytes(data[: len(data) // 2])


def _grey_copy(ws: Path, ctx: Context) -> None:
    shutil.copytree(ctx.grey, ws / "grey")


def _ro_dir(ws: Path, ctx: Context) -> None:
    (ws / "ro").mkdir()


def _mask(side: int, fill: int):
    """A side x side mask PNG, every pixel `fill` (255: missing)."""
    def setup(ws: Path, ctx: Context) -> None:
        from PIL import Image

        Image.fromarray(np.full((side, side), fill, np.uint8)).save(ws / "mask.png")

    return setup


def _latents(shape: tuple[int, ...]):
    def setup(ws: Path, ctx: Context) -> None:
        np.save(ws / "z.npy", np.zeros(shape, np.float32))

    return setup


CASES = [
    # -- download (a server on 127.0.0.1) -------------------------------------------
    Case("download-404", ["download", "{url}/missing.zip", "--retries", "0", "--quiet"], says="HTTP 404",
         may_change=("data", "data/downloads", "data/downloads/missing*", "data/downloads/missing/.lock")),
    Case("download-html-page", ["download", "{url}/page.zip", "--retries", "0", "--quiet"],
         says="served an HTML page", may_change=("data", "data/downloads", "data/downloads/page*")),
    Case("download-not-an-archive", ["download", "{url}/noise.zip", "--quiet"], says="neither a zip nor a tar",
         may_change=("data", "data/downloads", "data/downloads/noise", "data/downloads/noise/*")),
    Case("download-zip-slip", ["download", "{url}/slip.zip", "--quiet"], says="climbs out with '..'",
         may_change=("data", "data/downloads", "data/downloads/slip", "data/downloads/slip/*")),
    Case("download-connection-refused", ["download", "http://127.0.0.1:9/x.zip", "--retries", "0", "--quiet"],
         says="connection refused", may_change=("data", "data/downloads", "data/downloads/x*")),
    Case("download-trickle", ["download", "{url}/trickle.zip", "--retries", "0", "--min-rate", "1000",
                              "--rate-window", "0.2", "--quiet"], says="too slow",
         may_change=("data", "data/downloads", "data/downloads/trickle", "data/downloads/trickle/*")),
    Case("download-read-only-data-dir", ["download", "{url}/good.zip", "--data-dir", "ro", "--quiet"],
         setup=_ro_dir, mounts=("ro:ro",), says="--data-dir"),
    Case("download-disk-full", ["download", "{url}/big.zip", "--data-dir", "disk", "--quiet"],
         mounts=("disk:disk:300",), says="No space left on device",
         may_change=("disk/downloads", "disk/downloads/big", "disk/downloads/big/*")),
    Case("download-bad-sha256", ["download", "{url}/good.zip", "--sha256", "xyz"], says="64 hex digits"),
    Case("download-archive-not-celeba", ["download", "celeba", "--archive", "notes.zip", "--quiet"],
         setup=_text("notes.zip", "just text"), says="neither a zip nor a tar",
         may_change=("data", "data/downloads", "data/downloads/celeba", "data/downloads/celeba/.lock")),
    Case("download-timeout-zero", ["download", "{url}/good.zip", "--timeout", "0"], code=(2,)),
    Case("download-negative-min-rate", ["download", "{url}/good.zip", "--min-rate", "-5"], code=(2,)),
    # -- preprocess -----------------------------------------------------------------
    Case("preprocess-missing-source", ["preprocess", "nowhere", "--out", "out"], says="neither a known data set"),
    Case("preprocess-damaged-zip", ["preprocess", "photos.zip", "--out", "out"], setup=_damaged_zip,
         says="not a readable zip"),
    Case("preprocess-not-images", ["preprocess", "docs", "--out", "out", "--workers", "1"], setup=_not_images,
         says="could be used", may_change=("out",)),
    Case("preprocess-only-a-pipe", ["preprocess", "pipes", "--out", "out", "--workers", "1"], setup=_fifo_only,
         says="a named pipe", may_change=("out",)),
    Case("preprocess-out-read-only", ["preprocess", "faces", "--out", "ro/out"], setup=_ro_dir, mounts=("ro:ro",),
         says="--out"),
    Case("preprocess-workers-negative", ["preprocess", "faces", "--workers", "-1"], code=(2,)),
    Case("preprocess-shard-mb-zero", ["preprocess", "faces", "--shard-mb", "0"], code=(2,)),
    # -- train ------------------------------------------------------------------------
    Case("train-missing-data", ["train", "--data", "nowhere", *TINY], says="dcgan preprocess"),
    Case("train-manifest-not-json", ["train", "--data", "data", *TINY], setup=_manifest(lambda m: "{oops"),
         says="is corrupt"),
    Case("train-truncated-shard", ["train", "--data", "data", *TINY, "--runs-dir", "runs"], setup=_truncate_shard),
    Case("train-grey-data-rgb-run", ["train", "--resume", "run", "--data", "grey", "--epochs", "2", "--quiet"],
         setup=_grey_copy, says="--channels 3", must_not_say="--size"),
    # A damaged checkpoint index is recovered from (a warning, exit 0), not refused: test_hardening_run.
    Case("train-runs-dir-read-only", ["train", "--data", "data", *TINY, "--runs-dir", "ro"], setup=_ro_dir,
         mounts=("ro:ro",)),
    Case("train-lr-inf", ["train", "--data", "data", *TINY, "--lr-g", "inf", "--dry-run"]),
    Case("train-epochs-zero", ["train", "--data", "data", "--epochs", "0"], code=(2,)),
    # -- sample -----------------------------------------------------------------------
    Case("sample-run-missing", ["sample", "out.png", "--run", "nowhere"]),
    Case("sample-out-read-only", ["sample", "ro/out.png", "--run", "run"], setup=_ro_dir, mounts=("ro:ro",)),
    Case("sample-model-not-keras", ["sample", "out.png", "--generator", "notes.keras"],
         setup=_text("notes.keras", "not a model")),
    Case("sample-overwrites-existing", ["sample", "old.png", "--run", "run"], setup=_text("old.png", "precious"),
         says="--force"),
    Case("sample-latents-wrong-size", ["sample", "out.png", "--run", "run", "--latents", "z.npy"],
         setup=_latents((2, 5)), says="takes 8-dim"),
    # -- project, inpaint ---------------------------------------------------------------
    Case("project-no-face", ["project", "faces/img-000.png", "--run", "run", "-o", "out", "--crop", "face",
                             "--steps", "1"], says="no face found"),
    Case("project-data-of-another-size", ["project", "faces/img-000.png", "--run", "run", "-o", "out", "--steps",
                                          "1"], setup=_manifest(lambda m: {**m, "size": 32}), says="--crop"),
    Case("inpaint-mask-wrong-size", ["inpaint", "faces/img-000.png", "--mask", "mask.png", "--run", "run", "-o",
                                     "out", "--steps", "1"], setup=_mask(20, 255), says="draw it at 16x16"),
    Case("inpaint-mask-empty", ["inpaint", "faces/img-000.png", "--mask", "mask.png", "--run", "run", "-o", "out",
                                "--steps", "1"], setup=_mask(16, 0), says="marks no pixel"),
    Case("inpaint-mask-full", ["inpaint", "faces/img-000.png", "--box", "0,0,16,16", "--run", "run", "-o", "out",
                               "--steps", "1"], says="marks every pixel"),
    Case("inpaint-two-holes", ["inpaint", "faces/img-000.png", "--box", "0,0,4,4", "--mask-kind", "center", "-o",
                               "out"], code=(2,)),
    # -- export -----------------------------------------------------------------------
    Case("export-force-over-a-non-export", ["export", "run", "old.keras", "--force"],
         setup=_text("old.keras", "precious")),
    Case("export-out-read-only", ["export", "run", "ro/gen.keras"], setup=_ro_dir, mounts=("ro:ro",)),
    # -- evaluate ---------------------------------------------------------------------
    Case("evaluate-data-damaged", ["evaluate", "--run", "run", "--data", "data", "--extractor", "tiny-random",
                                   "--samples", "4"], setup=_manifest(lambda m: "{oops")),
    Case("evaluate-weights-missing", ["evaluate", "--run", "run", "--inception-weights", "none.h5", "--samples",
                                      "4"]),
    Case("evaluate-samples-one", ["evaluate", "--run", "run", "--samples", "1"], code=(2,)),
    Case("evaluate-unknown-metric", ["evaluate", "--run", "run", "--metrics", "fid,sharpness"], code=(2,)),
    Case("evaluate-is-without-a-classifier-head", ["evaluate", "--run", "run", "--metrics", "is"],
         says="inception-2015 has one", code=(1,)),
    # -- stylize ----------------------------------------------------------------------
    Case("stylize-content-missing", ["stylize", "nowhere.png", "faces/img-000.png", "-o", "out.png",
                                     "--size", "32", "--steps", "1"]),
    Case("stylize-style-not-an-image", ["stylize", "faces/img-000.png", "notes.png", "-o", "out.png",
                                        "--size", "32", "--steps", "1"], setup=_text("notes.png", "not an image")),
    Case("stylize-out-read-only", ["stylize", "faces/img-000.png", "faces/img-001.png", "-o", "ro/out.png",
                                   "--size", "32", "--steps", "1"], setup=_ro_dir, mounts=("ro:ro",)),
    Case("stylize-size-absurd", ["stylize", "faces/img-000.png", "faces/img-001.png", "-o", "out.png",
                                 "--size", "100000"]),
    # -- identity train, verify, identify, audit (the identity network) ----------------
    Case("identity-train-dihedral-with-flips", ["identity", "train", "--data", "data", "--class-augment", "dihedral",
                                                "--runs-dir", "runs"], says="add --no-flip", code=(1,)),
    Case("identity-train-unknown-class-augment", ["identity", "train", "--data", "data", "--class-augment", "rot13"],
         says="--class-augment", code=(2,)),
    Case("verify-model-missing", ["verify", "a.png", "b.png", "--identity-model", "nowhere.keras"], says="no model at"),
    Case("identify-gan-run-as-model", ["identify", "a.png", "--gallery", "faces", "--identity-model", "run"],
         says="has no embedding.keras"),
    Case("audit-no-identity-model", ["audit", "--run", "run", "--identity-model", "run", "--samples", "4"],
         says="has no embedding.keras"),
    Case("audit-two-sources", ["audit", "--run", "run", "--images", "faces", "--identity-model", "run"], code=(2,)),
    # -- bench ------------------------------------------------------------------------
    Case("bench-unknown-part", ["bench", "--parts", "warp"], code=(2,)),
    Case("bench-missing-data", ["bench", "--parts", "input", "--data", "nowhere", "--steps", "1"]),
]


# ----------------------------------------------------------------------------
# the test


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root`: kind, size and modification time (the mounts' own roots included)."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            kind = "dir" if path.is_dir() and not path.is_symlink() else oct(st.st_mode >> 12)
            seen[path.relative_to(root).as_posix()] = (kind, None if kind == "dir" else st.st_size,
                                                       None if kind == "dir" else st.st_mtime_ns)
    return seen


def _workspace(ws: Path, ctx: Context) -> None:
    shutil.copytree(ctx.run, ws / "run")
    shutil.copytree(ctx.data, ws / "data")
    shutil.copytree(ctx.faces, ws / "faces")
    # the run's config points at the shared data: point it at this copy
    cfg = json.loads((ws / "run/config.json").read_text())
    (ws / "run/config.json").write_text(json.dumps({**cfg, "data": str(ws / "data")}, indent=2))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_hostile_input_is_one_line_and_touches_nothing(case: Case, context: Context, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    _workspace(ws, context)
    if case.setup:
        case.setup(ws, context)
    with contextlib.ExitStack() as mounts:
        for spec in case.mounts:
            kind, rel, *size = spec.split(":")
            if kind == "ro":
                mounts.enter_context(read_only(ws / rel))
            else:
                mounts.enter_context(small_disk(ws / rel, int(size[0])))
        before = _snapshot(ws)
        args = [a.replace("{url}", context.server.url("")) for a in case.args]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_HOME": str(tmp_path / "keras-home"),
               "DCGAN_DATA_DIR": "data", "COLUMNS": "200"}
        env.pop("DCGAN_INCEPTION_WEIGHTS", None)
        proc = subprocess.run([sys.executable, "-m", "dcgan_cli", *args], cwd=ws, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT)
        after = _snapshot(ws)
    err = proc.stderr
    assert "Traceback" not in err, err
    assert proc.returncode in case.code, (proc.returncode, err, proc.stdout)
    assert 0 < len(err.strip().splitlines()) <= MAX_STDERR_LINES[proc.returncode], err
    assert case.says in err, err
    assert not case.must_not_say or case.must_not_say not in err, err
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p)
                     and not any(fnmatch.fnmatch(p, g) for g in case.may_change))
    assert not changed, f"touched {changed}"


def test_every_command_has_hostile_cases():
    from dcgan_cli.cli import app

    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert commands <= {c.args[0] for c in CASES}, commands - {c.args[0] for c in CASES}
