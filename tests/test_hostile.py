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
    cond_run: Path | None = None  # a tiny run conditioned on the digits' classes


# ----------------------------------------------------------------------------
# fixtures: one tiny run, one server, shared by every case (each case copies what it breaks)


@pytest.fixture(scope="module")
def context(data16, image_folder, digits, tmp_path_factory):
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
    cond_run = train(tiny_config(digits, root / "cond-runs", channels=1, epochs=1, steps_per_epoch=1,
                                 condition="classes"), quiet=True, log=lambda m: None)
    yield Context(server, run, data16, grey, image_folder, routes, cond_run)
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


def _cond_run(ws: Path, ctx: Context) -> None:
    shutil.copytree(ctx.cond_run, ws / "crun")


def _latents(shape: tuple[int, ...]):
    def setup(ws: Path, ctx: Context) -> None:
        np.save(ws / "z.npy", np.zeros(shape, np.float32))

    return setup


def _array(name: str, make: Callable[[], object]):
    """`name` holding what `make` returns: an array (.npy) or a dict of arrays (.npz)."""
    def setup(ws: Path, ctx: Context) -> None:
        a = make()
        np.savez(ws / name, **a) if isinstance(a, dict) else np.save(ws / name, a)

    return setup


def _huge_png(ws: Path, ctx: Context) -> None:
    """A PNG whose header says 20000x10000 (over Pillow's limit); no pixels needed to be refused."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    (ws / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 10000, 8, 0, 0, 0, 0))
                                  + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def _embedding_meta(**fields):
    """m.keras (not a model: the metadata beside it is read first) and m.json with `fields` over good ones."""
    def setup(ws: Path, ctx: Context) -> None:
        (ws / "m.keras").write_bytes(b"not read")
        (ws / "m.json").write_text(json.dumps({"format": "dcgan-embedding-v1", "image_size": 16, "channels": 3,
                                               "threshold": 1.0, **fields}))

    return setup


def _gallery_twice(ws: Path, ctx: Context) -> None:
    _embedding_meta()(ws, ctx)
    (ws / "g/alice").mkdir(parents=True)
    for rel in ("g/alice.png", "g/alice.jpg", "g/alice/x.png"):
        shutil.copy(sorted(ctx.faces.iterdir())[0], ws / rel)
def _directions(ws: Path, ctx: Context) -> None:
    """The run gets directions for Smiling and Male (random unit normals in its 8-dim z), as `dcgan directions`
    saves them."""
    from dcgan_cli.generate.directions import Directions, save_directions

    normals = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    save_directions(ws / "run", Directions(["Smiling", "Male"], normals, np.zeros(2), np.ones(2), {}))


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
    Case("download-weights-with-sha256", ["download", "inception-2015", "--sha256", "0" * 64], code=2,
         says="--sha256 is for data sets"),
    Case("download-weights-with-data-dir", ["download", "vgg19", "--data-dir", "data", "--name", "v"], code=2,
         says="--name, --data-dir are for data sets"),
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
    Case("train-augment-none-with-p", ["train", "--data", "data", *TINY, "--augment", "none", "--augment-p", "0.5"],
         code=2, says="--augment none augments nothing"),
    Case("train-r1-gamma-negative", ["train", "--data", "data", *TINY, "--r1-gamma", "-1", "--dry-run"], code=1,
         says="r1-gamma must be 0 (off) or more"),
    Case("train-r1-interval-zero", ["train", "--data", "data", *TINY, "--r1-interval", "0", "--dry-run"], code=1,
         says="r1-interval must be at least 1"),
    Case("train-r1-with-sync-bn", ["train", "--data", "data", *TINY, "--r1-gamma", "1", "--sync-bn", "--dry-run"],
         code=1, says="use --r1-interval 1 (R1 on every step), --d-norm none, --no-sync-bn, or --r1-gamma 0"),
    Case("train-d-norm-unknown", ["train", "--data", "data", *TINY, "--d-norm", "layer", "--dry-run"], code=2,
         says="'layer' is not one of 'batch', 'none'"),
    Case("train-bcr-negative", ["train", "--data", "data", *TINY, "--bcr", "-0.5", "--dry-run"], code=1,
         says="bcr must be 0 (off) or more"),
    Case("train-hinge-with-label-smoothing", ["train", "--data", "data", *TINY, "--loss", "hinge",
                                              "--label-smoothing", "0.1", "--dry-run"], code=1,
         says="use --label-smoothing 0, or --loss nonsaturating"),
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
    Case("sample-latents-npz", ["sample", "out.png", "--run", "run", "--latents", "z.npz"], code=1,
         says="save the latents with np.save", setup=_array("z.npz", lambda: {"z": np.zeros((2, 8))})),
    Case("sample-latents-infinite-in-float32", ["sample", "out.png", "--run", "run", "--latents", "z.npy"], code=1,
         says="finite in float32", setup=_array("z.npy", lambda: np.full((2, 8), 1e39))),
    Case("sample-latents-empty-1d", ["sample", "out.png", "--run", "run", "--latents", "z.npy"], code=1,
         says="shape (0,)", setup=_array("z.npy", lambda: np.zeros(0, np.float32))),
    Case("sample-latents-bad-expression", ["sample", "out.png", "--run", "run", "--latents", "z.npy + * z.npy"],
         code=1, says="with spaces around + and -", setup=_latents((2, 8))),
    Case("sample-latents-expression-missing-file", ["sample", "out.png", "--run", "run", "--latents",
                                                    "z.npy - gone.npy"], code=1, says="no latents file at gone.npy",
         setup=_latents((2, 8))),
    Case("sample-class-unknown", ["sample", "out.png", "--run", "crun", "--class", "11"], code=1,
         says="unknown class '11'; crun knows: 0, 1, 2, 3", setup=_cond_run),
    Case("sample-class-on-unconditional-run", ["sample", "out.png", "--run", "run", "--class", "7"], code=1,
         says="trained without --condition"),
    Case("sample-attr-value-out-of-range", ["sample", "out.png", "--run", "run", "--attr", "Smiling=2"], code=2,
         says="NAME=1 (present) or NAME=0"),
    Case("sample-class-and-attr", ["sample", "out.png", "--run", "crun", "--class", "1", "--attr", "A=1"], code=2,
         says="give --class or --attr, not both", setup=_cond_run),
    Case("train-condition-without-labels", ["train", "--data", "data", *TINY, "--runs-dir", "runs", "--condition",
                                            "classes"], code=1, says="--labels folders"),
    Case("train-condition-attributes-without-labels", ["train", "--data", "data", *TINY, "--runs-dir", "runs",
                                                       "--condition", "attributes:Smiling"], code=1,
         says="--labels celeba"),
    Case("train-condition-unknown-kind", ["train", "--data", "data", *TINY, "--condition", "colours", "--dry-run"],
         code=1, says="classes, attributes, attributes:NAME,NAME"),
    # -- project, inpaint ---------------------------------------------------------------
    Case("export-tflite-conditional-run", ["export", "crun", "g.tflite"], code=1,
         says="export it as keras or savedmodel", setup=_cond_run),
    Case("studio-conditional-run", ["studio", "--run", "crun", "--port", "0"], code=1,
         says="the studio opens unconditional runs", setup=_cond_run),
    Case("project-conditional-run", ["project", "faces/img-000.png", "--run", "crun", "-o", "out", "--steps", "1"],
         code=1, says="use a run trained without --condition", setup=_cond_run),
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
    Case("inpaint-even-window", ["inpaint", "faces/img-000.png", "--box", "4,4,4,4", "--window", "8", "-o", "out"],
         code=2, says="use an odd --window such as 9"),
    Case("project-restarts-beyond-memory", ["project", "faces/img-000.png", "--run", "run", "-o", "out",
                                            "--restarts", "1000000000000"], code=2, says="use --restarts"),
    Case("project-out-empty", ["project", "faces/img-000.png", "--run", "run", "-o", ""], code=2,
         says="is empty (an unset variable?)"),
    Case("project-out-under-a-file", ["project", "faces/img-000.png", "--run", "run", "-o", "afile/sub"], code=1,
         says="afile is a file, not a folder", setup=_text("afile", "x")),
    Case("project-over-pillow-limit", ["project", "huge.png", "--run", "run", "-o", "out", "--steps", "1"], code=1,
         says="20000x10000 (200,000,000 pixels), over Pillow's limit", setup=_huge_png),
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
    # -- directions, edit -------------------------------------------------------------
    Case("directions-data-without-labels", ["directions", "--run", "run"], code=1, says="--labels celeba"),
    Case("directions-share-too-big", ["directions", "--run", "run", "--share", "0.7"], code=2, says="--share"),
    Case("edit-run-without-directions", ["edit", "--run", "run", "--attr", "Smiling=+1", "--seeds", "0", "-o",
                                         "e.png"], code=1, says="make them with `dcgan directions --run run`"),
    Case("edit-unknown-attribute", ["edit", "--run", "run", "--attr", "Smile=+1", "--seeds", "0", "-o", "e.png"],
         code=1, says="this run's directions are: Smiling, Male", setup=_directions),
    Case("edit-value-out-of-range", ["edit", "--run", "run", "--attr", "Smiling=+40", "--seeds", "0", "-o", "e.png"],
         code=2, says="out of range", setup=_directions),
    Case("edit-keep-the-edited", ["edit", "--run", "run", "--attr", "Smiling=+1", "--keep", "Male,Smiling", "--seeds",
                                  "0", "-o", "e.png"], code=2, says="both edited and kept", setup=_directions),
    Case("edit-latents-wrong-size", ["edit", "--run", "run", "--attr", "Smiling=+1", "--latents", "z.npy", "-o",
                                     "e.png"], code=1, says="takes 8-dim", setup=lambda ws, ctx: (
                                         _directions(ws, ctx), _latents((2, 5))(ws, ctx))),
    Case("edit-gif-without-sweep", ["edit", "--run", "run", "--attr", "Smiling=+1", "--seeds", "0", "-o", "e.gif"],
         code=2, says="a .gif is for --sweep"),
    # -- export -----------------------------------------------------------------------
    Case("export-force-over-a-non-export", ["export", "run", "old.keras", "--force"], code=1,
         says="already exists and is not a keras export", setup=_text("old.keras", "precious")),
    Case("export-out-read-only", ["export", "run", "ro/gen.keras"], code=1,
         says="Read-only file system; choose a writable location", setup=_ro_dir, mounts=("ro:ro",)),
    Case("export-quantize-without-tflite", ["export", "run", "g.keras", "--quantize", "float16"], code=2,
         says="quantization applies to --format tflite"),
    Case("export-unknown-format", ["export", "run", "g.onnx", "--format", "onnx"], code=2,
         says="Invalid value for '--format'"),
    Case("export-tflite-named-otherwise", ["export", "run", "g.bin", "--format", "tflite"], code=1,
         says="must end in .tflite"),
    Case("export-unknown-quantization", ["export", "run", "g.tflite", "--quantize", "int4"], code=2,
         says="Invalid value for '--quantize'"),
    Case("export-tflite-over-a-non-tflite", ["export", "run", "old.tflite", "--force"], code=1,
         says="already exists and is not a tflite export", setup=_text("old.tflite", "precious")),
    # -- studio (each refused before Gradio starts; --port 0 where the port is not the point) ----------
    Case("studio-port-out-of-range", ["studio", "--run", "run", "--port", "70000"], code=2,
         says="Invalid value for '--port'"),
    Case("studio-port-in-use", ["studio", "--run", "run", "--port", "{port}"], code=1,
         says="is in use (another studio?); pass another --port"),
    Case("studio-host-not-here", ["studio", "--run", "run", "--host", "192.0.2.1", "--port", "0"], code=1,
         says="pass --host 127.0.0.1"),
    Case("studio-run-without-a-generator", ["studio", "--run", "run", "--port", "0"], code=1,
         says="has no checkpoint yet", setup=lambda ws, ctx: [shutil.rmtree(ws / "run" / d) for d in ("checkpoints", "last-good")]),
    Case("studio-identity-model-missing", ["studio", "--run", "run", "--identity-model", "nowhere.keras", "--port",
                                           "0"], code=1, says="no model at nowhere.keras"),
    # -- evaluate ---------------------------------------------------------------------
    Case("evaluate-data-damaged", ["evaluate", "--run", "run", "--data", "data", "--extractor", "tiny-random",
                                   "--samples", "4"], code=1, says="data/manifest.json is corrupt",
         setup=_manifest(lambda m: "{oops")),
    Case("evaluate-weights-missing", ["evaluate", "--run", "run", "--inception-weights", "none.h5", "--samples", "4"],
         code=1, says="none.h5 (from --inception-weights) does not exist"),
    Case("evaluate-checkpoints-empty", ["evaluate", "--run", "run", "--checkpoints", ""], code=2,
         says="needs at least one checkpoint number"),
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
    Case("verify-threshold-nan", ["verify", "a.png", "b.png", "--identity-model", "m.keras", "--threshold", "nan"],
         code=2, says="give a finite number >= 0", setup=_embedding_meta()),
    Case("verify-threshold-negative", ["verify", "a.png", "b.png", "--identity-model", "m.keras", "--threshold",
                                       "-1"], code=2, says="give a finite number >= 0", setup=_embedding_meta()),
    Case("verify-stored-threshold-not-a-number", ["verify", "a.png", "b.png", "--identity-model", "m.keras"], code=1,
         says="threshold is 'abc', not a finite distance", setup=_embedding_meta(threshold="abc")),
    Case("audit-threshold-nan", ["audit", "--run", "run", "--identity-model", "m.keras", "--threshold", "nan"],
         code=2, says="give a finite number >= 0", setup=_embedding_meta()),
    Case("audit-grid-not-an-image", ["audit", "--run", "run", "--identity-model", "m.keras", "--grid", "x.txt"],
         code=1, says="cannot write x.txt: use one of", setup=_embedding_meta()),
    Case("identify-gallery-names-twice", ["identify", "faces/img-000.png", "--gallery", "g", "--identity-model",
                                          "m.keras"], code=1, says="has two photos of 'alice'",
         setup=_gallery_twice),
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
    port = context.server.url("").rsplit(":", 1)[1].strip("/")  # "{port}": one that is taken (the server's)
    args = [a.replace("{url}", context.server.url("")).replace("{port}", port) for a in case.args]
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


# ----------------------------------------------------------------------------
# what must be accepted, or said rightly (no run of the command needed)


def test_resume_with_auto_keeps_the_mode_auto_chose(context):
    from dcgan_cli.config import TrainConfig

    saved = TrainConfig.of_run(context.run)
    for chosen in ("ada", "none"):
        assert saved.replace(augment=chosen).resumed(context.run, augment="auto").augment == chosen
    with pytest.raises(Exception, match="cannot change --augment"):
        saved.replace(augment="diffaug").resumed(context.run, augment="auto")


def test_crop_given_is_not_asked_for(context, tmp_path):
    """--crop given: the manifest's other shape does not matter (the photos are cropped to the run's size)."""
    from dcgan_cli.config import TrainConfig
    from dcgan_cli.errors import DcganError
    from dcgan_cli.generate.repair import crop_recipe

    cfg = TrainConfig.of_run(context.run).replace(data=str(context.grey))  # grey data: 16x16x1, the run: x3
    assert crop_recipe(cfg, "center").channels == cfg.channels
    with pytest.raises(DcganError, match="or name --crop"):
        crop_recipe(cfg)


def test_a_run_keeps_its_data_path_absolute_so_it_is_found_from_anywhere(context, monkeypatch, tmp_path):
    from dcgan_cli.config import TrainConfig

    monkeypatch.chdir(context.data.parent)  # --data as a user types it: relative to where training runs
    new = TrainConfig.start_or_resume(None, {}, data=context.data.name)
    assert new.data == str(context.data) and Path(new.data).is_absolute()
    resumed = TrainConfig.start_or_resume(context.run, {}, data=context.data.name)  # a moved data set, relative
    assert resumed.data == str(context.data)
    monkeypatch.chdir(tmp_path)
    assert Path(new.data).is_dir(), "another directory finds the same data"
