"""dcgan audit on real data: a real tiny GAN and identity network on sklearn's digits; real images are copies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dcgan_cli.cli import app
from dcgan_cli.identity import audit as au
from dcgan_cli.identity.bench import preprocess_digits
from helpers import tiny_config

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from dcgan_cli.identity.config import IdentityConfig
    from dcgan_cli.identity.train import train_identity
    from dcgan_cli.training.loop import train

    root = tmp_path_factory.mktemp("audit")
    digits = preprocess_digits(root, per_class=20)
    ident = train_identity(IdentityConfig(data=str(digits), runs_dir=str(root / "runs"), image_size=16, channels=1,
                                          width=8, embedding_dim=16, p_identities=7, k_images=4, holdout=3,
                                          flip=False, epochs=1, steps_per_epoch=3), quiet=True, log=lambda m: None)
    gan = train(tiny_config(digits, root / "runs", channels=1, epochs=1, steps_per_epoch=2), quiet=True,
                log=lambda m: None)
    return root, digits, ident, gan


def test_wilson_interval():
    lo, hi = au.wilson(0, 100)
    assert lo == pytest.approx(0, abs=1e-12) and 0.03 < hi < 0.04  # k = 0 still has an upper bound (3.7%)
    lo, hi = au.wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)


def test_chunked_nearest_matches_brute_force():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((257, 8)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    q = base[[3, 100]] + 0.01
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    full = np.linalg.norm(q[:, None] - base[None], axis=2)
    d, i = au.nearest(q, base, chunk=50)
    np.testing.assert_array_equal(i, full.argmin(1))
    np.testing.assert_allclose(d, full.min(1), atol=1e-5)
    d, i = au.nearest(base[[3, 100]], base, chunk=50, query_index=np.array([3, 100]))  # leave one out
    assert 3 not in i and 100 not in i
    ids = np.arange(257) % 5
    d, i = au.nearest(base[[3]], base, chunk=50, query_ids=ids[[3]], base_ids=ids)
    assert ids[i[0]] != ids[3]


@pytest.mark.slow
def test_audit_a_run_through_the_cli(setup):
    root, digits, ident, gan = setup
    r = runner.invoke(app, ["audit", "--run", str(gan), "--identity-model", str(ident), "--samples", "40", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["samples"] == 40 and out["training_images"] == 200 and out["training_embeddings"] == "computed"
    assert 0 <= out["share"] <= 1 and out["share_ci95"][0] <= out["share"] <= out["share_ci95"][1]
    assert out["baseline_faces"] == 40 and "held-out people" in out["baseline"]
    assert Path(out["grid"]).parent == gan and out["run"] == str(gan)
    grid = Image.open(out["grid"])
    assert grid.size == (8 * 18 + 2, 4 * 18 + 2)  # 16 pairs = 32 images, 8 a row: 16 px + 2 px padding each
    # Second time: the training embeddings come from the cache beside the shards.
    assert len(list(digits.glob(f"{au.CACHE_PREFIX}*.npz"))) == 1
    r = runner.invoke(app, ["audit", "--run", str(gan), "--identity-model", str(ident), "--samples", "40", "--json"])
    again = json.loads(r.output)
    assert again["training_embeddings"] == "cache" and again["share"] == out["share"]
    r = runner.invoke(app, ["audit", "--run", str(gan), "--identity-model", str(ident), "--samples", "10"])
    assert r.exit_code == 0 and "same person as a training face" in r.output and "baseline" in r.output


@pytest.mark.slow
def test_real_training_images_are_flagged_as_copies(setup, tmp_path):
    root, digits, ident, gan = setup
    pngs = sorted((root / "digits").rglob("*.png"))[:30]
    r = runner.invoke(app, ["audit", "--images", str(root / "digits"), "--data", str(digits), "--identity-model",
                            str(ident), "--samples", "30", "--grid", str(tmp_path / "g.png"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["samples"] == len(pngs) == 30
    assert out["closer_than_threshold"] == 30 and out["pixel_near_duplicates"] == 30
    assert out["share_ci95"][0] > 0.88 and out["share"] > out["baseline_share"]
    assert out["closest"][0]["distance"] < 1e-3


@pytest.mark.slow
def test_lfw_faces_without_identities_use_a_leave_one_out_baseline(setup, tmp_path):
    """lfw_subset (no identities): the real faces are still flagged as copies of themselves."""
    from dcgan_cli.data.datasets.lfw_sample import write_lfw_sample
    from dcgan_cli.data.preprocess import PreprocessConfig, preprocess

    root, digits, ident, gan = setup
    faces = write_lfw_sample(tmp_path / "lfw")
    data = tmp_path / "lfw-16"
    preprocess(PreprocessConfig(source=str(faces), out=str(data), size=16, crop="none", channels=1, workers=1))
    r = runner.invoke(app, ["audit", "--images", str(faces), "--data", str(data), "--identity-model", str(ident),
                            "--samples", "20", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["closer_than_threshold"] == 20 and out["pixel_near_duplicates"] == 20
    assert "leave one out" in out["baseline"] and out["baseline_faces"] == 20


@pytest.mark.slow
def test_audit_refuses_mismatched_sizes_in_one_line(setup, data16):
    root, digits, ident, gan = setup
    r = runner.invoke(app, ["audit", "--images", str(root / "digits"), "--data", str(data16), "--identity-model",
                            str(ident), "--samples", "5"])
    assert r.exit_code == 1 and "holds 16x16x3 images but the embedding model takes 16x16x1" in r.output
    r = runner.invoke(app, ["audit", "--run", str(gan), "--images", str(root), "--identity-model", str(ident)])
    assert r.exit_code == 2
