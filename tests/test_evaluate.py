"""FID and KID: the numerics against closed forms, the cache, the CLI, and --eval-every.

Offline throughout: the "tiny-random" extractor (a seeded conv net) stands in
for InceptionV3 where only the plumbing is under test; the training test runs
the real InceptionV3 graph with random weights loaded from a file, through
$DCGAN_INCEPTION_WEIGHTS, as an offline user would.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from dcgan_cli.cli import app
from dcgan_cli.errors import DcganError
from dcgan_cli.metrics.stats import FeatureStats, frechet_distance, kernel_inception_distance
from helpers import copy_run, tiny_config, write_faces

runner = CliRunner()
TINY = "tiny-random"


# ----------------------------------------------------------------------------
# numerics


def test_frechet_distance_of_gaussians_equals_the_closed_form():
    rng = np.random.default_rng(0)
    d = 50
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 4, d), rng.uniform(0.1, 4, d)
    # Diagonal covariances: ||mu1 - mu2||^2 + sum (sqrt(a) - sqrt(b))^2.
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)

    # Full covariances: the textbook formula through scipy's general sqrtm agrees.
    from scipy.linalg import sqrtm

    m1, m2 = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = m1 @ m1.T / d, m2 @ m2.T / d
    covmean = sqrtm(s1 @ s2)
    assert np.abs(covmean.imag).max() < 1e-8  # well-conditioned: scipy is exact here too
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean.real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)


def test_streamed_statistics_match_numpy_and_fid_of_a_set_with_itself_is_zero():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=(3000, 40)) @ rng.normal(size=(40, 40))
    stats = FeatureStats(40, len(x), pool=500, seed=0)
    for lo, hi in [(0, 1), (1, 700), (700, 701), (701, 3000)]:  # uneven batches
        stats.update(x[lo:hi])
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    # The KID pool is a fixed-size subset of the stream's rows, whatever its length.
    assert stats.kid_features.shape == (500, 40)
    assert {tuple(r) for r in stats.kid_features.astype(np.float32)} <= {tuple(r) for r in x.astype(np.float32)}

    assert frechet_distance(stats.mean, stats.cov, stats.mean, stats.cov) == pytest.approx(0.0, abs=1e-6)
    # And FID sees a shift of the mean: exactly ||shift||^2 with equal covariances.
    shift = np.full(40, 0.5)
    assert frechet_distance(stats.mean, stats.cov, stats.mean + shift, stats.cov) == pytest.approx(10.0, rel=1e-6)


def test_kid_is_about_zero_for_one_distribution_and_positive_for_a_shifted_one():
    rng = np.random.default_rng(2)
    x, other = rng.normal(size=(2, 2000, 32)).astype(np.float32)
    kw = dict(subsets=50, subset_size=200)
    same_dist, same_std, m = kernel_inception_distance(x, other, **kw)
    # The very same set: subsets of x and y share some points, a small negative bias.
    same_set, _, _ = kernel_inception_distance(x, x, **kw)
    shifted, shifted_std, _ = kernel_inception_distance(x, other + 0.5, **kw)
    assert m == 200
    assert abs(same_dist) < 3 * same_std and abs(same_set) < 0.02
    assert shifted > 0.5 and shifted > 10 * shifted_std
    # Per-subset unbiased MMD^2 by its definition, for one subset drawn the same way.
    one, _, _ = kernel_inception_distance(x[:50], other[:50] + 0.5, subsets=1, subset_size=50, seed=9)
    idx = np.random.default_rng(9)
    xs, ys = (other[:50] + 0.5)[idx.choice(50, 50, replace=False)], x[:50][idx.choice(50, 50, replace=False)]
    k = lambda a, b: (a.astype(np.float64) @ b.T.astype(np.float64) / 32 + 1) ** 3  # noqa: E731
    n = 50
    expected = ((k(xs, xs).sum() - np.trace(k(xs, xs))) / (n * (n - 1))
                + (k(ys, ys).sum() - np.trace(k(ys, ys))) / (n * (n - 1)) - 2 * k(xs, ys).mean())
    assert one == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError):
        kernel_inception_distance(x[:1], x)


def test_fid_is_refused_below_2048_samples_and_kid_still_offered():
    from dcgan_cli.metrics.evaluate import EvalOptions, fid_refusal, plan

    assert fid_refusal(2048, 2048, 2048) is None
    reason = fid_refusal(2047, 100_000, 2048)
    assert "2,048" in reason and "2,047" in reason and "singular" in reason
    assert "real" in fid_refusal(50_000, 100, 2048)
    # Both asked for: FID is dropped with its reason, KID stays.
    metrics, notes, n_real = plan(EvalOptions(samples=1000, metrics=("fid", "kid")), count=50_000)
    assert metrics == ("kid",) and "2,048" in notes["fid"] and n_real == 50_000
    # FID alone: refused before any work, naming the fixes.
    with pytest.raises(DcganError, match="--samples 10000, or --metrics kid"):
        plan(EvalOptions(samples=1000, metrics=("fid",)), count=50_000)
    assert plan(EvalOptions(samples=4096, real_samples=3000, metrics=("fid", "kid")), count=50_000) == (
        ("fid", "kid"), {}, 3000)
    # The default: all four; IS left out with its reason where the extractor has no classifier head.
    metrics, notes, _ = plan(EvalOptions(samples=4096), count=50_000)
    assert metrics == ("fid", "kid", "prdc") and "classifier head" in notes["is"]
    assert plan(EvalOptions(samples=4096, extractor="inception-2015"), count=50_000)[0] == ("fid", "kid", "prdc", "is")
    with pytest.raises(DcganError, match="no classifier head"):
        plan(EvalOptions(samples=4096, metrics=("is",)), count=50_000)
    with pytest.raises(DcganError, match="at least 6 real"):
        plan(EvalOptions(samples=4096, metrics=("prdc",)), count=5)
    metrics, notes, _ = plan(EvalOptions(samples=5, metrics=("kid", "prdc")), count=100)  # training's tiny evals
    assert metrics == ("kid",) and "at least 6" in notes["prdc"]


# ----------------------------------------------------------------------------
# the data set's statistics: computed once, cached, invalidated


@pytest.fixture()
def trained_run(tiny_run, data16, tmp_path_factory):
    """A private copy of the shared tiny run (conftest.tiny_run) at ROOT/runs/NAME, trained on its own copy of
    the 16x16 faces at ROOT/faces-16: evaluation appends to the run's metrics.jsonl and caches beside the data."""
    root = tmp_path_factory.mktemp("eval-run")
    data = shutil.copytree(data16, root / "faces-16", ignore=shutil.ignore_patterns("eval-stats-*"))
    return copy_run(tiny_run, root / "runs", data=data)


def _generator(size=16, channels=3):
    from dcgan_cli.gan.model import build_generator

    return build_generator(size, channels, latent_dim=8, filters=8)


def _preprocess(src, out, **kw):
    from dcgan_cli.data.preprocess import PreprocessConfig, preprocess

    preprocess(PreprocessConfig(source=str(src), out=str(out), size=16, crop="center", **kw))
    return out


def test_real_statistics_are_cached_and_invalidated_when_the_data_changes(data16, tmp_path):
    from dcgan_cli.metrics.evaluate import EvalOptions, evaluate_generator, stats_cache_path
    from dcgan_cli.metrics.extractors import get_extractor

    data = tmp_path / "faces-16"
    shutil.copytree(data16, data)
    for stale in data.glob("eval-stats-*"):  # written into the shared data16 by a test that ran first
        stale.unlink()
    g, opts = _generator(), EvalOptions(samples=40, extractor=TINY, seed=3)
    ex = get_extractor(TINY, batch_size=opts.batch_size)  # the instance evaluate uses
    cache = tmp_path / "faces-16" / "eval-stats-tiny-random.npz"
    assert stats_cache_path(data, TINY, 24, 24) == str(cache)

    seen = ex.images_seen
    first = evaluate_generator(g, data, opts, progress=False)
    assert first["real_stats"] == "computed" and ex.images_seen - seen == 24 + 40
    assert first["fid"] > 0 and "kid" in first and first["real_samples"] == 24
    mtime = cache.stat().st_mtime_ns

    seen = ex.images_seen
    second = evaluate_generator(g, data, opts, progress=False)
    assert second["real_stats"] == "cache" and ex.images_seen - seen == 40, "only generated images are embedded"
    assert cache.stat().st_mtime_ns == mtime
    assert (second["fid"], second["kid"]) == (first["fid"], first["kid"])

    # New images in the same place (the old cache file put back, as a sync tool
    # might): the shards' checksums no longer match its key, so it is recomputed.
    stale = tmp_path / "stale.npz"
    shutil.copy(cache, stale)
    _preprocess(write_faces(tmp_path / "other", n=20, seed=7), data, force=True)
    shutil.copy(stale, cache)
    seen = ex.images_seen
    third = evaluate_generator(g, data, opts, progress=False)
    assert third["real_stats"] == "computed" and ex.images_seen - seen == 20 + 40
    assert third["real_samples"] == 20 and third["fid"] != first["fid"]
    assert evaluate_generator(g, data, opts, progress=False)["real_stats"] == "cache"


def test_grey_data_and_a_generator_of_another_size(tmp_path, image_folder):
    from dcgan_cli.metrics.evaluate import EvalOptions, evaluate_generator

    grey = _preprocess(image_folder, tmp_path / "grey", channels=1)
    out = evaluate_generator(_generator(channels=1), grey, EvalOptions(samples=20, extractor=TINY), progress=False)
    assert out["fid"] >= 0 and np.isfinite(out["kid"])
    with pytest.raises(DcganError, match="the data is 16x16x1 but the generator wants 32x32x3"):
        evaluate_generator(_generator(size=32), grey, EvalOptions(samples=20, extractor=TINY), progress=False)


# ----------------------------------------------------------------------------
# the command line


def test_cli_evaluate_prints_a_table_or_json_and_appends_to_metrics(trained_run):
    args = ["evaluate", "--run", str(trained_run), "--extractor", TINY, "--samples", "40"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "FID " in r.stdout and "KID " in r.stdout and "tiny-random" in r.stdout

    r = runner.invoke(app, args + ["--json", "--metrics", "kid"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)  # stdout is one JSON object; notes and bars went to stderr
    assert result["samples"] == 40 and result["kid_subset_size"] == 24 and "fid" not in result
    assert result["run"] == str(trained_run) and result["checkpoint"] == "ckpt-6" and result["real_stats"] == "cache"

    rows = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    evals = [row["eval"] for row in rows if "eval" in row]
    assert len(evals) == 2 and evals[-1] == result
    assert all("d_loss" not in row for row in rows if "eval" in row), "the loss plot must not take eval rows"

    # The model file the run wrote at the end is evaluated against the run's data.
    r = runner.invoke(app, ["evaluate", "--generator", str(trained_run / "generator.keras"), "--extractor", TINY,
                            "--samples", "20", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["model"].endswith("generator.keras")


def _classifier_file(path, data, seed=0, grey=False):
    """A small Keras classifier trained on the run's real images (labels: brighter than the median), saved."""
    import keras

    from dcgan_cli.data.pipeline import make_dataset

    images = np.concatenate([b.numpy() for b in make_dataset(data, 8, shuffle=False, repeat=False, seed=0,
                                                             drop_remainder=False)])
    x = images.astype("float32") / 127.5 - 1.0
    if grey:
        x = x.mean(axis=-1, keepdims=True)
    y = (x.mean(axis=(1, 2, 3)) > np.median(x.mean(axis=(1, 2, 3)))).astype("int32")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Conv2D(4, 3, 2, activation="relu", name="conv"),
                              keras.layers.Flatten(), keras.layers.Dense(6, activation="relu", name="features"),
                              keras.layers.Dense(2, name="logits")])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    model.save(path)
    return path


@pytest.mark.slow
def test_evaluate_takes_any_keras_model_as_the_extractor_and_keys_the_cache_by_it(trained_run, tmp_path):
    data = trained_run.parent.parent / "faces-16"
    clf = _classifier_file(tmp_path / "clf.keras", data)
    args = ["evaluate", "--run", str(trained_run), "--samples", "24", "--metrics", "kid", "--json"]
    r = runner.invoke(app, args + ["--extractor", str(clf)])
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    assert first["extractor"] == str(clf) and first["weights"].startswith("sha256:") and "features" in first["weights"]
    assert first["real_stats"] == "computed" and np.isfinite(first["kid"])
    caches = sorted(p.name for p in data.glob("eval-stats-keras-*.npz"))
    assert len(caches) == 1, caches  # the penultimate layer ("features", 6-d), keyed by the file's hash

    # The same model again: the real statistics come from the cache.
    r = runner.invoke(app, args + ["--extractor", str(clf)])
    assert r.exit_code == 0 and json.loads(r.stdout)["real_stats"] == "cache", r.output
    # Another layer, or other weights under the same name: other features, never the cached ones.
    r = runner.invoke(app, args + ["--extractor", f"{clf}:conv"])
    assert r.exit_code == 0 and json.loads(r.stdout)["real_stats"] == "computed", r.output
    _classifier_file(clf, data, seed=1)
    r = runner.invoke(app, args + ["--extractor", str(clf)])
    assert r.exit_code == 0 and json.loads(r.stdout)["real_stats"] == "computed", r.output
    assert len(list(data.glob("eval-stats-keras-*.npz"))) == 3

    # A grey network scores RGB data (the mean of R, G and B reaches it).
    grey = _classifier_file(tmp_path / "grey.keras", data, grey=True)
    r = runner.invoke(app, args + ["--extractor", str(grey)])
    assert r.exit_code == 0 and np.isfinite(json.loads(r.stdout)["kid"]), r.output


@pytest.mark.slow
@pytest.mark.parametrize("what, says", [("missing.keras", "no feature extractor model at"),
                                        ("notes.keras", "cannot load"),
                                        ("clf.keras:nope", "has no layer 'nope'")])
def test_a_bad_extractor_file_is_a_one_line_error(trained_run, tmp_path, what, says):
    data = trained_run.parent.parent / "faces-16"
    (tmp_path / "notes.keras").write_text("not a model")
    _classifier_file(tmp_path / "clf.keras", data)
    r = runner.invoke(app, ["evaluate", "--run", str(trained_run), "--samples", "8", "--metrics", "kid",
                            "--extractor", str(tmp_path / what)])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    (line,) = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert says in line


def test_cli_refuses_fid_on_few_samples_in_one_line(trained_run):
    r = runner.invoke(app, ["evaluate", "--run", str(trained_run), "--samples", "100", "--metrics", "fid"])
    assert r.exit_code == 1
    (line,) = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert "2,048" in line and "--metrics kid" in line and "Traceback" not in r.output
    assert runner.invoke(app, ["evaluate", "--metrics", "fid,bogus"]).exit_code == 2
    assert runner.invoke(app, ["evaluate", "--run", "a", "--generator", "b"]).exit_code == 2


def test_missing_inception_weights_offline_is_a_one_line_error(trained_run, tmp_path, monkeypatch):
    from dcgan_cli.metrics import extractors

    # An empty Keras cache and a weights URL on a closed local port: the real
    # download path fails as it does on a machine without internet.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(extractors, "WEIGHTS_URL", f"http://127.0.0.1:{port}/{extractors.WEIGHTS_FILE}")
    monkeypatch.setattr(extractors, "KERAS_CACHE_DIR", str(tmp_path / "keras"))
    monkeypatch.delenv(extractors.WEIGHTS_ENV, raising=False)
    r = runner.invoke(app, ["evaluate", "--run", str(trained_run), "--samples", "3000"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    (line,) = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert "could not be downloaded" in line and "--inception-weights FILE" in line
    assert "DCGAN_INCEPTION_WEIGHTS" in line

    r = runner.invoke(app, ["evaluate", "--run", str(trained_run), "--samples", "3000",
                            "--inception-weights", str(tmp_path / "nope.h5")])
    assert r.exit_code == 1 and "nope.h5" in r.output and "does not exist" in r.output


# ----------------------------------------------------------------------------
# during training


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory):
    """InceptionV3's real graph with random weights, saved as a user's offline weights file."""
    import keras

    path = tmp_path_factory.mktemp("inception") / "inception_v3_random.weights.h5"
    keras.utils.set_random_seed(0)
    keras.applications.InceptionV3(include_top=False, pooling="avg", weights=None,
                                   input_shape=(299, 299, 3)).save_weights(path)
    return path


@pytest.mark.subprocess
@pytest.mark.slow
def test_eval_every_scores_epochs_and_keeps_the_best_checkpoint(data16, tmp_path, monkeypatch,
                                                                random_inception_weights):
    import keras
    import tensorflow as tf

    from dcgan_cli.metrics.evaluate import preflight_training
    from dcgan_cli.runs.layout import BEST_DIR
    from dcgan_cli.metrics.extractors import WEIGHTS_ENV
    from dcgan_cli.training.loop import train

    monkeypatch.setenv(WEIGHTS_ENV, str(random_inception_weights))
    cfg = tiny_config(data16, tmp_path, epochs=2, steps_per_epoch=2, eval_every_epochs=1, eval_samples=16)
    notes = []
    preflight_training(cfg, log=notes.append)  # the weights resolve; FID will be skipped, and it says so
    assert "only KID" in notes[0]
    logs = []
    run = train(cfg, quiet=True, log=logs.append)

    evals = [json.loads(line)["eval"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if "eval" in json.loads(line)]
    assert [e["epoch"] for e in evals] == [1, 2] and [e["step"] for e in evals] == [2, 4]
    assert all(e["extractor"] == "inception_v3" and e["fid"] is None and np.isfinite(e["kid"]) for e in evals)
    assert evals[0]["best"] and evals[0]["real_stats"] == "computed" and evals[1]["real_stats"] == "cache"

    best = json.loads((run / BEST_DIR / "best.json").read_text())
    winner = min(evals, key=lambda e: e["kid"])
    assert best["metric"] == "kid" and best["epoch"] == winner["epoch"] and best["value"] == winner["kid"]
    assert tf.train.latest_checkpoint(str(run / BEST_DIR)).endswith(f"ckpt-{winner['step']}")
    assert len(list((run / BEST_DIR).glob("ckpt-*.index"))) == 1
    g = keras.saving.load_model(run / BEST_DIR / "generator.keras", compile=False)
    assert g.output_shape == (None, 16, 16, 3)
    # best/generator.keras holds the best checkpoint's generator.
    from dcgan_cli.gan.generator_io import restore

    best_g = restore(run, best=True)
    assert best_g.step == winner["step"] and best_g.best
    z = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(g(z, training=False)), np.asarray(best_g.model(z, training=False)),
                               atol=1e-5)
    # sample --best and export --best read the same checkpoint.
    r = runner.invoke(app, ["export", str(run), str(tmp_path / "best.keras"), "--best"])
    assert r.exit_code == 0 and "best checkpoint" in r.output, r.output
    exported = keras.saving.load_model(tmp_path / "best.keras", compile=False)
    np.testing.assert_allclose(np.asarray(exported(z, training=False)), np.asarray(best_g.model(z, training=False)),
                               atol=1e-5)
    r = runner.invoke(app, ["sample", "-n", "4", str(tmp_path / "best.png"), "--run", str(run), "--best"])
    assert r.exit_code == 0 and "best checkpoint" in r.output and (tmp_path / "best.png").exists(), r.output
    assert any("eval epoch 2 step 4: KID" in m and "no FID: under 2,048 images" in m for m in logs)
    assert (run / "losses.png").exists()

    # Both generator files load as users load them: a fresh process with Keras alone, which never imports
    # dcgan_cli (so none of its training layers are registered). best/generator.keras used to fail here.
    code = textwrap.dedent(f"""
        import sys, keras
        for path in sys.argv[1:]:
            m = keras.saving.load_model(path)
            print(m.input_shape, m.output_shape)
        assert not any(name.startswith("dcgan_cli") for name in sys.modules)
        """)
    proc = subprocess.run([sys.executable, "-c", code, str(run / BEST_DIR / "generator.keras"),
                           str(run / "generator.keras")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-2:] == ["(None, 8) (None, 16, 16, 3)"] * 2


def test_best_needs_a_best_checkpoint_and_a_run(trained_run, tmp_path):
    for args in (["sample", "-n", "2", str(tmp_path / "a.png"), "--run", str(trained_run), "--best"],
                 ["export", str(trained_run), str(tmp_path / "a.keras"), "--best"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 1 and "has no best checkpoint" in r.output and "--eval-every-epochs" in r.output, r.output
        assert not list(tmp_path.iterdir())
    r = runner.invoke(app, ["sample", "-n", "2", str(tmp_path / "a.png"), "--best",
                            "--generator", str(trained_run / "generator.keras")])
    assert r.exit_code == 2 and "--best" in r.output


def test_train_flags_reach_the_config_and_may_be_turned_on_when_resuming(data16, tmp_path, trained_run):
    r = runner.invoke(app, ["train", "--data", str(data16), "--runs-dir", str(tmp_path), "--eval-every-epochs", "5",
                            "--eval-samples", "2048", "--dry-run"])
    assert r.exit_code == 0, r.output
    cfg = json.loads(r.stdout)
    assert (cfg["eval_every_epochs"], cfg["eval_samples"]) == (5, 2048)
    r = runner.invoke(app, ["train", "--resume", str(trained_run), "--eval-every-epochs", "2", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["eval_every_epochs"] == 2


@pytest.mark.subprocess
def test_evaluate_help_has_an_example_and_does_not_import_tensorflow():
    code = ("import sys; from dcgan_cli.cli import app; sys.argv=['dcgan','evaluate','--help']\n"
            "try: app()\nexcept SystemExit as e: assert e.code in (0, None), e.code\n"
            "print('TF-LOADED' if 'tensorflow' in sys.modules else 'TF-NOT-LOADED')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Example: dcgan evaluate" in out and "--inception-weights" in out and "TF-NOT-LOADED" in out
    assert "--extractor" in out and "FILE.keras" in out, "any Keras model may be the extractor (issue 12)"


def test_eval_every_is_refused_for_several_workers(data16, tmp_path):
    from dcgan_cli.metrics.evaluate import preflight_training

    cfg = tiny_config(data16, tmp_path, eval_every_epochs=1, strategy="multiworker")
    with pytest.raises(DcganError, match="not supported with several workers.*dcgan evaluate --run"):
        preflight_training(cfg)
