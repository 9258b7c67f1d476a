"""`dcgan preprocess` on real files the tests write: good, odd, broken; folder, zip, CelebA layout.

Every run here is real: Pillow decodes the files, TensorFlow writes the
shards, and the interruption test kills a real process part-way.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dcgan_cli.cli import app
from dcgan_cli.errors import DcganError
from dcgan_cli.data.preprocess import PreprocessConfig, crop_box, preprocess
from fs_faults import read_only, small_disk

runner = CliRunner()


def smooth_image(w, h, seed=0, mode="RGB"):
    """A smooth random picture (sums of low-frequency waves), so resizing has something to do."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    chans = []
    for _ in range(3):
        a = sum(rng.uniform(20, 50) * np.sin(rng.uniform(1, 9) * xx + rng.uniform(1, 9) * yy + rng.uniform(0, 6))
                for _ in range(3))
        chans.append(128 + a)
    img = Image.fromarray(np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8))
    return img.convert(mode) if mode != "RGB" else img


def png_claiming(path, w, h):
    """A tiny PNG whose header claims w x h pixels: the shape of a decompression bomb."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", w, h)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[12:ihdr + 13])))
    path.write_bytes(bytes(data))


def read_shards(out):
    """All images of an output, in manifest (= file) order, through the real pipeline."""
    from dcgan_cli.data.pipeline import make_dataset

    m = json.loads((out / "manifest.json").read_text())
    ds = make_dataset(out, 4096, shuffle=False, repeat=False, drop_remainder=False, cycle_length=1)
    return m, np.concatenate([b.numpy() for b in ds])


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A folder of every kind of file a real image folder holds; returns (folder, good, bad)."""
    root = tmp_path_factory.mktemp("mixed") / "photos"
    (root / "a").mkdir(parents=True)
    (root / "b" / "deeper").mkdir(parents=True)
    (root / "bad").mkdir()
    good = {
        "a/celeb.jpg": lambda p: smooth_image(178, 218, 1).save(p, quality=92),
        "b/deeper/UPPER.JPG": lambda p: smooth_image(90, 70, 2).save(p, "JPEG"),
        "b/gray.png": lambda p: smooth_image(60, 80, 3, "L").save(p),
        "b/rgba.png": lambda p: _rgba().save(p),
        "b/palette.png": lambda p: smooth_image(64, 64, 4).convert("P").save(p),
        "b/deep16.png": lambda p: Image.fromarray(np.full((48, 40), 40000, np.uint16)).save(p),
        "b/cmyk.jpg": lambda p: Image.new("CMYK", (50, 60), (0, 255, 255, 0)).save(p),
        "b/pic.bmp": lambda p: smooth_image(40, 40, 5).save(p),
        "b/pic.webp": lambda p: smooth_image(40, 50, 6).save(p, lossless=True),
        "b/tiny.png": lambda p: smooth_image(20, 26, 7).save(p),
    }
    for name, write in good.items():
        write(root / name)
    (root / "bad/empty.jpg").write_bytes(b"")
    full = (root / "a/celeb.jpg").read_bytes()
    (root / "bad/truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "bad/text.png").write_text("this is not a picture\n")
    (root / "bad/noise.webp").write_bytes(np.random.default_rng(0).bytes(3000))
    png_claiming(root / "bad/bomb.png", 20000, 20000)
    bad = {"bad/empty.jpg": "empty", "bad/truncated.jpg": "truncated", "bad/text.png": "not an image",
           "bad/noise.webp": "not an image", "bad/bomb.png": "decompression bomb"}
    # Not images at all, and not to be counted as skipped either.
    (root / "notes.txt").write_text("hello")
    (root / ".DS_Store").write_bytes(b"\0\1")
    (root / "a" / "._celeb.jpg").write_bytes(b"\0\5\x16\7")
    return root, sorted(good), bad


def _rgba():
    a = np.zeros((40, 40, 4), np.uint8)
    a[..., 0] = 200  # red, but only the right half is opaque
    a[:, 20:, 3] = 255
    return Image.fromarray(a, "RGBA")


@pytest.fixture(scope="module")
def mixed_out(mixed, tmp_path_factory):
    root, _, _ = mixed
    out = tmp_path_factory.mktemp("out") / "mixed-32"
    m = preprocess(PreprocessConfig(source=str(root), out=str(out), size=32, crop="center", workers=2),
                   log=lambda line: None)
    return out, m


def test_counts_skipped_and_reports(mixed, mixed_out):
    root, good, bad = mixed
    out, m = mixed_out
    assert m["source_images"] == len(good) + len(bad) == 15
    assert m["count"] == m["source_images"] - m["skipped"] == len(good)
    assert sum(s["count"] for s in m["shards"]) == m["count"]
    lines = (out / "skipped.txt").read_text().splitlines()
    reasons = dict(line.split("\t", 1) for line in lines)
    assert sorted(reasons) == sorted(bad)
    for name, why in bad.items():
        assert why in reasons[name], (name, reasons[name])
    small = dict(line.split("\t", 1) for line in (out / "small.txt").read_text().splitlines())
    assert list(small) == ["b/tiny.png"] and "upscaled from 20x20" in small["b/tiny.png"]
    # The manifest is the same file the pipeline reads, with every shard's checksum.
    import hashlib

    for s in m["shards"]:
        assert hashlib.sha256((out / s["file"]).read_bytes()).hexdigest() == s["sha256"]
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".tfrecord") == sorted(s["file"] for s in m["shards"])
    assert not (out / ".progress.json").exists()


def test_odd_modes_are_converted_sensibly(mixed, mixed_out):
    _, good, _ = mixed
    out, _ = mixed_out
    m, images = read_shards(out)
    assert images.shape == (len(good), 32, 32, 3) and images.dtype == np.uint8
    by_name = dict(zip(good, images))
    # 16-bit 40000 is 156 in 8 bits (Pillow's own convert would clip it to 255).
    assert np.all(np.abs(by_name["b/deep16.png"].astype(int) - round(40000 / 257)) <= 1)
    # Transparent pixels become white, opaque ones keep their colour.
    rgba = by_name["b/rgba.png"].astype(int)
    assert np.all(rgba[:, :8] == 255) and np.all(rgba[:, -8:] == [200, 0, 0])
    # CMYK (0, 255, 255, 0) is red.
    cmyk = by_name["b/cmyk.jpg"].astype(int).mean(axis=(0, 1))
    assert cmyk[0] > 200 and cmyk[1] < 40 and cmyk[2] < 40
    # Grayscale input gives equal RGB channels.
    gray = by_name["b/gray.png"].astype(int)
    assert np.all(gray[..., 0] == gray[..., 1]) and np.all(gray[..., 1] == gray[..., 2])


def test_pixels_equal_the_crop_and_resize_of_the_source(tmp_path):
    """CelebA geometry: 178x218 -> the 108x108 box at (35, 55) -> 64x64 Lanczos."""
    src = tmp_path / "faces"
    src.mkdir()
    known = smooth_image(178, 218, seed=11)
    known.save(src / "000001.png")
    smooth_image(178, 218, seed=12).save(src / "000002.png")
    out = tmp_path / "out"
    preprocess(PreprocessConfig(source=str(src), out=str(out), size=64, crop="celeba"), log=lambda line: None)
    _, images = read_shards(out)
    assert crop_box(178, 218, "celeba", 108)[0] == (35, 55, 143, 163)
    exact = np.asarray(known.resize((64, 64), Image.Resampling.LANCZOS, box=(35, 55, 143, 163)))
    np.testing.assert_array_equal(images[0], exact)
    # ...which is, up to the filter's reach at the box edge, crop-then-resize.
    naive = np.asarray(known.crop((35, 55, 143, 163)).resize((64, 64), Image.Resampling.LANCZOS)).astype(int)
    diff = np.abs(images[0].astype(int) - naive)
    assert diff.mean() < 0.05 and diff.max() <= 2


def test_jpeg_draft_decoding_keeps_quality(tmp_path):
    """At 32x32 the 108 box allows a half-scale JPEG decode; it must look like a full decode."""
    src = tmp_path / "jpegs"
    src.mkdir()
    smooth_image(178, 218, seed=3).save(src / "face.jpg", quality=95)
    out = tmp_path / "out"
    preprocess(PreprocessConfig(source=str(src), out=str(out), size=32, crop="celeba"), log=lambda line: None)
    _, images = read_shards(out)
    full = Image.open(src / "face.jpg").convert("RGB")
    reference = np.asarray(full.resize((32, 32), Image.Resampling.LANCZOS, box=(35, 55, 143, 163))).astype(int)
    diff = np.abs(images[0].astype(int) - reference)
    assert diff.mean() < 1.0 and diff.max() <= 6, (diff.mean(), diff.max())


def test_grayscale_output_has_one_channel(mixed, tmp_path):
    root, good, _ = mixed
    out = tmp_path / "gray"
    m = preprocess(PreprocessConfig(source=str(root), out=str(out), size=16, channels=1, workers=1),
                   log=lambda line: None)
    _, images = read_shards(out)
    assert m["channels"] == 1 and images.shape == (len(good), 16, 16, 1)
    rgb = np.asarray(Image.open(root / "b/pic.bmp").convert("RGB").resize((16, 16), Image.Resampling.LANCZOS))
    expected = np.asarray(Image.fromarray(rgb).convert("L"), dtype=int)
    assert np.abs(images[good.index("b/pic.bmp"), ..., 0].astype(int) - expected).max() <= 2


def test_zip_input_matches_the_folder(mixed, mixed_out, tmp_path):
    root, good, bad = mixed
    out_dir, m_dir = mixed_out
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(root).as_posix())
        zf.writestr("__MACOSX/a/._celeb.jpg", b"\0\5\x16\7")
    r = runner.invoke(app, ["preprocess", str(archive), "--size", "32", "--crop", "center", "--workers", "1",
                            "--data-dir", str(tmp_path / "data")])
    assert r.exit_code == 0, r.output
    out = tmp_path / "data/processed/photos-32"
    m = json.loads((out / "manifest.json").read_text())
    assert (m["count"], m["skipped"]) == (len(good), len(bad))
    # Same images in the same order: byte-identical shards.
    assert [s["sha256"] for s in m["shards"]] == [s["sha256"] for s in m_dir["shards"]]
    assert f"{len(good)} images ({len(bad)} skipped" in r.output


def write_celeba(data_dir, n=6):
    imgs = data_dir / "celeba/img_align_celeba"
    imgs.mkdir(parents=True)
    for i in range(1, n + 1):
        smooth_image(178, 218, seed=i).save(imgs / f"{i:06d}.jpg", quality=90)
    # 1-4 train, 5 validation, 6 test (CelebA's own format: FILE PARTITION).
    parts = "".join(f"{i:06d}.jpg {0 if i <= 4 else i - 4}\n" for i in range(1, n + 1))
    (data_dir / "celeba/list_eval_partition.txt").write_text(parts)
    return imgs


def test_celeba_by_name_with_the_train_split(tmp_path):
    data = tmp_path / "data"
    write_celeba(data)
    r = runner.invoke(app, ["preprocess", "celeba", "--data-dir", str(data), "--size", "32", "--split", "train"])
    assert r.exit_code == 0, r.output
    m = json.loads((data / "processed/celeba-32/manifest.json").read_text())
    assert (m["count"], m["crop"], m["crop_size"], m["split"]) == (4, "celeba", 108, "train")
    assert "Used 4 of 6 images (train split" in r.output


def test_split_train_without_the_partition_file_says_where_it_looked(mixed, tmp_path):
    root, _, _ = mixed
    r = runner.invoke(app, ["preprocess", str(root), "--split", "train", "--out", str(tmp_path / "o")])
    assert r.exit_code == 1
    assert "list_eval_partition.txt" in r.output and str(root) in r.output and "--split all" in r.output


def test_error_messages_name_the_folder_and_what_is_there(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = runner.invoke(app, ["preprocess", str(empty), "--out", str(tmp_path / "o1")])
    assert r.exit_code == 1 and f"no images (jpg, jpeg, png, bmp, webp) in {empty}: found nothing" in r.output

    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a.txt", "b.txt", "c.csv"):
        (docs / name).write_text("x")
    r = runner.invoke(app, ["preprocess", str(docs), "--out", str(tmp_path / "o2")])
    assert r.exit_code == 1 and "found 3 other files (2 .txt, 1 .csv)" in r.output

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"")
    (broken / "b.png").write_text("nope")
    r = runner.invoke(app, ["preprocess", str(broken), "--out", str(tmp_path / "o3")])
    assert r.exit_code == 1
    assert f"none of the 2 image files in {broken} could be used" in r.output and "empty file" in r.output
    assert not (tmp_path / "o3" / "manifest.json").exists()

    (tmp_path / "a-file").write_text("x")
    r = runner.invoke(app, ["preprocess", str(broken), "--out", str(tmp_path / "a-file" / "out")])
    assert r.exit_code == 1 and "cannot create" in r.output and "choose a writable --out" in r.output

    r = runner.invoke(app, ["preprocess", str(tmp_path / "nowhere")])
    assert r.exit_code == 1 and "neither a known data set" in r.output
    r = runner.invoke(app, ["preprocess", "celeba", "--data-dir", str(tmp_path / "data")])
    assert r.exit_code == 1 and "dcgan download celeba" in r.output
    for bad in (["--size", "100"], ["--crop", "eyes"], ["--channels", "2"], ["--split", "valid"],
                ["--size", "64", "--crop-size", "32"]):
        r = runner.invoke(app, ["preprocess", str(empty)] + bad)
        assert r.exit_code == 2 and f"Invalid value for '{bad[-2]}'" in r.output, (bad, r.output)


def test_existing_output_needs_force_and_identical_rerun_is_a_no_op(mixed, tmp_path):
    root, good, _ = mixed
    out = tmp_path / "out"
    args = ["preprocess", str(root), "--out", str(out), "--size", "16", "--workers", "1"]
    assert runner.invoke(app, args).exit_code == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    r = runner.invoke(app, args)  # same settings, same files: nothing to do
    assert r.exit_code == 0 and "already up to date" in r.output and "--force" in r.output
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    r = runner.invoke(app, args[:-2] + ["--limit", "3"])  # other settings
    assert r.exit_code == 1 and "already holds preprocessed data" in r.output and "--force" in r.output
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    r = runner.invoke(app, args + ["--limit", "3", "--force"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["count"] == 3
    # The old shards went once the new manifest was in place.
    assert sorted(p.name for p in out.glob("*.tfrecord")) == sorted(s["file"] for s in m["shards"])


def test_output_dir_with_other_files_is_refused(mixed, tmp_path):
    root, _, _ = mixed
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    r = runner.invoke(app, ["preprocess", str(root), "--out", str(out), "--force"])
    assert r.exit_code == 1 and "holds other files (thesis.tex)" in r.output
    assert (out / "thesis.tex").read_text() == "precious" and len(list(out.iterdir())) == 1


def test_a_second_run_on_the_same_output_is_refused_while_one_runs(mixed, tmp_path):
    root, _, _ = mixed
    out = tmp_path / "busy"
    out.mkdir()
    from dcgan_cli.fsutil import DirLock

    with DirLock(out, "`dcgan preprocess`"):  # what a running preprocess holds
        with pytest.raises(DcganError, match=rf"in use by another `dcgan preprocess` \(PID {os.getpid()}\)"):
            preprocess(PreprocessConfig(source=str(root), out=str(out), size=16), log=lambda line: None)
    assert not (out / ".dcgan.lock").exists(), "the lock file goes with its holder"


# ----------------------------------------------------------------------------
# Interruption: a real process, stuck on a file that never finishes reading
# (like a hung network mount: tests/stuck_preprocess.py reads a named pipe
# first), killed part-way.


def _wait_for_reader(fifo, proc, timeout=180):
    """Open the pipe's write end once the preprocess has it open for reading; keeps it open (no data)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            if proc.poll() is not None:
                pytest.fail(f"preprocess ended early: {proc.communicate()}")
            time.sleep(0.05)
    pytest.fail("preprocess never reached the named pipe")


@pytest.mark.slow
@pytest.mark.subprocess
def test_interrupted_runs_keep_the_old_output_and_resume(tmp_path):
    src = tmp_path / "many"
    src.mkdir()
    n, stuck_at = 320, 290  # past the first chunk of 256, so shards exist when it sticks
    for i in range(n):
        smooth_image(24, 24, seed=i).save(src / f"img-{i:03d}.png")
    fifo = tmp_path / "hung-mount"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    # A complete output from before, which no interruption may damage.
    old = preprocess(PreprocessConfig(source=str(src), out=str(out), size=16, limit=50), log=lambda line: None)
    old_files = {s["file"]: (out / s["file"]).read_bytes() for s in old["shards"]}

    args = [sys.executable, str(Path(__file__).with_name("stuck_preprocess.py")), f"img-{stuck_at:03d}.png",
            str(fifo), "preprocess", str(src), "--out", str(out), "--size", "16", "--workers", "1",
            "--shard-mb", "0.01", "--force"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    # Run 1: killed outright (SIGKILL: no clean-up code runs at all).
    proc = subprocess.Popen(args, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    fd = _wait_for_reader(fifo, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    os.close(fd)
    assert json.loads((out / "manifest.json").read_text()) == old
    assert {f: (out / f).read_bytes() for f in old_files} == old_files
    progress = json.loads((out / ".progress.json").read_text())
    assert progress["shards"] and progress["next"] <= stuck_at

    # Run 2: resumes, sticks again, and is stopped with Ctrl-C.
    proc = subprocess.Popen(args, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    fd = _wait_for_reader(fifo, proc)
    proc.send_signal(signal.SIGINT)
    # The kernel may hand SIGINT to one of TensorFlow's threads; Python then acts
    # on it when the main thread next runs bytecode, i.e. once its blocked read
    # returns. A hung mount's read returns eventually; here, closing the pipe does it.
    try:
        _, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        os.close(fd)
        fd = None
        _, err = proc.communicate(timeout=120)
    if fd is not None:
        os.close(fd)
    assert proc.returncode == 130, err
    assert f"Resuming: {sum(s['count'] for s in progress['shards'])} images already in" in err
    assert "run the same command again to resume" in err and "Traceback" not in err
    assert json.loads((out / "manifest.json").read_text()) == old

    # Run 3: the mount is back; the run finishes from where the others stopped.
    r = runner.invoke(app, args[4:])
    assert r.exit_code == 0, r.output
    assert "Resuming:" in r.output
    m = json.loads((out / "manifest.json").read_text())
    assert (m["count"], m["skipped"]) == (n, 0)
    # Identical to an uninterrupted run, and nothing stale left behind.
    clean = preprocess(PreprocessConfig(source=str(src), out=str(tmp_path / "clean"), size=16, workers=1,
                                        shard_mb=0.01), log=lambda line: None)
    assert [(s["count"], s["sha256"]) for s in m["shards"]] == [(s["count"], s["sha256"]) for s in clean["shards"]]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([s["file"] for s in m["shards"]] + ["manifest.json", "skipped.txt", "small.txt"])


def test_remote_style_output_through_gfile(mixed, tmp_path):
    """TensorFlow's ram:// file system stands in for gs://: no local paths, locks or renames."""
    import tensorflow as tf

    from dcgan_cli.data.pipeline import make_dataset

    root, good, _ = mixed
    out = f"ram://bucket-{tmp_path.name}/faces-16"
    cfg = PreprocessConfig(source=str(root), out=out, size=16, workers=1, shard_mb=0.005)
    m = preprocess(cfg, log=lambda line: None)
    assert m["count"] == len(good) and len(m["shards"]) > 1
    assert sum(b.shape[0] for b in make_dataset(out, 4, repeat=False, drop_remainder=False)) == len(good)
    assert preprocess(cfg, log=lambda line: None).get("up_to_date")
    m2 = preprocess(PreprocessConfig(source=str(root), out=out, size=16, limit=2, force=True), log=lambda line: None)
    assert sorted(n for n in tf.io.gfile.listdir(out) if n.endswith(".tfrecord")) == [s["file"] for s in m2["shards"]]


def test_exif_rotation_is_applied(tmp_path):
    src = tmp_path / "phone"
    src.mkdir()
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (220, 0, 0)  # stored: red left, blue right
    a[:, 20:] = (0, 0, 220)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": red ends up on top
    Image.fromarray(a).save(src / "IMG_0001.JPG", exif=exif, quality=95)
    out = tmp_path / "out"
    preprocess(PreprocessConfig(source=str(src), out=str(out), size=16, crop="none"), log=lambda line: None)
    _, images = read_shards(out)
    top, bottom = images[0, :5].reshape(-1, 3).mean(0), images[0, -5:].reshape(-1, 3).mean(0)
    assert top[0] > 180 > top[2] and bottom[2] > 180 > bottom[0]


# ----------------------------------------------------------------------------
# Hostile files: special files, names no text file can hold, oversized zip members


@pytest.mark.subprocess
def test_special_files_named_like_images_are_skipped_without_being_opened(tmp_path):
    """A pipe named *.jpg used to hang the run forever (no output at all); a device never ended."""
    import socket

    src = tmp_path / "src"
    src.mkdir()
    smooth_image(30, 30, seed=1).save(src / "good.png")
    os.mkfifo(src / "pipe.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock.png"))
    (src / "zero.jpg").symlink_to("/dev/zero")
    out = tmp_path / "out"
    try:
        proc = subprocess.run([sys.executable, "-m", "dcgan_cli", "preprocess", str(src), "--out", str(out),
                               "--size", "16", "--workers", "1"], capture_output=True, text=True, timeout=150,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    finally:
        sock.close()
    assert proc.returncode == 0, proc.stderr
    assert "1 images (3 skipped" in proc.stdout
    reasons = dict(line.split("\t") for line in (out / "skipped.txt").read_text().splitlines())
    assert reasons == {"pipe.jpg": "a named pipe, not a regular file (not opened)",
                       "sock.png": "a socket, not a regular file (not opened)",
                       "zero.jpg": "a character device, not a regular file (not opened)"}


def test_any_file_name_is_one_escaped_utf8_line_in_every_list_file(tmp_path):
    """Not UTF-8, a newline, a tab, a backslash: every rerun used to crash writing small.txt."""
    from dcgan_cli.data.preprocess.reports import escape, parse_line, unescape

    src = tmp_path / "src"
    src.mkdir()
    names = {b"caf\xe9.png": "latin-1", b"new\nline.png": "newline", b"tab\there.png": "tab",
             b"back\\x41slash.png": "backslash", "\u00e9t\u00e9 \u2028.png".encode(): "separator"}
    for i, raw in enumerate(names):
        smooth_image(12, 12, seed=i).save(os.fsdecode(bytes(src) + b"/" + raw), "PNG")  # small: upscaled
        Path(os.fsdecode(bytes(src) + b"/bad-" + raw)).write_bytes(b"not a picture")
    out = tmp_path / "out"
    args = ["preprocess", str(src), "--out", str(out), "--size", "16", "--workers", "1"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "5 images (5 skipped" in r.output
    for listed, prefix in (("small.txt", b""), ("skipped.txt", b"bad-")):
        raw_text = (out / listed).read_bytes()
        text = raw_text.decode("utf-8")  # valid UTF-8, whatever the names
        lines = text.split("\n")[:-1]
        assert len(lines) == len(names) and text.splitlines() == lines, text  # one line per file
        found = {os.fsencode(parse_line(line)[0]) for line in lines}
        assert found == {prefix + raw for raw in names}  # each line leads back to its file
    assert "caf\\xe9.png\tupscaled from 12x12 to 16x16" in (out / "small.txt").read_text()
    assert "new\\nline.png\t" in (out / "small.txt").read_text()
    assert "back\\\\x41slash.png\t" in (out / "small.txt").read_text()
    assert "\u00e9t\u00e9 \\xe2\\x80\\xa8.png\t" in (out / "small.txt").read_text()
    # Reruns: nothing to do, and no crash.
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "already up to date" in r.output, r.output
    # The escaping round-trips anything a file name can hold.
    every = "".join(map(chr, range(1, 0x100))) + "\udc80\udcff\u2029\u200d\\x41\\\\"
    assert unescape(escape(every)) == every and "\n" not in escape(every) and escape("plain é.jpg") == "plain é.jpg"


def _zip_with(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_a_huge_zip_member_is_skipped_not_read_into_memory(tmp_path):
    """A 1 GiB member in a 1 MB zip used to be read whole (2.7 GB peak); now the cap stops it."""
    from dcgan_cli.data.preprocess.decoding import MAX_ZIP_MEMBER_BYTES

    good = tmp_path / "good.png"
    smooth_image(30, 30, seed=2).save(good)
    archive = tmp_path / "photos.zip"
    _zip_with(archive, {"a/good.png": good.read_bytes(), "a/huge.png": bytes(MAX_ZIP_MEMBER_BYTES + 1)})
    assert archive.stat().st_size < 1 << 20
    out = tmp_path / "out"
    m = preprocess(PreprocessConfig(source=str(archive), out=str(out), size=16, workers=1), log=lambda line: None)
    assert (m["count"], m["skipped"]) == (1, 1)
    (line,) = (out / "skipped.txt").read_text().splitlines()
    assert line.startswith("a/huge.png\t64.0 MB unpacked, over the 64 MB limit") and "unpack the zip" in line


def test_the_zip_reader_stops_at_the_limit_whatever_the_header_says(tmp_path):
    from dcgan_cli.data.preprocess.decoding import Skip, read_zip_member

    archive = tmp_path / "a.zip"
    _zip_with(archive, {"x.png": bytes(1000)})
    with zipfile.ZipFile(archive) as zf:
        assert read_zip_member(zf, "x.png", 1000) == bytes(1000)
        with pytest.raises(Skip, match="over the"):
            read_zip_member(zf, "x.png", 999)
        zf.getinfo("x.png").file_size = 10  # a header that lies: the reading itself must stop
        with pytest.raises((Skip, zipfile.BadZipFile)):
            read_zip_member(zf, "x.png", 500)


@pytest.mark.subprocess
def test_a_disk_that_fills_up_is_one_line_and_the_run_resumes_once_there_is_space(tmp_path):
    src = tmp_path / "noise"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(120):  # incompressible: 120 x 3 KB of pixels at 32x32
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(src / f"{i:03d}.png")
    with small_disk(tmp_path / "disk", 200) as disk:
        (disk / "earlier.txt").write_text("mine")
        out = disk / "out"
        args = ["preprocess", str(src), "--out", str(out), "--size", "32", "--workers", "1", "--shard-mb", "0.05"]
        r = runner.invoke(app, args)
        assert r.exit_code == 1 and r.output.count("\n") == 1 and "Traceback" not in r.output, r.output
        assert r.output.startswith(f"Error: writing {out} failed (") and "No space left on device" in r.output
        assert "run the same command again to resume" in r.output
        # Only what the progress record vouches for is left: no shard cut short by the full disk.
        progress = json.loads((out / ".progress.json").read_text())
        assert progress["shards"]
        assert sorted(p.name for p in out.iterdir()) == sorted([".progress.json"] + [s["file"] for s in
                                                                                     progress["shards"]])
        assert (disk / "earlier.txt").read_text() == "mine"
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        r = runner.invoke(app, args)
        assert r.exit_code == 0 and "Resuming:" in r.output, r.output
        assert json.loads((out / "manifest.json").read_text())["count"] == 120


def test_a_read_only_output_is_one_line_and_the_old_output_stays(mixed, tmp_path):
    root, _, _ = mixed
    out = tmp_path / "out"
    args = ["preprocess", str(root), "--out", str(out), "--size", "16", "--workers", "1"]
    assert runner.invoke(app, args + ["--limit", "3"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with read_only(out):
        r = runner.invoke(app, args + ["--force"])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "Traceback" not in r.output, r.output
    # The output's lock is the first write, so a read-only output is refused there, naming the fix.
    assert r.output.startswith(f"Error: cannot lock {out} (") and "make it writable" in r.output, r.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
