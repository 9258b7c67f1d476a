"""Hostile inputs through the real command line, as a user would meet them.

Every case gets its own workspace (the current directory of the command):
copies of a tiny trained run (`run/`), its 16x16 data (`data/`) and a few
images (`faces/`), plus whatever the case breaks. The command must

  - exit with the case's one code: 1 (an `Error: ...` from the library) or
    2 (a usage error),
  - say so on stderr in one line (a usage error: Typer's few-line box), with
    the piece of the message that names the fix, and no traceback,
  - and touch no file: the workspace is snapshotted before and after
    (names, kinds, sizes, modification times), and only what a case lists
    in `may_change` may differ.

A case runs in this process through Typer's runner (the same app `dcgan` runs),
unless it names why it needs a real one (`process`): a read that blocks
forever can only be ended by killing a process.

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
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from fake_http import FakeServer, file_route, html_route, trickling_route, unsized_route
from fs_faults import read_only, small_disk
from helpers import dcgan, dcgan_here, one_line_error, snapshot, tiny_config

MAX_USAGE_LINES = 6  # a usage error: Typer's usage line, its hint, and the message in a box
TIMEOUT = 240  # seconds: a case in a process that hangs fails (a pipe named .jpg used to hang preprocess forever)
TINY = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "8", "--latent-dim", "8", "--g-filters", "8",
        "--d-filters", "8", "--precision", "fp32", "--quiet"]  # if a train case is wrongly accepted, it ends fast


@dataclass
class Case:
    id: str
    args: list[str]  # after `dcgan`; "{url}" is the local server's root
    code: int  # the exit code: 1 (the library refused) or 2 (a usage error)
    says: str  # a piece of the message that must be there (the fix it names)
    # stderr's lines for exit 1: one, but a download that every mirror failed says 4 (the attempt's warning,
    # the error, its mirror, how to fetch the file by hand)
    lines: int = 1
    setup: Callable[[Path, "Context"], None] | None = None
    must_not_say: str = ""
    may_change: tuple[str, ...] = ()  # globs of workspace paths the command may create or change
    mounts: tuple[str, ...] = ()  # "ro:PATH" (read-only) or "disk:PATH:KB" (a small tmpfs), under the workspace
    process: str = ""  # why the case needs a real process (then it runs `python -m dcgan_cli`), or ""


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
    from dcgan_cli.training.loop import train

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


def _lfw_face(rel: str = "face.png"):
    """A real face (lfw_subset) at 100 px in a 160x140 grey frame, which the face detector finds."""
    def setup(ws: Path, ctx: Context) -> None:
        from PIL import Image
        from skimage.data import lfw_subset

        frame = Image.new("RGB", (160, 140), (90, 110, 70))
        face = Image.fromarray(np.round(lfw_subset()[0] * 255).astype(np.uint8)).convert("RGB")
        frame.paste(face.resize((100, 100), Image.Resampling.BICUBIC), (30, 20))
        frame.save(ws / rel)

    return setup


def _square(rel: str, side: int):
    def setup(ws: Path, ctx: Context) -> None:
        from PIL import Image

        Image.fromarray(np.zeros((side, side, 3), np.uint8)).save(ws / rel)

    return setup


def _embedding_of_size(side: int):
    """A (random) embedding model taking side x side faces, with its metadata, as emb.keras."""
    def setup(ws: Path, ctx: Context) -> None:
        from dcgan_cli.identity.model import build_embedder
        from dcgan_cli.identity.verification import META_FORMAT, save_model, write_meta

        save_model(build_embedder(side, 3, dim=8, width=4), ws / "emb.keras")
        write_meta(ws / "emb.keras", {"format": META_FORMAT, "image_size": side, "channels": 3, "crop": "face",
                                      "threshold": 1.0})

    return setup


CASES = [
    # -- download (a server on 127.0.0.1) -------------------------------------------
    Case("download-404", ["download", "{url}/missing.zip", "--retries", "0", "--quiet"], code=1, says="HTTP 404",
         lines=4, may_change=("data", "data/downloads", "data/downloads/missing*", "data/downloads/missing/.lock")),
    Case("download-html-page", ["download", "{url}/page.zip", "--retries", "0", "--quiet"], code=1,
         says="served an HTML page", lines=4, may_change=("data", "data/downloads", "data/downloads/page*")),
    Case("download-not-an-archive", ["download", "{url}/noise.zip", "--quiet"], code=1, says="neither a zip nor a tar",
         may_change=("data", "data/downloads", "data/downloads/noise", "data/downloads/noise/*")),
    Case("download-zip-slip", ["download", "{url}/slip.zip", "--quiet"], code=1, says="climbs out with '..'",
         may_change=("data", "data/downloads", "data/downloads/slip", "data/downloads/slip/*")),
    Case("download-connection-refused", ["download", "http://127.0.0.1:9/x.zip", "--retries", "0", "--quiet"], code=1,
         says="connection refused", lines=4, may_change=("data", "data/downloads", "data/downloads/x*")),
    Case("download-trickle", ["download", "{url}/trickle.zip", "--retries", "0", "--min-rate", "1000", "--rate-window",
                              "0.2", "--quiet"], code=1, says="too slow", lines=4,
         may_change=("data", "data/downloads", "data/downloads/trickle", "data/downloads/trickle/*")),
    Case("download-read-only-data-dir", ["download", "{url}/good.zip", "--data-dir", "ro", "--quiet"], code=1,
         says="--data-dir", setup=_ro_dir, mounts=("ro:ro",)),
    Case("download-disk-full", ["download", "{url}/big.zip", "--data-dir", "disk", "--quiet"], code=1,
         says="No space left on device", mounts=("disk:disk:300",),
         may_change=("disk/downloads", "disk/downloads/big", "disk/downloads/big/*")),
    Case("download-bad-sha256", ["download", "{url}/good.zip", "--sha256", "xyz"], code=1, says="64 hex digits"),
    Case("download-archive-not-celeba", ["download", "celeba", "--archive", "notes.zip", "--quiet"], code=1,
         says="neither a zip nor a tar", setup=_text("notes.zip", "just text"),
         may_change=("data", "data/downloads", "data/downloads/celeba", "data/downloads/celeba/.lock")),
    Case("download-timeout-zero", ["download", "{url}/good.zip", "--timeout", "0"], code=2,
         says="Invalid value for '--timeout'"),
    Case("download-negative-min-rate", ["download", "{url}/good.zip", "--min-rate", "-5"], code=2,
         says="Invalid value for '--min-rate'"),
    # -- preprocess -----------------------------------------------------------------
    Case("preprocess-missing-source", ["preprocess", "nowhere", "--out", "out"], code=1,
         says="neither a known data set"),
    Case("preprocess-damaged-zip", ["preprocess", "photos.zip", "--out", "out"], code=1, says="not a readable zip",
         setup=_damaged_zip),
    Case("preprocess-not-images", ["preprocess", "docs", "--out", "out", "--workers", "1"], code=1,
         says="could be used", setup=_not_images, may_change=("out",)),
    Case("preprocess-only-a-pipe", ["preprocess", "pipes", "--out", "out", "--workers", "1"], code=1,
         says="a named pipe", setup=_fifo_only, may_change=("out",),
         process="opening a named pipe blocks until a writer comes: if preprocess opened it, only killing a "
                 "process (the timeout) would end the case"),
    Case("preprocess-out-read-only", ["preprocess", "faces", "--out", "ro/out"], code=1, says="--out", setup=_ro_dir,
         mounts=("ro:ro",)),
    Case("preprocess-workers-negative", ["preprocess", "faces", "--workers", "-1"], code=2,
         says="Invalid value for '--workers'"),
    Case("preprocess-shard-mb-zero", ["preprocess", "faces", "--shard-mb", "0"], code=2,
         says="Invalid value for '--shard-mb'"),
    # -- train ------------------------------------------------------------------------
    Case("train-missing-data", ["train", "--data", "nowhere", *TINY], code=1, says="dcgan preprocess"),
    Case("train-manifest-not-json", ["train", "--data", "data", *TINY], code=1, says="is corrupt",
         setup=_manifest(lambda m: "{oops")),
    Case("train-truncated-shard", ["train", "--data", "data", *TINY, "--runs-dir", "runs"], code=1,
         says="(truncated or replaced); re-run `dcgan preprocess ... --force`", setup=_truncate_shard),
    Case("train-grey-data-rgb-run", ["train", "--resume", "run", "--data", "grey", "--epochs", "2", "--quiet"], code=1,
         says="--channels 3", setup=_grey_copy, must_not_say="--size"),
    # A damaged checkpoint index is recovered from (a warning, exit 0), not refused: test_hardening_run.
    Case("train-runs-dir-read-only", ["train", "--data", "data", *TINY, "--runs-dir", "ro"], code=1,
         says="read-only file system; make it writable", setup=_ro_dir, mounts=("ro:ro",)),
    Case("train-lr-inf", ["train", "--data", "data", *TINY, "--lr-g", "inf", "--dry-run"], code=1,
         says="lr-g must be a finite number, got inf"),
    Case("train-epochs-zero", ["train", "--data", "data", "--epochs", "0"], code=2,
         says="Invalid value for '--epochs'"),
    # -- sample -----------------------------------------------------------------------
    Case("sample-run-missing", ["sample", "out.png", "--run", "nowhere"], code=1,
         says="is not a run directory (no config.json)"),
    Case("sample-out-read-only", ["sample", "ro/out.png", "--run", "run"], code=1,
         says="cannot write ro/out.png: Read-only file system", setup=_ro_dir, mounts=("ro:ro",)),
    Case("sample-model-not-keras", ["sample", "out.png", "--generator", "notes.keras"], code=1,
         says="cannot read notes.keras as a Keras model", setup=_text("notes.keras", "not a model")),
    Case("sample-overwrites-existing", ["sample", "old.png", "--run", "run"], code=1, says="--force",
         setup=_text("old.png", "precious")),
    Case("sample-latents-wrong-size", ["sample", "out.png", "--run", "run", "--latents", "z.npy"], code=1,
         says="takes 8-dim", setup=_latents((2, 5))),
    # -- project, inpaint ---------------------------------------------------------------
    Case("project-no-face", ["project", "faces/img-000.png", "--run", "run", "-o", "out", "--crop", "face", "--steps",
                             "1"], code=1, says="no face found"),
    Case("project-data-of-another-size", ["project", "faces/img-000.png", "--run", "run", "-o", "out", "--steps", "1"],
         code=1, says="--crop", setup=_manifest(lambda m: {**m, "size": 32})),
    Case("inpaint-mask-wrong-size", ["inpaint", "faces/img-000.png", "--mask", "mask.png", "--run", "run", "-o", "out",
                                     "--steps", "1"], code=1, says="draw it at 16x16", setup=_mask(20, 255)),
    Case("inpaint-mask-empty", ["inpaint", "faces/img-000.png", "--mask", "mask.png", "--run", "run", "-o", "out",
                                "--steps", "1"], code=1, says="marks no pixel", setup=_mask(16, 0)),
    Case("inpaint-mask-full", ["inpaint", "faces/img-000.png", "--box", "0,0,16,16", "--run", "run", "-o", "out",
                               "--steps", "1"], code=1, says="marks every pixel"),
    Case("inpaint-two-holes", ["inpaint", "faces/img-000.png", "--box", "0,0,4,4", "--mask-kind", "center", "-o",
                               "out"], code=2, says="give exactly one of --mask"),
    # -- anonymize, restore --------------------------------------------------------------
    Case("anonymize-no-face-in-any-photo", ["anonymize", "faces/img-000.png", "--run", "run", "-o", "out", "--crop",
                                            "face", "--steps", "1"], code=1, says="lower --min-face"),
    Case("anonymize-face-under-min-face", ["anonymize", "face.png", "--run", "run", "-o", "out", "--crop", "face",
                                           "--min-face", "400", "--steps", "1"], code=1,
         says="no face of at least 400 px", setup=_lfw_face()),
    Case("anonymize-identity-model-of-another-size", ["anonymize", "face.png", "--run", "run", "-o", "out", "--crop",
                                                      "face", "--identity-model", "emb.keras", "--steps", "1"],
         code=1, says="trained at the run's size", setup=lambda ws, ctx: (_lfw_face()(ws, ctx),
                                                                          _embedding_of_size(32)(ws, ctx))),
    Case("anonymize-out-is-a-file", ["anonymize", "faces/img-000.png", "--run", "run", "-o", "notes.txt"], code=2,
         says="names a folder", setup=_text("notes.txt", "precious")),
    Case("restore-input-larger-than-the-run", ["restore", "big.png", "--degradation", "downsample", "--run", "run",
                                               "-o", "out", "--steps", "1"], code=1,
         says="larger than the run's 16x16", setup=_square("big.png", 32)),
    Case("restore-unknown-degradation", ["restore", "faces/img-000.png", "--degradation", "sharpen:2", "--run", "run",
                                         "-o", "out"], code=2, says="is not a degradation"),
    # -- export -----------------------------------------------------------------------
    Case("export-force-over-a-non-export", ["export", "run", "old.keras", "--force"], code=1,
         says="already exists and is not a keras export", setup=_text("old.keras", "precious")),
    Case("export-out-read-only", ["export", "run", "ro/gen.keras"], code=1,
         says="Read-only file system; choose a writable location", setup=_ro_dir, mounts=("ro:ro",)),
    # -- evaluate ---------------------------------------------------------------------
    Case("evaluate-data-damaged", ["evaluate", "--run", "run", "--data", "data", "--extractor", "tiny-random",
                                   "--samples", "4"], code=1, says="data/manifest.json is corrupt",
         setup=_manifest(lambda m: "{oops")),
    Case("evaluate-weights-missing", ["evaluate", "--run", "run", "--inception-weights", "none.h5", "--samples", "4"],
         code=1, says="none.h5 (from --inception-weights) does not exist"),
    Case("evaluate-samples-one", ["evaluate", "--run", "run", "--samples", "1"], code=2,
         says="Invalid value for '--samples'"),
    Case("evaluate-unknown-metric", ["evaluate", "--run", "run", "--metrics", "fid,sharpness"], code=2,
         says="unknown metric sharpness; choose from fid, kid, prdc, is"),
    Case("evaluate-is-without-a-classifier-head", ["evaluate", "--run", "run", "--metrics", "is"], code=1,
         says="inception-2015 has one"),
    # -- stylize ----------------------------------------------------------------------
    Case("stylize-content-missing", ["stylize", "nowhere.png", "faces/img-000.png", "-o", "out.png", "--size", "32",
                                     "--steps", "1"], code=1, says="no content image at nowhere.png"),
    Case("stylize-style-not-an-image", ["stylize", "faces/img-000.png", "notes.png", "-o", "out.png", "--size", "32",
                                        "--steps", "1"], code=1, says="notes.png is not an image Pillow can read",
         setup=_text("notes.png", "not an image")),
    Case("stylize-out-read-only", ["stylize", "faces/img-000.png", "faces/img-001.png", "-o", "ro/out.png", "--size",
                                   "32", "--steps", "1"], code=1, says="cannot write ro/out.png: Read-only file system",
         setup=_ro_dir, mounts=("ro:ro",)),
    Case("stylize-size-absurd", ["stylize", "faces/img-000.png", "faces/img-001.png", "-o", "out.png", "--size",
                                 "100000"], code=1, says="--size 100000 is above 1024"),
    # -- identity train, verify, identify, audit (the identity network) ----------------
    Case("identity-train-dihedral-with-flips", ["identity", "train", "--data", "data", "--class-augment", "dihedral",
                                                "--runs-dir", "runs"], code=1, says="add --no-flip"),
    Case("identity-train-unknown-class-augment", ["identity", "train", "--data", "data", "--class-augment", "rot13"],
         code=2, says="--class-augment"),
    Case("verify-model-missing", ["verify", "a.png", "b.png", "--identity-model", "nowhere.keras"], code=1,
         says="no model at"),
    Case("identify-gan-run-as-model", ["identify", "a.png", "--gallery", "faces", "--identity-model", "run"], code=1,
         says="has no embedding.keras"),
    Case("audit-no-identity-model", ["audit", "--run", "run", "--identity-model", "run", "--samples", "4"], code=1,
         says="has no embedding.keras"),
    Case("audit-two-sources", ["audit", "--run", "run", "--images", "faces", "--identity-model", "run"], code=2,
         says="audit one thing: --run, --generator or --images"),
    # -- bench ------------------------------------------------------------------------
    Case("bench-unknown-part", ["bench", "--parts", "warp"], code=2, says="Invalid value for '--parts'"),
    Case("bench-missing-data", ["bench", "--parts", "input", "--data", "nowhere", "--steps", "1"], code=1,
         says="data directory nowhere does not exist"),
]


# ----------------------------------------------------------------------------
# the test


def _workspace(ws: Path, ctx: Context) -> None:
    shutil.copytree(ctx.run, ws / "run")
    shutil.copytree(ctx.data, ws / "data")
    shutil.copytree(ctx.faces, ws / "faces")
    # the run's config points at the shared data: point it at this copy
    cfg = json.loads((ws / "run/config.json").read_text())
    (ws / "run/config.json").write_text(json.dumps({**cfg, "data": str(ws / "data")}, indent=2))


def _param(case: Case):
    return pytest.param(case, id=case.id, marks=[pytest.mark.subprocess] if case.process else [])


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_hostile_input_is_one_line_and_touches_nothing(case: Case, context: Context, tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    _workspace(ws, context)
    if case.setup:
        case.setup(ws, context)
    args = [a.replace("{url}", context.server.url("")) for a in case.args]
    env = {"KERAS_HOME": str(tmp_path / "keras-home"), "DCGAN_DATA_DIR": "data", "COLUMNS": "200",
           "DCGAN_INCEPTION_WEIGHTS": None}
    with contextlib.ExitStack() as mounts:
        for spec in case.mounts:
            kind, rel, *size = spec.split(":")
            if kind == "ro":
                mounts.enter_context(read_only(ws / rel))
            else:
                mounts.enter_context(small_disk(ws / rel, int(size[0])))
        before = snapshot(ws, times=True)
        if case.process:
            env = {k: v for k, v in {**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "3"}.items() if v is not None}
            result = dcgan(*args, cwd=ws, env=env, timeout=TIMEOUT)
        else:
            monkeypatch.chdir(ws)
            result = dcgan_here(*args, env=env)
        after = snapshot(ws, times=True)
    if case.lines == 1:
        message = one_line_error(result, case.says, code=case.code)
    else:
        assert result.returncode == case.code and "Traceback" not in result.stderr, result.stderr
        message = result.stderr
        assert len(message.strip().splitlines()) == case.lines and case.says in message, message
        assert message.splitlines()[1].startswith("Error: "), message
    if case.code == 2:
        assert len(result.stderr.strip().splitlines()) <= MAX_USAGE_LINES, result.stderr
    assert not case.must_not_say or case.must_not_say not in message, message
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p)
                     and not any(fnmatch.fnmatch(p, g) for g in case.may_change))
    assert not changed, f"touched {changed}"


def test_every_command_has_hostile_cases():
    from dcgan_cli.cli import app

    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert commands <= {c.args[0] for c in CASES}, commands - {c.args[0] for c in CASES}
