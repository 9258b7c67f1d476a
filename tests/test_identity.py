"""The identity network on real data with real classes: sklearn's digits, seven trained, three never seen.

Real tiny training, real files, no mocks: the saved model loads in a fresh
process without dcgan_cli, verify/identify read image files the way the
training data was cropped, and the held-out identities are never trained on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dcgan_cli.cli import app
from dcgan_cli.errors import DcganError
from dcgan_cli.identity.config import IdentityConfig
from dcgan_cli.identity.data import (PKSampler, check_disjoint, dihedral, load_identities, split_identities,
                                     view_batch, view_identities)
from dcgan_cli.identity import verification as ver
from helpers import TINY_IDENTITY as TINY

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """A run trained through the CLI: 7 digits, 3 held out."""
    runs = tmp_path_factory.mktemp("runs")
    r = runner.invoke(app, ["identity", "train", "--data", str(digits), "--runs-dir", str(runs), "--epochs", "4",
                            "--width", "8", "--embedding-dim", "16", "--p-identities", "7", "--k-images", "4",
                            "--holdout", "3", "--no-flip", "--augment", "0", "--quiet"])
    assert r.exit_code == 0, r.output
    run = Path(r.output.strip().splitlines()[-1].split(": ", 1)[1])
    return run


def test_split_holds_out_whole_identities_fixed_by_the_data():
    ids = np.repeat(np.arange(10), 5)
    train, held = split_identities(ids, 3)
    assert len(held) == 3 and len(train) == 7 and not set(train) & set(held)
    # The same people whatever the image order; a share works as well as a count.
    np.testing.assert_array_equal(split_identities(ids[::-1], 3)[1], held)
    assert len(split_identities(np.repeat(np.arange(100), 2), 0.1)[1]) == 10
    with pytest.raises(DcganError, match="also trained on"):
        check_disjoint(train, np.r_[held, train[:1]])
    with pytest.raises(DcganError, match="too few"):
        split_identities(np.arange(3), 2)


def test_pk_batches_hold_p_identities_of_k_images_and_repeat_per_step():
    ids = np.r_[np.repeat(np.arange(6), 5), [99]]  # 99 has one image: never sampled (no positive)
    s = PKSampler(ids, 4, 3, seed=1)
    b = s.batch(7)
    people, counts = np.unique(ids[b], return_counts=True)
    assert len(people) == 4 and (counts == 3).all() and 99 not in people
    np.testing.assert_array_equal(b, PKSampler(ids, 4, 3, seed=1).batch(7))
    assert not np.array_equal(b, s.batch(8))


def test_dihedral_gives_the_eight_turns_and_mirrors_of_an_image():
    x = np.arange(9, dtype=np.uint8).reshape(1, 3, 3, 1)  # no symmetry: all eight differ
    out = dihedral(np.repeat(x, 8, axis=0), np.arange(8))
    assert len({o.tobytes() for o in out}) == 8
    np.testing.assert_array_equal(out[0], x[0])
    np.testing.assert_array_equal(out[1, :, :, 0], np.rot90(x[0, :, :, 0]))  # a quarter turn, anticlockwise
    np.testing.assert_array_equal(out[4, :, :, 0], x[0, :, ::-1, 0])  # the mirror image
    np.testing.assert_array_equal(out[6, :, :, 0], x[0, ::-1, :, 0])  # mirrored and half a turn: upside down
    for t in range(8):  # each against NumPy's own turns and mirrors, on a non-square-symmetric RGB image
        rgb = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
        want = np.rot90(np.flip(rgb, axis=2) if t >= 4 else rgb, t % 4, axes=(1, 2))
        np.testing.assert_array_equal(dihedral(rgb, np.full(2, t)), want)


def test_class_augment_makes_each_turn_of_each_identity_its_own_class():
    images = np.arange(3 * 3 * 3, dtype=np.uint8).reshape(3, 3, 3, 1)
    ids = np.array([5, 5, 9])  # images 0 and 1 are one person, image 2 another
    np.testing.assert_array_equal(view_identities(ids, 1), ids)  # off: the identities as they are
    labels = view_identities(ids, 8)
    assert len(labels) == 24 and len(np.unique(labels)) == 16  # 2 people x 8 views
    for s in range(24):
        i, t = divmod(s, 8)
        assert labels[s] == ids[i] * 8 + t  # sample s: image s // 8 under symmetry s % 8
        np.testing.assert_array_equal(view_batch(images, np.array([s]), 8)[0], dihedral(images[i:i + 1], [t])[0])
    # The same person under the same symmetry is one class; under another symmetry, or another person, not.
    assert labels[0 * 8 + 3] == labels[1 * 8 + 3] != labels[1 * 8 + 4] and labels[2 * 8 + 3] != labels[3]
    np.testing.assert_array_equal(view_batch(images, np.array([2, 0]), 1), images[[2, 0]])


def test_class_augment_needs_flips_off(digits):
    with pytest.raises(DcganError, match="add --no-flip"):
        IdentityConfig(class_augment="dihedral", flip=True)
    with pytest.raises(DcganError, match="--class-augment must be one of none, dihedral"):
        IdentityConfig(class_augment="rot13")
    args = ["identity", "train", "--data", str(digits), "--class-augment", "dihedral", "--dry-run"]
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and "add --no-flip" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, args + ["--no-flip"])
    assert r.exit_code == 0 and json.loads(r.output)["class_augment"] == "dihedral", r.output
    # Faces keep the default: a mirrored face is the same person.
    assert IdentityConfig().class_augment == "none" and IdentityConfig().flip


def test_digits_carry_their_classes(digits):
    images, ids, m = load_identities(digits)
    assert images.shape == (400, 16, 16, 1) and sorted(np.unique(ids)) == list(range(10))
    assert m["labels"][0]["classes"] == [str(i) for i in range(10)]


@pytest.mark.slow
@pytest.mark.subprocess
def test_train_writes_a_run_with_a_portable_model_and_a_threshold(trained, tmp_path):
    meta = json.loads((trained / "embedding.json").read_text())
    cfg = json.loads((trained / "identity_config.json").read_text())
    assert cfg["loss"] == "arcface" and cfg["epochs"] == 4 and cfg["class_augment"] == "none"
    assert len(meta["heldout_identities"]) == 3 and not set(meta["heldout_identities"]) & set(meta["train_identities"])
    assert (meta["image_size"], meta["channels"], meta["crop"]) == (16, 1, "none")
    v = meta["verification"]
    # 3 unseen digits of 40 images: 3 x 780 distinct same pairs, so 4,680 pairs, not 6,000, and it says so.
    assert v["pairs"] == 4680 and v["folds"] == 10 and 0.0 < meta["threshold"] < 2.0
    assert "2,340 distinct same-person pairs" in v["note"]
    assert v["accuracy"] > 0.6, v  # chance is 0.5: it learned something that carries over to unseen classes
    assert (trained / "roc.png").stat().st_size > 1000
    rows = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    # The .keras file loads in a process that never imports dcgan_cli, and gives unit vectors.
    code = ("import sys, numpy as np, keras\n"
            f"m = keras.saving.load_model({str(trained / 'embedding.keras')!r})\n"
            "e = np.asarray(m(np.zeros((2, 16, 16, 1), 'float32')))\n"
            "assert 'dcgan_cli' not in sys.modules\n"
            "print(e.shape, round(float(np.linalg.norm(e[0])), 4))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, cwd=tmp_path).stdout
    assert out.strip() == "(2, 16) 1.0"


def digit_png(digits_dir: Path, digit: int, k: int) -> Path:
    return digits_dir.parent / "digits" / str(digit) / f"{k:04d}.png"


@pytest.mark.slow
def test_verify_and_identify_on_unseen_digits(trained, digits, tmp_path):
    meta = json.loads((trained / "embedding.json").read_text())
    held = meta["heldout_identities"]
    a, b, c = digit_png(digits, held[0], 0), digit_png(digits, held[0], 1), digit_png(digits, held[1], 0)
    r = runner.invoke(app, ["verify", str(a), str(b), "--identity-model", str(trained), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert set(out) >= {"verified", "distance", "threshold", "model"}
    assert out["threshold"] == pytest.approx(meta["threshold"], abs=1e-6)
    assert out["verified"] == (out["distance"] < out["threshold"])
    # A photo against itself: distance 0, verified; --threshold overrides the stored one.
    r = runner.invoke(app, ["verify", str(a), str(a), "--identity-model", str(trained / "embedding.keras"),
                            "--threshold", "0.001"])
    assert r.exit_code == 0 and "verified  true" in r.output and "threshold 0.001" in r.output
    # identify: one photo per unseen digit in the gallery (one-shot); that very photo is found at distance 0.
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for d in held:
        (gallery / f"digit{d}.png").write_bytes(digit_png(digits, d, 0).read_bytes())
    r = runner.invoke(app, ["identify", str(digit_png(digits, held[1], 0)), "--gallery", str(gallery),
                            "--identity-model", str(trained), "--top", "2", "--json"])
    assert r.exit_code == 0, r.output
    found = json.loads(r.output)
    assert found["identity"] == f"digit{held[1]}" and len(found["matches"]) == 2
    assert found["matches"][0]["distance"] == pytest.approx(0.0, abs=1e-3)
    other = digit_png(digits, held[1], 5)
    r = runner.invoke(app, ["identify", str(other), "--gallery", str(gallery), "--identity-model", str(trained),
                            "--threshold", "0.0001"])
    assert r.exit_code == 0 and r.output.startswith("unknown")
    # Bad input: one line naming the fix.
    r = runner.invoke(app, ["verify", str(a), str(tmp_path / "nope.png"), "--identity-model", str(trained)])
    assert r.exit_code == 1 and "Error: no image at" in r.output
    (tmp_path / "lonely.keras").write_bytes((trained / "embedding.keras").read_bytes())
    r = runner.invoke(app, ["verify", str(a), str(b), "--identity-model", str(tmp_path / "lonely.keras")])
    assert r.exit_code == 1 and "has no lonely.json beside it" in r.output


@pytest.mark.slow
def test_evaluate_verification_on_held_out_identities(trained, tmp_path):
    roc = tmp_path / "curve.png"
    r = runner.invoke(app, ["evaluate", "--verification", "--identity-model", str(trained), "--pairs", "200",
                            "--roc", str(roc), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["pairs"] == 200 and out["same_pairs"] == 100 and out["identities"] == 3
    assert 0.5 <= out["roc_auc"] <= 1 and roc.stat().st_size > 1000
    assert len(out["fold_accuracies"]) == 10 and out["far_resolution"] == pytest.approx(0.01)
    meta = json.loads((trained / "embedding.json").read_text())
    assert meta["threshold"] == pytest.approx(out["threshold"])
    r = runner.invoke(app, ["evaluate", "--verification", "--identity-model", str(trained), "--pairs", "200"])
    assert r.exit_code == 0 and "accuracy" in r.output and "FAR steps are 1%" in r.output


@pytest.mark.slow
def test_evaluation_refuses_people_the_model_trained_on(trained, tmp_path):
    import shutil

    shutil.copy(trained / "embedding.keras", tmp_path / "m.keras")
    meta = json.loads((trained / "embedding.json").read_text())
    meta["heldout_identities"] = meta["heldout_identities"] + meta["train_identities"][:1]  # a tampered split
    (tmp_path / "m.json").write_text(json.dumps(meta))
    r = runner.invoke(app, ["evaluate", "--verification", "--identity-model", str(tmp_path / "m.keras"), "--pairs", "200"])
    assert r.exit_code == 1 and "were also trained on" in r.output


def test_synthetic_celeba_identities_split_disjoint(tmp_path):
    """CelebA's annotation files -> identities in the shards -> a held-out split with no person on both sides."""
    from test_labels import celeba_tree

    from dcgan_cli.data.preprocess import PreprocessConfig, preprocess

    ids = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    img_dir = celeba_tree(tmp_path, n=len(ids), identities=ids, attr_file=False)
    preprocess(PreprocessConfig(source=str(img_dir), out=str(tmp_path / "c"), size=16, crop="celeba", workers=1))
    images, got, _ = load_identities(tmp_path / "c")
    assert got.tolist() == ids and images.shape == (12, 16, 16, 3)
    train, held = split_identities(got, 2)
    assert len(held) == 2 and set(train) | set(held) == set(ids) and not set(train) & set(held)


def test_protocol_numbers_on_known_distances():
    same = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    d = np.r_[np.linspace(0.1, 0.5, 50), np.linspace(0.6, 1.0, 50)]  # perfectly separable
    fold = np.r_[np.arange(50) % 10, np.arange(50) % 10]
    r = ver.protocol(d, same, fold)
    assert r["accuracy"] == 1.0 and r["roc_auc"] == 1.0 and 0.5 < r["threshold"] < 0.6
    d2 = d.copy()
    d2[0] = 0.9  # one same pair far away: 37 of the 50 different pairs (0.6 ... 0.894) are closer
    assert ver.roc_auc(d2, same) == pytest.approx(1 - 37 / 2500)
    t, tar, far = ver.threshold_at_far(d2, same, 0.02)  # 1 false accept allowed of 50
    assert far <= 0.02 and tar == pytest.approx(49 / 50)


@pytest.mark.slow
def test_resume_after_ctrl_c_trains_what_an_uninterrupted_run_would(digits, tmp_path):
    import signal

    from dcgan_cli.identity.train import train_identity
    from dcgan_cli.errors import TrainingInterrupted

    # With every random thing on: dropout, flips, shifts, rotations, zooms.
    cfg = IdentityConfig(data=str(digits), runs_dir=str(tmp_path), epochs=2, steps_per_epoch=3,
                         **{**TINY, "augment": 0.1, "flip": True})
    whole = train_identity(cfg, quiet=True, log=lambda m: None)

    def interrupt_after_epoch_1(line):
        if line.startswith("epoch 1/"):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match=r"SIGINT at step 4.*dcgan identity train --resume"):
        train_identity(cfg, quiet=True, log=interrupt_after_epoch_1)
    cut = sorted(tmp_path.glob("*-identity-*"))[-1]
    assert not (cut / "embedding.keras").exists()
    with pytest.raises(DcganError, match="cannot change --loss"):
        from dcgan_cli.identity.config import resume_config

        resume_config(cut, loss="triplet")
    with pytest.raises(DcganError, match="cannot change --class-augment, --flip"):
        resume_config(cut, class_augment="dihedral", flip=False)
    train_identity(cfg, resume=cut, quiet=True, log=lambda m: None)
    import keras

    x = load_identities(digits)[0][:32].astype(np.float32)
    a = keras.saving.load_model(whole / "embedding.keras")(x)
    b = keras.saving.load_model(cut / "embedding.keras")(x)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)


@pytest.mark.slow
def test_triplet_with_class_augment_trains_and_unlabelled_data_is_refused(digits, data16, tmp_path):
    from dcgan_cli.identity.train import train_identity

    cfg = IdentityConfig(data=str(digits), runs_dir=str(tmp_path), epochs=1, loss="triplet",
                         **{**TINY, "class_augment": "dihedral"})
    lines = []
    run = train_identity(cfg, quiet=True, log=lines.append)
    assert json.loads((run / "embedding.json").read_text())["loss"] == "triplet"
    # 7 digits of 40 images, each turned and mirrored 8 ways: 56 classes, 2,240 samples, 80 steps of 7 x 4.
    assert "x8 by turning and mirroring: 56 classes" in lines[0] and "80 steps per epoch" in lines[0], lines[0]
    # The held-out digits stay as they are: never trained on, in any orientation.
    assert json.loads((run / "split.json").read_text())["train_identities"] == [0, 1, 2, 4, 5, 6, 9]
    assert IdentityConfig.load(run) == cfg  # class_augment too: saved with the run, read back by --resume
    r = runner.invoke(app, ["identity", "train", "--data", str(data16), "--runs-dir", str(tmp_path)])
    assert r.exit_code == 1 and "has no identity labels" in r.output and "--labels" in r.output


def test_dry_run_prints_the_config_with_the_data_shape(digits, tmp_path):
    r = runner.invoke(app, ["identity", "train", "--data", str(digits), "--runs-dir", str(tmp_path), "--loss",
                            "arcface", "--dry-run"])
    assert r.exit_code == 0, r.output
    cfg = json.loads(r.output)
    assert (cfg["loss"], cfg["image_size"], cfg["channels"], cfg["data"]) == ("arcface", 16, 1, str(digits))
    assert not list(tmp_path.iterdir())  # nothing written
    r = runner.invoke(app, ["identity", "train", "--data", str(digits), "--k-images", "1"])
    assert r.exit_code == 2


@pytest.mark.subprocess
def test_identity_help_has_an_example_without_tensorflow():
    code = ("import sys; from dcgan_cli.cli import app; sys.argv=['dcgan','identity','train','--help']\n"
            "try: app()\nexcept SystemExit as e: assert e.code in (0, None), e.code\n"
            "print('TF-LOADED' if 'tensorflow' in sys.modules else 'TF-NOT-LOADED')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Example: dcgan identity train" in out and "TF-NOT-LOADED" in out


@pytest.mark.slow
def test_bench_identity_figures():
    from dcgan_cli.bench.suite import bench_identity

    out = bench_identity(size=16, steps=1, warmup=1)
    assert set(out) == {"identity_train_triplet_img_per_s", "identity_train_arcface_img_per_s",
                        "identity_embed_img_per_s"} and all(v > 0 for v in out.values())


def test_a_class_label_serves_as_identity_when_there_is_no_person_label(tmp_path):
    """MNIST-like shards (preprocess/arrays.py's "label") train the identity network too."""
    from dcgan_cli.data import shards

    writer = shards.ShardWriter(tmp_path, "t", 1 << 20)
    for i in range(6):
        writer.add(shards.serialize_example(bytes([i]) * 256, {"label": i % 3}))
    manifest = shards.make_manifest(size=16, channels=1, shards=[writer.close()], crop="none",
                                    labels=[{"name": "label", "dtype": "int64", "classes": ["a", "b", "c"]}])
    shards.write_manifest(tmp_path, manifest)
    images, ids, _ = load_identities(tmp_path)
    assert ids.tolist() == [0, 1, 2, 0, 1, 2] and images[4, 0, 0, 0] == 4


@pytest.mark.slow
def test_stylize_counts_the_faces_that_still_verify_with_an_identity_model(trained, digits, tmp_path):
    from dcgan_cli.identity.verification import same_person_check
    from dcgan_cli.gan.model import build_generator
    from dcgan_cli.gan.generator_io import save_generator

    gen = save_generator(build_generator(16, 1, latent_dim=8, filters=8), tmp_path / "g.keras")
    style = digit_png(digits, 3, 0)
    args = ["stylize", "--generator", str(gen), "--seeds", "0-3", str(style), "-o", str(tmp_path / "grid.png"),
            "--steps", "1", "--size", "32", "--identity-model", str(trained)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    # One Adam step from the content image changes little: each face is still its own person.
    assert "4 of 4 still verify as their original" in r.stdout, r.stdout

    # The check itself: an image is its own person; the same faces in another order are compared pairwise.
    check = same_person_check(trained / "embedding.keras")
    images = np.stack([np.asarray(Image.open(digit_png(digits, d, 0))) for d in (3, 5)])[..., None]
    assert check(images, images).tolist() == [True, True]

    r = runner.invoke(app, ["stylize", str(style), str(style), "-o", str(tmp_path / "x.png"),
                            "--identity-model", str(trained)])
    assert r.exit_code == 2 and "--identity-model" in r.output
    r = runner.invoke(app, args[:-1] + [str(tmp_path)])
    assert r.exit_code == 1 and "has no embedding.keras" in r.output and "Traceback" not in r.output


@pytest.mark.slow
def test_the_default_setup_beats_raw_pixels_on_unseen_digits():
    """The offline bar, one seed (tests/bench_identity.py runs more): the default setup plus what digits
    need (identity/bench.py's DIGITS) on all 1,797 digits, the LFW protocol on the 3 never trained on.

    The floor, 80% and 2.5 points over raw pixels (77.6%), is the bar in docs/identity.md: seed 0 scores 82.6%
    (5 seeds: 82.3-83.4%). What fails it: an untrained network of this shape (71.6-74.8%, 3 seeds),
    the old default (triplet, no class augmentation: 73.2% mean of 5), ArcFace without the class
    augmentation (74.1%), or the same 4 epochs with the class augmentation silently off (67.8%).
    """
    from dcgan_cli.identity.bench import bench_one_shot

    lines = []
    r = bench_one_shot(seeds=(0,), log=lines.append)  # what `dcgan bench --parts identity` runs, with 3 seeds
    # The default loss, with only what digits need changed; the pixel reference on the same pairs.
    assert "loss" not in r["config"] and IdentityConfig().loss == "arcface"
    assert r["config"]["class_augment"] == "dihedral" and not r["config"]["flip"]
    assert r["pixels"] == pytest.approx(0.776, abs=0.005)
    assert r["accuracies"][0] >= 0.80 and r["accuracies"][0] >= r["pixels"] + 0.025, lines
    # A line per seed, then the mean with the ratio to raw pixels.
    assert lines[0].startswith("default seed 0: ") and "6,000 pairs of unseen digits [3, 7, 8]" in lines[0], lines
    assert lines[1].startswith("default: one-shot pair accuracy on unseen digits ") and "raw pixels 77.6" in lines[1]
    assert lines[1].endswith(f"{r['vs_pixels']:.3f}x") and r["vs_pixels"] > 1.03, lines
