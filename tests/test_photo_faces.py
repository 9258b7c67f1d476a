"""Faces in whole photos: `dcgan anonymize`, `dcgan restore`, and the sphere the latent search keeps to.

The models are the shared tiny run (conftest.tiny_run: 16x16 RGB, latent 8), its
faces aligned with `--crop face`; the photos are textured scenes with a real
lfw face (scikit-image's lfw_subset) pasted at 100 px, which the real MTCNN
detector finds. Searches are a few steps: these tests check the plumbing and
the promises (pixels kept, same bytes), `dcgan bench --parts repair` the quality.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from helpers import ok, one_line_error, snapshot
from dcgan_cli.cli import app

runner = CliRunner()
SIZE, NZ = 16, 8
FAST = ["--steps", "4", "--restarts", "2", "--batch-size", "4", "--quiet"]
FACE_AT, FACE_SIDE = (20, 40), 100


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def pixels(path):
    return np.asarray(Image.open(path))


def write_scene(path, faces=(0,), size=(260, 180), seed=0):
    """A textured scene with lfw faces pasted at FACE_SIDE px, the first at FACE_AT, the others to its right."""
    from skimage.data import lfw_subset

    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
    bg = np.asarray(Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC)).astype(int)
    img = Image.fromarray(np.clip(bg + rng.integers(-20, 21, bg.shape), 0, 255).astype(np.uint8))
    lfw = lfw_subset()
    for k, f in enumerate(faces):
        face = Image.fromarray(np.round(lfw[f] * 255).astype(np.uint8)).convert("RGB")
        img.paste(face.resize((FACE_SIDE, FACE_SIDE), Image.Resampling.BICUBIC),
                  (FACE_AT[0] + k * (FACE_SIDE + 20), FACE_AT[1]))
    img.save(path)
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    pytest.importorskip("mtcnn")
    root = tmp_path_factory.mktemp("scenes")
    Image.fromarray(np.full((50, 70, 3), 128, np.uint8)).save(root / "empty.png")
    return write_scene(root / "one.png"), write_scene(root / "two.png", (1, 2), (300, 180), seed=1), root / "empty.png"


# ----------------------------------------------------------------------------
# the search keeps z on the sphere


def test_the_search_keeps_z_on_the_sphere_and_picks_realism_among_the_close_fits(tiny_run):
    from dcgan_cli.generate.repair import load_models
    from dcgan_cli.generate.search import Search, pick, search_latents

    models = load_models(tiny_run)
    targets = np.random.default_rng(0).uniform(-1, 1, (3, SIZE, SIZE, 3)).astype(np.float32)
    for sphere in (True, False):
        z, terms = search_latents(models, targets, np.ones_like(targets), "project",
                                  Search(steps=30, restarts=2, batch_size=4, lr=0.5, sphere=sphere))
        norms = np.linalg.norm(z, axis=1) / np.sqrt(NZ)
        if sphere:
            np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
        else:  # a free descent with a large step leaves it
            assert np.abs(norms - 1).max() > 0.05
        assert set(terms) == {"total", "pixel", "feature", "realism"}
    # of the fits within 10% of the best, the most real; a far better fit wins over realism
    assert pick(np.array([1.0, 1.05, 2.0]), np.array([0.0, 3.0, 9.0]), 0.1) == 1
    assert pick(np.array([1.0, 1.05, 2.0]), np.array([0.0, 3.0, 9.0]), 0.0) == 0


# ----------------------------------------------------------------------------
# anonymize


def _face_boxes(record):
    return [f["box"] for f in record["faces"]]


def _outside(shape, boxes):
    """bool (H, W): pixels whose centres lie outside every box."""
    h, w = shape[:2]
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    keep = np.ones((h, w), bool)
    for x, y, bw, bh in boxes:
        keep &= ~((xs >= x) & (xs <= x + bw) & (ys >= y) & (ys <= y + bh))
    return keep


@pytest.mark.slow
def test_anonymize_replaces_each_face_keeps_every_other_pixel_and_repeats_itself(tiny_run, scenes, tmp_path):
    one, two, empty = scenes
    a, b = tmp_path / "a", tmp_path / "b"
    args = ["--run", tiny_run, "--crop", "face", *FAST]
    result = ok(cli("anonymize", one, two, empty, "-o", a, *args))
    assert result.output.count("no face") == 1 and "empty.png" in result.output  # one line for the photo with none
    ok(cli("anonymize", one, two, empty, "-o", b, *args))
    assert snapshot(a) == snapshot(b)  # same seed, same bytes
    assert (a / "empty.png").read_bytes() == empty.read_bytes()
    assert json.loads((a / "empty.json").read_text())["faces"] == []
    for photo, n in ((one, 1), (two, 2)):
        record = json.loads((a / f"{photo.stem}.json").read_text())
        boxes = _face_boxes(record)
        assert len(boxes) == n and all(f["confidence"] > 0.9 and 0.5 < f["box_share_drawn"] <= 1
                                       for f in record["faces"])
        before, after = np.asarray(Image.open(photo).convert("RGB")), pixels(a / f"{photo.stem}.png")
        keep = _outside(before.shape, boxes)
        np.testing.assert_array_equal(after[keep], before[keep])
        x, y, w, h = (int(v) for v in boxes[0])
        centre = (slice(y + h // 4, y + 3 * h // 4), slice(x + w // 4, x + 3 * w // 4))
        assert np.abs(after[centre].astype(int) - before[centre]).mean() > 5  # the face itself changed
        # the whole box, chin included (past the run's framing: box_share_drawn < 1), is new: only a few
        # pixels of the 2% blend at its edge round back to their old bytes (97-99% change on the bench's faces)
        changed = np.any(after != before, -1)
        for f in record["faces"]:
            box = ~_outside(before.shape, [f["box"]])
            assert f["box_share_drawn"] < 0.95 and changed[box].mean() > 0.9, changed[box].mean()
            x, y, w, h = f["box"]
            chin = box & (np.mgrid[0:box.shape[0], 0:box.shape[1]][0] + 0.5 > y + 0.9 * h)
            assert changed[chin].mean() > 0.9
        z = np.load(a / record["faces"][0]["latents"])
        assert z.shape == (1, NZ) and z.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(z), np.sqrt(NZ), rtol=1e-5)
    # a face's latents draw its generated face again through `sample --latents`
    from dcgan_cli.generate.repair import load_models
    from dcgan_cli.generate.search import generate
    from dcgan_cli.pixels import to_uint8

    ok(cli("sample", tmp_path / "g.png", "--run", tiny_run, "--latents", a / "two-face2.npy", "--individual",
           tmp_path / "each"))
    drawn = to_uint8(generate(load_models(tiny_run), np.load(a / "two-face2.npy")))[0]
    np.testing.assert_array_equal(pixels(tmp_path / "each/latent-0000.png").reshape(drawn.shape), drawn)
    # another seed draws another face
    ok(cli("anonymize", one, "-o", tmp_path / "c", *args, "--seed", "1"))
    assert (tmp_path / "c/one.png").read_bytes() != (a / "one.png").read_bytes()
    one_line_error(cli("anonymize", one, "-o", a, *args), "already exists", "--force")


# ----------------------------------------------------------------------------
# restore


def test_the_anonymiser_keeps_of_the_close_fits_the_face_least_like_the_original(tiny_run, scenes):
    from dcgan_cli.generate import anonymize, photo_faces
    from dcgan_cli.generate.anonymize import face_recipe, likeness
    from dcgan_cli.generate.repair import load_models
    from dcgan_cli.generate.search import Search

    # likeness: 1 for the face itself, also under a change of light; lower for another face
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (1, SIZE, SIZE, 3)).astype(np.uint8)
    hole = np.zeros((1, SIZE, SIZE), bool)
    hole[:, 3:13, 3:13] = True
    np.testing.assert_allclose(likeness(face, face * 0.5 + 20, hole), 1.0)
    assert likeness(face, rng.integers(0, 256, face.shape), hole)[0] < 0.5
    models = load_models(tiny_run)
    photo = photo_faces.load_photos([scenes[0]])
    found = photo_faces.find_faces(photo, 20)
    faces = [photo_faces.aligned(photo[0], 0, found[0][0], face_recipe(models.config, "face"))]
    seen = {}
    unlike = anonymize._unlike

    def spy(*a):  # every start's score, to compare with the one kept
        prefer = unlike(*a)
        return lambda z: seen.setdefault(len(seen), (z, prefer(z)))[1]

    anonymize._unlike = spy
    try:  # a tolerance every start meets: the least alike of all 4 starts is kept
        search = Search(steps=4, restarts=4, batch_size=4, fit_slack=1e6)
        _, z, records = anonymize.anonymize_faces(models, faces, search)
    finally:
        anonymize._unlike = unlike
    starts, scores = seen[0]
    np.testing.assert_array_equal(z[0], starts[np.argmax(scores)])
    assert np.ptp(scores) > 0.01  # the starts differ, so the choice matters
    # the fit-only choice (no tolerance: the best fit) is another start, more like the original
    _, fit_z, _ = anonymize.anonymize_faces(models, faces, replace(search, fit_slack=0.0))
    fit_row = int(np.flatnonzero((starts == fit_z[0]).all(1))[0])
    assert scores[fit_row] < scores.max()
    assert -1 <= records[0]["likeness"] <= 1


def test_degradations_parse_and_degrade_as_named():
    from dcgan_cli.errors import UsageError
    from dcgan_cli.generate.restore import Degradation, degrade_images, parse_degradation

    assert parse_degradation("downsample") == Degradation(0.0)
    assert parse_degradation("downsample:4+blur:1") == Degradation(4.0, 1.0)
    assert parse_degradation("noise:5") == Degradation(None, 0.0, 5.0)
    for bad in ("sharpen", "blur", "downsample:0.5", "blur:1+blur:2", ""):
        with pytest.raises(UsageError):
            parse_degradation(bad)
    img = np.zeros((1, 8, 8, 1), np.uint8)
    img[0, :4] = 255
    low = degrade_images(img, Degradation(2.0), 4)
    assert low.shape == (1, 4, 4, 1) and (low[0, :2] == 255).all() and (low[0, 2:] == 0).all()  # box averages
    blurred = degrade_images(img, Degradation(None, 1.0), 8)
    assert 0 < blurred[0, 4, 0, 0] < 128 < blurred[0, 3, 0, 0] < 255


@pytest.mark.slow
def test_restore_fits_the_input_better_than_its_start_and_writes_latents(tiny_run, image_folder, scenes, tmp_path):
    from dcgan_cli.generate.restore import Degradation, degrade_images

    truths = np.stack([np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC))
                       for p in sorted(image_folder.iterdir())[:2]])
    lows = degrade_images(truths, Degradation(2.0), SIZE // 2)
    names = []
    for i, low in enumerate(lows):
        Image.fromarray(low).save(tmp_path / f"low{i}.png")
        names.append(tmp_path / f"low{i}.png")
    a, b = tmp_path / "a", tmp_path / "b"
    args = ["--degradation", "downsample", "--run", tiny_run, "--steps", "40", "--restarts", "2", "--batch-size",
            "4", "--lr", "0.1", "--quiet"]
    ok(cli("restore", *names, "-o", a, *args))
    ok(cli("restore", *names, "-o", b, *args))
    assert snapshot(a) == snapshot(b)
    for name in names:
        assert pixels(a / f"{name.stem}.png").shape == (SIZE, SIZE, 3)
        face = json.loads((a / f"{name.stem}.json").read_text())["faces"][0]
        assert face["consistency"] < face["start_consistency"]
        z = np.load(a / face["latents"])
        np.testing.assert_allclose(np.linalg.norm(z), np.sqrt(NZ), rtol=1e-5)
    # a whole photo: the face restored in place, every pixel outside its box kept
    ok(cli("restore", scenes[0], "-o", tmp_path / "photo", "--crop", "face", "--degradation", "blur:1", "--run", tiny_run, *FAST))
    record = json.loads((tmp_path / "photo/one.json").read_text())
    before, after = np.asarray(Image.open(scenes[0]).convert("RGB")), pixels(tmp_path / "photo/one.png")
    keep = _outside(before.shape, _face_boxes(record))
    np.testing.assert_array_equal(after[keep], before[keep])
    assert not np.array_equal(after, before)


# ----------------------------------------------------------------------------
# refusals: one line, nothing written


def test_refusals_name_the_fix_and_write_nothing(tiny_run, scenes, tmp_path):
    one, _, empty = scenes
    out = tmp_path / "out"
    args = ["--run", tiny_run, "--crop", "face", *FAST]
    one_line_error(cli("anonymize", empty, "-o", out, *args), "no face", "--min-face")
    one_line_error(cli("anonymize", one, "-o", out, *args, "--min-face", "500"), "no face of at least 500")
    Image.fromarray(np.zeros((2 * SIZE, 2 * SIZE, 3), np.uint8)).save(tmp_path / "big.png")
    one_line_error(cli("restore", tmp_path / "big.png", "-o", out, "--degradation", "downsample", "--run", tiny_run),
                   "larger than the run's 16x16")
    one_line_error(cli("restore", one, "-o", out, "--degradation", "sharpen:2", "--run", tiny_run), "downsample",
                   code=2)
    (tmp_path / "file").write_text("x")
    one_line_error(cli("anonymize", one, "-o", tmp_path / "file", *args), "names a folder", code=2)
    assert not out.exists()


# ----------------------------------------------------------------------------
# the bench's scores (bench/photos.py): NumPy checks


def test_the_privacy_baselines_touch_only_the_boxes_and_the_matchers_find_their_own():
    from dcgan_cli.bench.photos import (blur_boxes, box_crops, kept_outside, matcher_features, pixelate_boxes,
                                        rank1, redact_boxes, scenes)

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (3, 25, 25), dtype=np.uint8)
    (img, boxes), = scenes(faces, [[0, 1]], seed=0)
    before = np.asarray(img)
    for fn in (blur_boxes, pixelate_boxes, redact_boxes):
        after = fn(before, boxes)
        assert kept_outside(before, after, boxes) and not np.array_equal(after, before)
    moved = before.copy()
    moved[0, 0] ^= 1
    assert not kept_outside(before, moved, boxes)
    crops = box_crops(before, boxes)
    feats = matcher_features(crops)
    assert all(rank1(f, f).all() for f in feats.values())


def test_the_identity_matcher_embeds_each_face_aligned_as_its_detection_says():
    from dcgan_cli.bench.photos import face_features, privacy_line, rank1, scenes
    from dcgan_cli.data.preprocess.faces import Face
    from dcgan_cli.generate.repair import CropRecipe

    faces = np.random.default_rng(1).integers(0, 256, (2, 25, 25), dtype=np.uint8)
    (img, boxes), = scenes(faces, [[0, 1]], seed=0)
    # eyes at a third of each pasted square's height: what a detector would report
    found = [[Face(b, 1.0, np.array([[b[0] + b[2] * 0.3, b[1] + b[2] / 3], [b[0] + b[2] * 0.7, b[1] + b[2] / 3]]))
              for b in boxes]]
    recipe = CropRecipe("face", 108, 16, 1)
    seen = []

    def embed(crops):  # the embedding's stand-in: the aligned crops' unit pixels
        seen.append(crops)
        flat = crops.reshape(len(crops), -1) - crops.mean()
        return flat / np.linalg.norm(flat, axis=1, keepdims=True)

    before = np.asarray(img)
    gallery = face_features([before], found, recipe, embed)
    assert seen[0].shape == (2, 16, 16, 1) and rank1(gallery["identity"], gallery["identity"]).all()
    swapped = before.copy()  # the two faces' squares exchanged: each is found as the other
    (x0, y0, w0, _), (x1, y1, w1, _) = boxes
    side = min(w0, w1)
    swapped[y0:y0 + side, x0:x0 + side], swapped[y1:y1 + side, x1:x1 + side] = \
        before[y1:y1 + side, x1:x1 + side], before[y0:y0 + side, x0:x0 + side]
    assert not rank1(face_features([swapped], found, recipe, embed)["identity"], gallery["identity"]).any()
    row = {"kept": 1.0, "detected": 1.0, "reid_hog": 0.5, "reid_pixels": 0.25, "reid_identity": 0.05}
    line = privacy_line(0, {m: row for m in ("ours", "blur", "pixelate")} | {
        "original": {"detected": 1.0}, "faces": 2, "photos": 1, "missed": 0, "clean": row,
        "ours+check": {**row, "searches": 1.5, "still_same": 0.5}})
    assert "identity 5%" in line and "clean (other scenes) re-id hog 50% pixels 25% identity 5%" in line
    assert "| ours+check kept 100% detected 100% re-id hog 50% pixels 25% identity 5% searches 1.50 still same 50% |" \
        in line


@pytest.mark.slow
def test_with_an_identity_model_a_face_still_verified_as_its_person_is_searched_again(tiny_run, scenes, tmp_path):
    from dcgan_cli.identity.model import build_embedder
    from dcgan_cli.identity.verification import META_FORMAT, save_model, write_meta

    save_model(build_embedder(SIZE, 3, dim=8, width=4), tmp_path / "emb.keras")
    # unit embeddings are at most 2 apart: under a threshold of 2.5 every new face "is the same person"
    write_meta(tmp_path / "emb.keras", {"format": META_FORMAT, "image_size": SIZE, "channels": 3, "crop": "face",
                                        "threshold": 2.5})
    result = ok(cli("anonymize", scenes[0], "-o", tmp_path / "o", "--run", tiny_run, "--crop", "face", *FAST,
                    "--identity-model", tmp_path / "emb.keras"))
    face = json.loads((tmp_path / "o/one.json").read_text())["faces"][0]
    assert face["attempts"] == 4 and 0 < face["identity"]["distance"] <= 2 and face["identity"]["same_person"]
    assert "1 still verified as the same person after 4 searches" in result.output
