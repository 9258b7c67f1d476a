"""`dcgan preprocess --crop face`: the real MTCNN detector on real faces (lfw_subset), real alignment.

Faces are pasted into larger pictures at a known place, size and rotation, so
where their eyes must land is known exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from helpers import one_line_error
from dcgan_cli.cli import app
from dcgan_cli.data.preprocess import PreprocessConfig, faces, preprocess
from dcgan_cli.data.shards import ShardWriter

pytest.importorskip("mtcnn")
skdata = pytest.importorskip("skimage.data")

runner = CliRunner()
BG = (90, 120, 150)


@pytest.fixture(scope="module")
def lfw():
    return skdata.lfw_subset()  # 200 x 25x25 grey: 100 faces, then 100 non-faces


def face(lfw, k, side):
    return Image.fromarray((lfw[k] * 255).astype(np.uint8)).convert("RGB").resize((side, side),
                                                                               Image.Resampling.BICUBIC)


def target_eyes(size, crop=108):
    """Where CelebA's eyes fall in a `size` output of the celeba box (pixel-centre coordinates)."""
    return (np.array(faces.CELEBA_EYES) - ((178 - crop) / 2, (218 - crop) / 2)) * size / crop


def paste(photo, img, left, top, angle=0.0):
    """Paste `img` rotated by `angle` degrees (counter-clockwise) with its top-left at (left, top);
    returns the map from `img`'s coordinates to the photo's."""
    rot = img.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=BG)
    photo.paste(rot, (left, top))
    w, h = img.size
    c_in, c_out = np.array([w / 2, h / 2]), np.array([left + rot.width / 2, top + rot.height / 2])
    t = np.radians(angle)
    r = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])  # y down: counter-clockwise on screen
    return lambda p: (np.asarray(p) - c_in) @ r.T + c_out


def run(folder, out, **kw):
    return preprocess(PreprocessConfig(source=str(folder), out=str(out), crop="face", workers=1, **kw),
                      log=lambda m: None)


def read_examples(out, size, channels=3):
    import tensorflow as tf

    m = json.loads((out / "manifest.json").read_text())
    images = []
    for s in m["shards"]:
        for rec in tf.data.TFRecordDataset(str(out / s["file"])):
            ex = tf.train.Example.FromString(rec.numpy())
            images.append(np.frombuffer(ex.features.feature["image"].bytes_list.value[0], np.uint8)
                          .reshape(size, size, channels))
    return m, images


def test_alignment_puts_the_eyes_at_celebas_positions():
    """Pure geometry: two dots at any place, distance and angle land on the target eye positions."""
    for (l, r), size in [(((300.0, 410.0), (420.0, 380.0)), 64), (((50.5, 40.5), (70.5, 41.5)), 128),
                         (((200.0, 100.0), (140.0, 160.0)), 32)]:  # the last: given right eye first, steep
        im = Image.new("L", (640, 480), 0)
        pix = np.zeros((480, 640), np.uint8)
        for x, y in (l, r):
            yy, xx = np.mgrid[0:480, 0:640] + 0.5
            pix[((xx - x) ** 2 + (yy - y) ** 2) < 9] = 255
        im = Image.fromarray(pix)
        out = np.asarray(faces.align(im, np.array([l, r]), size)).astype(float)
        found = []
        for half in (out[:, :size // 2], out[:, size // 2:]):  # one dot each side
            yy, xx = np.mgrid[0:size, 0:half.shape[1]] + 0.5
            found.append(((xx * half).sum() / half.sum(), (yy * half).sum() / half.sum()))
        found[1] = (found[1][0] + size // 2, found[1][1])
        np.testing.assert_allclose(found, target_eyes(size), atol=0.6)


def test_lfw_faces_are_found_and_non_faces_mostly_not(lfw):
    photos = [Image.fromarray((a * 255).astype(np.uint8)) for a in lfw]
    found = [len(f) > 0 for f in faces.detect(photos)]
    assert sum(found[:100]) >= 90, sum(found[:100])
    assert sum(found[100:]) <= 5, sum(found[100:])


def test_a_pasted_face_comes_out_aligned(lfw, tmp_path):
    size = 128
    src = face(lfw, 3, 120)
    truth = faces.detect([src])[0][0].landmarks[:2]  # its eyes, found where nothing else is in view
    photo = Image.new("RGB", (480, 360), BG)
    to_photo = paste(photo, src, 200, 80, angle=15)
    (tmp_path / "photos").mkdir()
    photo.save(tmp_path / "photos" / "one.png")

    found = faces.detect([photo])[0]
    assert len(found) == 1
    np.testing.assert_allclose(found[0].landmarks[:2], to_photo(truth), atol=3)  # the detector, in the photo
    m, _ = faces.alignment(found[0].landmarks, size)
    true_out = np.c_[to_photo(truth), [1, 1]] @ m.T  # where the true eyes land in the output
    np.testing.assert_allclose(true_out, target_eyes(size), atol=4)

    run(tmp_path / "photos", tmp_path / "out", size=size)
    manifest, images = read_examples(tmp_path / "out", size)
    assert manifest["count"] == 1 and manifest["crop"] == "face"
    again = faces.detect([Image.fromarray(images[0])])[0]  # the detector on the output
    assert len(again) == 1
    np.testing.assert_allclose(again[0].landmarks[:2], target_eyes(size), atol=4)


def test_two_faces_give_two_examples_and_photos_without_one_are_listed(lfw, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    two = Image.new("RGB", (520, 300), BG)
    paste(two, face(lfw, 5, 110), 40, 90, angle=-10)
    paste(two, face(lfw, 20, 140), 300, 60, angle=8)
    two.save(photos / "a-two.jpg", quality=92)
    Image.fromarray((lfw[150] * 255).astype(np.uint8)).resize((200, 200)).save(photos / "b-none.png")
    small = Image.new("RGB", (400, 300), BG)
    paste(small, face(lfw, 7, 48), 60, 60)
    small.save(photos / "c-small.png")

    run(photos, tmp_path / "out", size=32)
    m, images = read_examples(tmp_path / "out", 32)
    assert m["count"] == 3 and m["source_images"] == 3 and m["skipped"] == 1
    skipped = (tmp_path / "out" / "skipped.txt").read_text()
    assert skipped == "b-none.png\tno face found\n"
    assert all(im.shape == (32, 32, 3) and im.std() > 10 for im in images)

    m = run(photos, tmp_path / "big", size=32, min_face=60)  # the 48-px face is dropped
    assert m["count"] == 2 and m["min_face"] == 60
    assert "c-small.png\tno face of at least 60 px found" in (tmp_path / "big" / "skipped.txt").read_text()


def test_shards_close_between_photos_only(lfw, tmp_path):
    """A photo's faces never straddle two shards, so a resumed run restarts at a whole photo."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        two = Image.new("RGB", (520, 300), BG)
        paste(two, face(lfw, 10 + i, 110), 40, 90)
        paste(two, face(lfw, 30 + i, 110), 300, 90)
        two.save(photos / f"p{i}.png")
    m = run(photos, tmp_path / "out", size=16, shard_mb=1e-6)  # every shard "full" after one record
    assert [s["count"] for s in m["shards"]] == [2, 2, 2]
    progress_free = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert ".progress.json" not in progress_free

    w = ShardWriter(tmp_path / "w", "t", limit=1)
    (tmp_path / "w").mkdir()
    assert w.add(b"x", may_close=False) is None and w.add(b"y")["count"] == 2


def test_cli_face_crop_and_its_summary(lfw, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    photo = Image.new("RGB", (300, 300), BG)
    paste(photo, face(lfw, 2, 120), 90, 90)
    photo.save(photos / "me.jpg")
    res = runner.invoke(app, ["preprocess", str(photos), "--crop", "face", "--size", "16", "--workers", "1",
                              "--data-dir", str(tmp_path / "data")])
    assert res.exit_code == 0, res.output
    assert "1 faces from 1 photos" in res.output
    assert (tmp_path / "data" / "processed" / "photos-faces-16" / "manifest.json").exists()
    res = runner.invoke(app, ["preprocess", str(photos), "--min-face", "40", "--data-dir", str(tmp_path / "data")])
    one_line_error(res, "--min-face applies to --crop face")


@pytest.mark.subprocess
def test_without_the_extra_the_error_names_it(tmp_path):
    """mtcnn hidden from a real process (not mocked): one line that names the extra, nothing written."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 64)).save(photos / "x.png")
    code = ("import sys; sys.modules['mtcnn'] = None\n"
            "from dcgan_cli.cli import app\n"
            f"app([ 'preprocess', {str(photos)!r}, '--crop', 'face', '--out', {str(tmp_path / 'out')!r}])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert one_line_error(res) == ("Error: --crop face needs the face detector, which is not installed; run: "
                                   "pip install 'dcgan-cli[faces]'")
    assert not (tmp_path / "out").exists()
