"""The quality benchmark: its data, its metrics and its reference behave, and the CLI part runs end to end.

Real data (scikit-learn's digits through `preprocess`), a real classifier, real
training on a tiny budget; the figures themselves are judged by `dcgan bench`,
not here.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from dcgan_cli.bench import quality as bq
from dcgan_cli.cli import app
from dcgan_cli.config import PRESETS

pytestmark = pytest.mark.slow  # its module fixtures alone build and score data sets for a minute


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    qs = bq.digits_set(tmp_path_factory.mktemp("quality"))
    return qs, bq.prepare_reals(qs)


def test_digits_go_through_preprocess_with_their_labels(digits):
    from sklearn.datasets import load_digits

    from dcgan_cli.data.shards import load_manifest

    qs, reals = digits
    assert qs.images.shape == (1797, 32, 32, 1) and qs.images.dtype == np.uint8
    manifest = load_manifest(qs.data_dir)
    assert (manifest["count"], manifest["size"], manifest["channels"]) == (1797, 32, 1)
    assert qs.steps == bq.DEFAULT_STEPS and qs.batch_size == PRESETS["dcgan"]["batch_size"]  # the preset's batch
    assert np.array_equal(np.bincount(qs.labels), np.bincount(load_digits().target))
    # A classifier that cannot tell the digits apart would make every score meaningless.
    assert reals.accuracy > 0.9


def test_metrics_tell_real_from_noise_and_flag_copies(digits):
    qs, reals = digits
    rng = np.random.default_rng(0)
    real_half = qs.images[rng.permutation(len(qs.images))[:900]]
    noise = rng.integers(0, 256, (900, 32, 32, 1), dtype=np.uint8)
    blank = np.zeros((900, 32, 32, 1), np.uint8)  # one image over and over: collapsed
    s_real, s_noise, s_blank = bq.score(real_half, reals), bq.score(noise, reals), bq.score(blank, reals)
    for s in (s_real, s_noise, s_blank):
        assert all(math.isfinite(s[k]) for k in ("fd", "kid", "precision", "recall", "coverage", "balance", "nn",
                                                  "copies"))
    # Precision and recall (k = 3) on the bench's own features: real images lie on the real manifold and
    # cover half of it at least; noise lies off it; one blank image over and over recalls nothing.
    assert s_real["precision"] > 0.9 and s_real["recall"] > 0.5 and s_noise["precision"] < 0.05
    assert s_blank["recall"] < 0.01
    assert s_real["fd"] * 50 < s_noise["fd"] and s_real["fd"] * 50 < s_blank["fd"]
    assert abs(s_real["kid"]) * 50 < s_noise["kid"]
    assert s_real["coverage"] == 1.0 and s_real["balance"] > 0.95
    assert s_blank["coverage"] == 0.1 and s_blank["balance"] == pytest.approx(0.1)
    # Training images themselves: distance 0 to the training set, and flagged as copies.
    assert s_real["nn"] == 0.0 and s_real["copies"] == 1.0 and s_real["copied"]
    # Slightly moved training images are not copies any more.
    shifted = np.roll(real_half, 1, axis=2)
    s_shift = bq.score(shifted, reals)
    assert s_shift["nn"] > 0.05 and not s_shift["copied"]
    assert not s_noise["copied"]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    qs = bq.faces_set(tmp_path_factory.mktemp("quality-faces"))
    return qs, bq.prepare_reals(qs)


def test_faces_are_the_demo_set_through_preprocess_and_their_classifier_tells_faces(faces):
    from dcgan_cli.data.shards import load_manifest

    qs, reals = faces
    assert qs.images.shape == (100, 32, 32, 1) and qs.negatives.shape == (100, 32, 32, 1)
    assert load_manifest(qs.data_dir)["count"] == 100 and qs.labels is None
    assert qs.batch_size == bq.FACES_BATCH < len(qs.images)
    assert qs.steps == bq.FACES_STEPS > bq.DEFAULT_STEPS  # its own budget unless --quality-steps
    assert reals.classes == 2 and reals.accuracy >= 0.8
    s_faces, s_non = bq.score(qs.images, reals), bq.score(qs.negatives, reals)
    assert s_faces["faces"] > 0.9 and s_non["faces"] < 0.3
    assert "coverage" not in s_faces
    # The training faces are copies of themselves; mirrored ones are not, and are farther in FD than
    # the faces themselves but nearer than the non-faces.
    assert s_faces["copied"] and s_faces["nn"] < 1e-3  # 0 up to float32 rounding
    mirrored = bq.score(qs.images[:, :, ::-1], reals)
    assert not mirrored["copied"] and mirrored["faces"] > 0.8
    assert s_faces["fd"] < mirrored["fd"] < s_non["fd"]


def test_reference_has_the_architecture_of_model_py(digits):
    import keras

    from dcgan_cli.gan.model import build_generator

    qs, _ = digits
    g = bq.train_reference(qs.images[:256], seed=0, steps=2)
    ours = build_generator(32, 1, 100, 64, fast=False)
    assert [tuple(w.shape) for w in g.weights] == [tuple(w.shape) for w in ours.weights]
    assert g.count_params() == ours.count_params()
    assert all(w.dtype == "float32" for w in g.weights)
    assert keras.mixed_precision.global_policy().name == "float32"


def _check_set_figures(out: dict, name: str, lines: list[str]) -> None:
    seed_lines = [x for x in lines if x.startswith(f"quality {name} seed ")]
    assert len(seed_lines) == 2 and all("| reference FD " in x and "| ratio " in x for x in seed_lines)
    # Precision and recall right beside each FD: "FD 12.3 P 0.81 R 0.45 KID ...".
    assert all(len(re.findall(r"FD \S+ P [01]\.\d\d R [01]\.\d\d KID ", x)) == 2 for x in seed_lines)
    assert any(x.startswith(f"quality {name} FD ratio ours/reference: ") and "over 2 seeds" in x for x in lines)
    assert out["seeds"] == [0, 1] and len(out["per_seed"]) == 2
    assert out["config"]["batch_size"] == (128 if name == "digits" else bq.FACES_BATCH)
    for row in out["per_seed"]:
        for who in ("ours", "ours_live", "reference"):
            assert math.isfinite(row[who]["fd"]) and row[who]["fd"] > 0 and math.isfinite(row[who]["kid"])
            assert 0 <= row[who]["precision"] <= 1 and 0 <= row[who]["recall"] <= 1
            if name == "digits":
                assert 0 <= row[who]["coverage"] <= 1 and 0 < row[who]["balance"] <= 1
            else:
                assert 0 <= row[who]["faces"] <= 1
        assert row["fd_ratio"] == pytest.approx(row["ours"]["fd"] / row["reference"]["fd"])
        if row["reference"]["kid"] > 0:
            assert row["kid_ratio"] == pytest.approx(row["ours"]["kid"] / row["reference"]["kid"])
        else:  # an unbiased KID at its noise floor: no ratio, and the summary says so
            assert row["kid_ratio"] is None and out["kid_ratio_mean"] is None
            assert "KID ratio n/a" in next(x for x in lines if " FD ratio " in x)
    assert math.isfinite(out["fd_ratio_mean"]) and out["fd_ratio_std"] >= 0
    # The live generator's ratio sits beside the EMA's, from the same runs and references.
    live = [r["ours_live"]["fd"] / r["reference"]["fd"] for r in out["per_seed"]]
    assert out["live_fd_ratio_mean"] == pytest.approx(sum(live) / len(live))
    assert f"live generator {out['live_fd_ratio_mean']:.2f};" in next(x for x in lines if " FD ratio " in x)


@pytest.mark.slow
def test_bench_quality_part_prints_seed_lines_ratio_and_json():
    r = CliRunner().invoke(app, ["bench", "--parts", "quality", "--quality-sets", "faces", "--quality-steps", "3",
                                 "--quality-seeds", "2"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    quality = json.loads("\n".join(lines[next(i for i, x in enumerate(lines) if x.startswith("{")):]))["quality"]
    assert list(quality) == ["faces"] and quality["faces"]["steps"] == 3
    _check_set_figures(quality["faces"], "faces", lines)


@pytest.mark.slow
def test_faces80_scores_each_augment_mode_against_one_reference_with_copy_ratio_and_diversity():
    r = CliRunner().invoke(app, ["bench", "--parts", "quality", "--quality-sets", "faces80", "--quality-steps", "2",
                                 "--quality-seeds", "1", "--quality-augment", "none,ada"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    out = json.loads("\n".join(lines[next(i for i, x in enumerate(lines) if x.startswith("{")):]))["quality"]
    faces80 = out["faces80"]
    assert faces80["steps"] == 2 and list(faces80["by_augment"]) == ["none", "ada"]
    assert any(x.startswith("quality data: faces80 20 held-out real images: nn ") for x in lines)
    refs = [m["per_seed"][0]["reference"] for m in faces80["by_augment"].values()]
    assert refs[0] == refs[1]  # one reference per seed, trained once
    for mode, figures in faces80["by_augment"].items():
        row = figures["per_seed"][0]
        assert row["augment"] == mode and figures["config"]["augment"] == mode
        assert math.isfinite(row["ours"]["copy_ratio"]) and row["ours"]["copy_ratio"] > 0
        assert 0 < row["ours"]["diversity"] and figures["copy_ratio_mean"] == row["ours"]["copy_ratio"]
        assert any(x.startswith(f"quality faces80 seed 0 augment {mode}: ours ") and " copy ratio " in x
                   for x in lines)
        assert any(x.startswith(f"quality faces80 augment {mode} FD ratio ours/reference: ") and "; copy ratio " in x
                   for x in lines)


@pytest.mark.slow
def test_copy_ratio_is_one_for_unseen_faces_and_small_for_copies(tmp_path):
    qs = bq.quality_set("faces80", tmp_path)
    assert (len(qs.images), len(qs.held_out), qs.steps, qs.batch_size) == (80, 20, bq.FACES80_STEPS, bq.FACES80_BATCH)
    reals = bq.prepare_reals(qs)
    held, copies = bq.score(qs.held_out, reals), bq.score(qs.images, reals)
    assert held["copy_ratio"] == pytest.approx(1.0) and copies["copy_ratio"] < 0.01
    assert 0.8 < held["diversity"] < 1.3 and copies["diversity"] == pytest.approx(1.0)
    same = bq.score(np.repeat(qs.images[:1], 200, axis=0), reals)  # one face over and over: collapse
    assert same["diversity"] == 0.0


def test_bench_refuses_an_unknown_quality_set():
    r = CliRunner().invoke(app, ["bench", "--parts", "quality", "--quality-sets", "digits,cats"],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "'--quality-sets'" in r.output and "subset of digits, faces" in r.output


def test_held_out_faces_are_a_fixed_split_training_never_sees(tmp_path):
    train, held = bq.held_out_split(100, bq.FACES_TRAIN)
    again = bq.held_out_split(100, bq.FACES_TRAIN)
    assert np.array_equal(train, again[0]) and np.array_equal(held, again[1])
    assert len(train) == 80 and len(held) == 20 and not set(train) & set(held)
    with pytest.raises(ValueError):
        bq.held_out_split(100, 100)
    qs = bq.held_out_faces_set(tmp_path)
    assert qs.images.shape == (80, 32, 32, 1) and qs.held_out.shape == (20, 32, 32, 1)
    seen = {im.tobytes() for im in qs.images}
    assert not seen & {im.tobytes() for im in qs.held_out}  # no held-out face is trained on
    full = bq.faces_set(tmp_path / "full")
    assert seen <= {im.tobytes() for im in full.images}


def test_a_curve_scores_each_epoch_and_ends_where_one_uninterrupted_run_ends(digits, tmp_path):
    qs, reals = digits
    cfg = bq.our_config(qs, 0, 6, tmp_path / "runs", epochs=3, batch_size=32, ema=0.0)
    lines = []
    curve, ours, live = bq.train_ours_curve(cfg, tmp_path / "curve", reals, lines.append)
    assert [p["step"] for p in curve] == [2, 4, 6] and len(lines) == 3 and live is None
    assert all(math.isfinite(p["fd"]) for p in curve)
    straight, _ = bq.train_ours(cfg, tmp_path / "straight")  # the same 6 steps without stopping
    assert np.array_equal(bq.sample(ours, 64), bq.sample(straight, 64))  # a resume continues exactly
    assert bq.score(bq.sample(straight), reals)["fd"] == pytest.approx(curve[-1]["fd"])
    summary = bq.curve_summary([{"step": 1, "fd": 3.0}, {"step": 2, "fd": 1.0}, {"step": 3, "fd": 1.5}])
    assert summary == {"best_step": 2, "best_fd": 1.0, "final_fd": 1.5, "final_over_best": 1.5}
