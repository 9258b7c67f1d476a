"""Precision/recall/density/coverage and the Inception Score against brute-force NumPy on small sets."""

from __future__ import annotations

import numpy as np
import pytest

from dcgan_cli.metrics.prdc import InceptionScore, knn_radii, prdc


def _brute_force(real, fake, k):
    """The papers' definitions, written the slow obvious way: full distance matrices."""
    dist = lambda a, b: np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))  # noqa: E731
    rr, ff, rf = dist(real, real), dist(fake, fake), dist(real, fake)
    r_rad = np.sort(rr, axis=1)[:, k]  # column 0: the point itself
    f_rad = np.sort(ff, axis=1)[:, k]
    precision = np.mean([any(rf[i, j] < r_rad[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(rf[i, j] < f_rad[j] for j in range(len(fake))) for i in range(len(real))])
    density = sum((rf[:, j] < r_rad).sum() for j in range(len(fake))) / (k * len(fake))
    coverage = np.mean([rf[i].min() < r_rad[i] for i in range(len(real))])
    return r_rad, precision, recall, density, coverage


@pytest.mark.parametrize("chunk", [7, 1024])  # blocks smaller than the sets, and one block
def test_prdc_matches_brute_force(chunk):
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 5))
    fake = rng.normal(0.4, 1.3, size=(45, 5))
    got = prdc(real, fake, ks=(3, 5), chunk=chunk)
    for k in (3, 5):
        r_rad, p, r, d, c = _brute_force(real, fake, k)
        np.testing.assert_allclose(knn_radii(real, (k,), chunk)[k], r_rad, rtol=1e-5)  # float32 products
        assert got[f"precision_k{k}"] == pytest.approx(p)
        assert got[f"recall_k{k}"] == pytest.approx(r)
        assert got[f"density_k{k}"] == pytest.approx(d)
        assert got[f"coverage_k{k}"] == pytest.approx(c)
    # The shifted, wider fake set is neither perfect nor empty: the check can fail.
    assert 0 < got["precision_k3"] < 1 and 0 < got["coverage_k3"] < 1


def test_prdc_of_a_set_with_itself_and_with_a_far_set():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 4))
    same = prdc(x, x, ks=(3,), chunk=16)
    assert same["precision_k3"] == same["recall_k3"] == same["coverage_k3"] == 1.0
    far = prdc(x, x + 100.0, ks=(3,), chunk=16)
    assert far == {"precision_k3": 0.0, "recall_k3": 0.0, "density_k3": 0.0, "coverage_k3": 0.0}


def _inception_score_numpy(p, splits):
    scores = []
    for s in range(splits):
        part = p[s * len(p) // splits:(s + 1) * len(p) // splits]
        py = part.mean(0, keepdims=True)
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(py)), axis=1))))
    return np.mean(scores), np.std(scores)


def test_inception_score_streamed_matches_the_papers_formula():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(103, 12)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    score = InceptionScore(12, len(p), splits=10)
    for lo, hi in [(0, 1), (1, 40), (40, 41), (41, 103)]:  # batches crossing the split boundaries
        score.update(p[lo:hi])
    mean, std = score.result()
    ref_mean, ref_std = _inception_score_numpy(p, 10)
    assert mean == pytest.approx(ref_mean, rel=1e-10) and std == pytest.approx(ref_std, rel=1e-8)
    # One class for every sample: IS 1; a different confident class each: IS up to the class count.
    one = InceptionScore(12, 20, splits=2)
    one.update(np.tile(np.eye(12)[0], (20, 1)))
    assert one.result()[0] == pytest.approx(1.0)
    spread = InceptionScore(12, 24, splits=2)
    spread.update(np.tile(np.eye(12), (2, 1)))
    assert spread.result()[0] == pytest.approx(12.0)
    with pytest.raises(ValueError, match="announced"):
        InceptionScore(12, 24, 2).result()  # nothing arrived yet


# ----------------------------------------------------------------------------
# the 2015 Inception graph's loading code, on a small graph with the same tensor names


def write_fake_inception_graph(path, dim=8, classes=5, size=19, seed=0):
    """A frozen GraphDef laid out like classify_image_graph_def.pb: JPEG bytes -> DecodeJpeg -> Cast ->
    ExpandDims -> ResizeBilinear (to `size`, standing in for 299) -> scale -> conv -> pool_3 ->
    pool_3/_reshape (fixed to a batch of one, as in the real graph) -> softmax/logits/MatMul -> softmax."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    g = tf.Graph()
    with g.as_default():
        contents = tf.compat.v1.placeholder(tf.string, [], name="DecodeJpeg/contents")
        x = tf.cast(tf.io.decode_jpeg(contents, channels=3, name="DecodeJpeg"), tf.float32, name="Cast")
        x = tf.expand_dims(x, 0, name="ExpandDims")
        x = tf.compat.v1.image.resize_bilinear(x, [size, size], name="ResizeBilinear")
        x = (x - 128.0) / 128.0
        kernel = tf.constant(rng.normal(size=(3, 3, 3, dim)).astype(np.float32) / 3)
        x = tf.nn.relu(tf.nn.conv2d(x, kernel, 2, "VALID"))
        pool = tf.nn.avg_pool2d(x, x.shape[1:3], 1, "VALID", name="pool_3")
        flat = tf.reshape(pool, [1, dim], name="pool_3/_reshape")
        w = tf.constant(rng.normal(size=(dim, classes)).astype(np.float32), name="softmax/weights")
        tf.nn.softmax(tf.matmul(flat, w, name="softmax/logits/MatMul"), name="softmax")
    path.write_bytes(g.as_graph_def().SerializeToString())
    return path


def _graph_itself(path, images):
    """TTUR's way: a TF1 session feeding 'ExpandDims:0' one image at a time (the head needs a batch of one)."""
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        gd = tf.compat.v1.GraphDef()
        gd.ParseFromString(path.read_bytes())
        tf.compat.v1.import_graph_def(gd, name="")
    with tf.compat.v1.Session(graph=g) as sess:
        outs = [sess.run(["pool_3:0", "softmax:0"], {"ExpandDims:0": im[None].astype(np.float32)}) for im in images]
    return np.concatenate([o[0].reshape(1, -1) for o in outs]), np.concatenate([o[1] for o in outs])


def test_inception_2015_loads_a_graph_def_and_feeds_it_as_ttur_does(tmp_path):
    from dcgan_cli.metrics import extractors
    from dcgan_cli.metrics.inception2015 import clean_resize

    pb = write_fake_inception_graph(tmp_path / "classify_image_graph_def.pb")
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (7, 24, 24, 3), dtype=np.uint8)
    ex = extractors.get_extractor("inception-2015", pb, batch_size=4)
    feats, probs = ex.embed(images, probs=True)
    want_f, want_p = _graph_itself(pb, images)
    assert feats.shape == (7, 8) and probs.shape == (7, 5)
    np.testing.assert_allclose(feats, want_f, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs, want_p, rtol=1e-5, atol=1e-6)  # softmax(pool_3 . W) is the graph's softmax
    assert ex.key.startswith("inception-2015:sha256:") and ex.key.endswith(":tf-graph")

    # Grey images are repeated to three channels, then take the same path.
    grey = images[..., :1]
    np.testing.assert_allclose(ex(grey), _graph_itself(pb, np.repeat(grey, 3, -1))[0], rtol=1e-5, atol=1e-6)

    clean = extractors.get_extractor("inception-2015-clean", pb, batch_size=4)
    resized = clean_resize(images, 299)
    assert resized.shape == (7, 299, 299, 3) and resized.min() >= 0 and resized.max() <= 255
    np.testing.assert_allclose(clean(images), _graph_itself(pb, resized)[0], rtol=1e-4, atol=1e-5)
    assert clean.key.endswith(":clean") and not np.allclose(clean(images), feats)


def _textbook_fid(x, y):
    """FID as the papers write it, NumPy only: ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), the square
    root's trace from the eigenvalues of S1 S2."""
    mu1, mu2, s1, s2 = x.mean(0), y.mean(0), np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    tr_sqrt = np.sqrt(np.linalg.eigvals(s1 @ s2).astype(complex)).real.sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def test_frechet_distance_of_graph_features_matches_the_textbook_formula(tmp_path):
    from dcgan_cli.metrics import extractors
    from dcgan_cli.metrics.stats import FeatureStats, frechet_distance

    pb = write_fake_inception_graph(tmp_path / "g.pb")
    ex = extractors.get_extractor("inception-2015", pb, batch_size=32)
    rng = np.random.default_rng(4)
    a = ex(rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)).astype(np.float64)
    b = ex(rng.integers(40, 200, (50, 16, 16, 3), dtype=np.uint8)).astype(np.float64)
    sa, sb = FeatureStats(8, 60, pool=10), FeatureStats(8, 50, pool=10)
    sa.update(a), sb.update(b)
    got = frechet_distance(sa.mean, sa.cov, sb.mean, sb.cov)
    assert got == pytest.approx(_textbook_fid(a, b), rel=1e-6) and got > 0


def test_inception_2015_missing_or_wrong_file_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    from dcgan_cli.data import weights
    from dcgan_cli.errors import DcganError
    from dcgan_cli.metrics import extractors

    monkeypatch.setattr(weights, "KERAS_CACHE_DIR", str(tmp_path / "keras"))
    with pytest.raises(DcganError) as e:
        extractors.get_extractor("inception-2015")
    msg = str(e.value)
    assert "\n" not in msg and "classify_image_graph_def.pb" in msg and "dcgan download inception-2015" in msg
    assert "inception-2015-12-05.tgz" in msg and str(tmp_path / "keras" / "models") in msg
    (tmp_path / "junk.pb").write_bytes(b"\xff\x00 not a graph")
    with pytest.raises(DcganError, match="not a TensorFlow GraphDef|no tensor"):
        extractors.get_extractor("inception-2015", tmp_path / "junk.pb")
    # From the cache: a graph placed where `dcgan download inception-2015` puts it is found by itself.
    weights.keras_cache_dir().mkdir(parents=True)
    write_fake_inception_graph(weights.keras_cache_dir() / "classify_image_graph_def.pb")
    assert extractors.get_extractor("inception-2015", batch_size=3).spec.dim == 8


def test_evaluate_with_the_graph_reports_inception_score_and_prdc(tiny_run, data16, tmp_path):
    """`dcgan evaluate --extractor inception-2015 --inception-weights FILE`: the graph's head gives IS, end to end."""
    import json
    import shutil

    from typer.testing import CliRunner

    from helpers import copy_run, ok
    from dcgan_cli.cli import app

    data = shutil.copytree(data16, tmp_path / "faces-16", ignore=shutil.ignore_patterns("eval-stats-*"))
    run = copy_run(tiny_run, tmp_path / "runs", data=data)
    pb = write_fake_inception_graph(tmp_path / "classify_image_graph_def.pb")
    args = ["evaluate", "--run", str(run), "--extractor", "inception-2015", "--inception-weights", str(pb),
            "--samples", "40", "--batch-size", "16"]
    r = ok(CliRunner().invoke(app, [*args, "--metrics", "kid,prdc,is", "--json"]))
    result = json.loads(r.stdout)
    assert 1.0 <= result["is"] <= 5 and result["is_splits"] == 10 and result["is_std"] >= 0  # 5 classes at most
    assert result["prdc_samples"] == [24, 40] and 0 <= result["coverage_k5"] <= 1
    assert result["resize"] == "tf-graph to 299" and result["weights"].startswith("sha256:")
    table = ok(CliRunner().invoke(app, [*args, "--metrics", "prdc,is"])).stdout
    assert "IS " in table and "(10 splits)" in table and "P/R/D/C k=5" in table
