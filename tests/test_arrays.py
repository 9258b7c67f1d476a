"""MNIST and Fashion-MNIST: tiny .npz and IDX files served from 127.0.0.1, downloaded through the registry,
preprocessed straight from the arrays with their labels, read back through the pipeline; the mnist and
celeba28 presets build and train for real. No test reaches the internet.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from dcgan_cli.data import datasets
from dcgan_cli.cli import app
from dcgan_cli.errors import DcganError

from helpers import one_line_error
from fake_http import dropping_route, failing_route, file_route

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("fast_backoff")  # conftest: the server fails on purpose, retries need not wait
N_TRAIN, N_TEST = 10, 4


def digits(n: int, seed: int, side: int = 28):
    """n uint8 images with a bright square whose place encodes the label, and the labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    x = rng.integers(0, 30, (n, side, side)).astype(np.uint8)
    for img, y in zip(x, labels):
        r, c = 2 + 2 * int(y), 4 + int(y)
        img[r:r + 6, c:c + 6] = 255
    return x, labels


def npz_bytes(splits=("train", "test")) -> bytes:
    parts = {}
    if "train" in splits:
        parts["x_train"], parts["y_train"] = digits(N_TRAIN, 0)
    if "test" in splits:
        parts["x_test"], parts["y_test"] = digits(N_TEST, 1)
    buf = io.BytesIO()
    np.savez_compressed(buf, **parts)
    return buf.getvalue()


def idx_bytes(a: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 8, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def idx_files(gz: bool = True) -> dict[str, bytes]:
    (xtr, ytr), (xte, yte) = digits(N_TRAIN, 0), digits(N_TEST, 1)
    out = {}
    for stem, a in (("train-images-idx3-ubyte", xtr), ("train-labels-idx1-ubyte", ytr),
                    ("t10k-images-idx3-ubyte", xte), ("t10k-labels-idx1-ubyte", yte)):
        data = idx_bytes(a)
        out[stem + (".gz" if gz else "")] = gzip.compress(data, mtime=0) if gz else data
    return out


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def serve_registry_entry(monkeypatch, server, name: str, files: dict[str, bytes], routes=None) -> None:
    """The real registry entry `name`, its mirrors pointed at the local server and its checksums at
    the tiny files' (a dead mirror first, so the fallback is exercised too)."""
    real = datasets.DATASETS[name]
    routes = routes or {}
    specs = []
    for spec in real.files:
        data = files[spec.filename]
        url = server.route(f"/{name}/{spec.filename}", routes.get(spec.filename, file_route(data)))
        specs.append(dataclasses.replace(spec, mirrors=(server.url("/gone/" + spec.filename), url), size=len(data),
                                         md5=hashlib.md5(data).hexdigest(), sha256=sha256(data)))
    tiny = dataclasses.replace(real, files=tuple(specs), expected_images=N_TRAIN + N_TEST)
    monkeypatch.setitem(datasets.DATASETS, name, tiny)


def read_back(data_dir, labels=("label",)):
    """Every (image, label) of a preprocessed folder, in file order, through the training pipeline."""
    from dcgan_cli.data.pipeline import make_dataset

    ds = make_dataset(data_dir, 64, shuffle=False, repeat=False, seed=0, drop_remainder=False, labels=labels)
    images, ints = next(iter(ds))
    return images.numpy(), ints["label"].numpy()


# -- the registry entries ---------------------------------------------------------


def test_registry_entries_carry_the_published_checksums_and_several_mirrors():
    mnist, fashion = datasets.get("mnist"), datasets.get("fashion-mnist")
    assert mnist.arrays and fashion.arrays and mnist.expected_images == fashion.expected_images == 70_000
    [npz] = mnist.files
    assert npz.sha256 == "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"  # keras' file_hash
    assert len(npz.mirrors) >= 2 and npz.size == 11_490_434
    assert {f.filename for f in fashion.files} == {
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz"}
    assert all(len(f.sha256) == 64 and len(f.md5) == 32 and len(f.mirrors) >= 2 for f in fashion.files)
    assert fashion.classes[9] == "Ankle boot" and mnist.classes == tuple("0123456789")


def test_labelled_records_are_the_examples_tensorflow_writes():
    import tensorflow as tf

    from dcgan_cli.data.shards import parse_images, parse_ints, serialize_example

    pixels = bytes(range(2 * 2 * 3))
    ours = tf.train.Example.FromString(serialize_example(pixels, {"label": 7, "other": -3}))
    theirs = tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[pixels])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
        "other": tf.train.Feature(int64_list=tf.train.Int64List(value=[-3]))}))
    assert ours == theirs
    batch = tf.constant([serialize_example(pixels, {"label": 7}), serialize_example(pixels)])
    np.testing.assert_array_equal(parse_ints(batch, ["label"])["label"], [7, -1])  # old records: the default
    assert parse_images(batch, 2, 3).shape == (2, 2, 2, 3)


# -- download + preprocess, as a user would ------------------------------------------------


def test_download_then_preprocess_mnist_keeps_pixels_and_labels(server, tmp_path, monkeypatch):
    data = npz_bytes()
    serve_registry_entry(monkeypatch, server, "mnist", {"mnist.npz": data})

    r = runner.invoke(app, ["download", "mnist", "--data-dir", str(tmp_path), "--quiet"])
    assert r.exit_code == 0, r.output
    assert f"{N_TRAIN + N_TEST} images" in r.output and "dcgan preprocess mnist" in r.output
    assert (tmp_path / "mnist" / "mnist.npz").read_bytes() == data
    marker = json.loads((tmp_path / "mnist" / ".complete.json").read_text())
    assert marker["images"] == N_TRAIN + N_TEST and marker["files"][0]["sha256"] == sha256(data)
    assert server.hits("/gone/mnist.npz") == 1  # the dead mirror was tried, then the next one

    r = runner.invoke(app, ["download", "mnist", "--data-dir", str(tmp_path), "--quiet"])
    assert r.exit_code == 0 and "already complete" in r.output

    r = runner.invoke(app, ["preprocess", "mnist", "--data-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "processed" / "mnist-28"
    m = json.loads((out / "manifest.json").read_text())
    assert (m["count"], m["size"], m["channels"], m["crop"]) == (N_TRAIN + N_TEST, 28, 1, "none")
    assert m["labels"] == [{"name": "label", "dtype": "int64", "classes": list("0123456789")}]

    images, labels = read_back(out)
    (xtr, ytr), (xte, yte) = digits(N_TRAIN, 0), digits(N_TEST, 1)
    np.testing.assert_array_equal(images[..., 0], np.concatenate([xtr, xte]))  # bytes untouched, train first
    np.testing.assert_array_equal(labels, np.concatenate([ytr, yte]))


def test_fashion_mnist_idx_files_resume_a_dropped_download_and_split_test(server, tmp_path, monkeypatch):
    files = idx_files(gz=True)
    big = "train-images-idx3-ubyte.gz"
    serve_registry_entry(monkeypatch, server, "fashion-mnist", files,
                         routes={big: dropping_route(files[big], cut_at=len(files[big]) // 2)})

    r = runner.invoke(app, ["download", "fashion-mnist", "--data-dir", str(tmp_path), "--quiet"])
    assert r.exit_code == 0, r.output
    resumed = server.requests(f"/fashion-mnist/{big}")[-1]
    assert resumed.headers.get("Range") == f"bytes={len(files[big]) // 2}-"  # resumed, not restarted
    for name, data in files.items():
        assert (tmp_path / "fashion-mnist" / name).read_bytes() == data

    r = runner.invoke(app, ["preprocess", "fashion-mnist", "--split", "test", "--data-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "processed" / "fashion-mnist-28"
    m = json.loads((out / "manifest.json").read_text())
    assert (m["count"], m["split"]) == (N_TEST, "test")
    assert m["labels"][0]["classes"][0] == "T-shirt/top"
    images, labels = read_back(out)
    x, y = digits(N_TEST, 1)
    np.testing.assert_array_equal(images[..., 0], x)
    np.testing.assert_array_equal(labels, y)


def test_a_file_with_the_wrong_checksum_installs_nothing(server, tmp_path, monkeypatch):
    data = npz_bytes()
    serve_registry_entry(monkeypatch, server, "mnist", {"mnist.npz": data},
                         routes={"mnist.npz": file_route(data[:-1] + bytes([data[-1] ^ 1]))})
    r = runner.invoke(app, ["download", "mnist", "--data-dir", str(tmp_path), "--quiet"])
    assert r.exit_code == 1
    assert "could not download mnist.npz" in r.output and "SHA-256" in r.output
    assert not (tmp_path / "mnist").exists()


# -- preprocess: formats, splits, shapes, errors ----------------------------------------------


def preprocess(src, out, **kw):
    from dcgan_cli.data.preprocess import PreprocessConfig
    from dcgan_cli.data.preprocess import preprocess as run

    kw.setdefault("size", 28)
    kw.setdefault("channels", 1)
    kw.setdefault("crop", "none")
    return run(PreprocessConfig(source=str(src), out=str(out), **kw), log=lambda line: None)


def write_files(folder, files: dict[str, bytes]):
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def test_raw_and_gzipped_idx_and_npz_give_the_same_shards_content(tmp_path):
    sources = {"raw": idx_files(gz=False), "gz": idx_files(gz=True), "npz": {"mnist.npz": npz_bytes()}}
    got = {}
    for kind, files in sources.items():
        src = write_files(tmp_path / kind, files)
        m = preprocess(src, tmp_path / f"out-{kind}")
        assert m["count"] == N_TRAIN + N_TEST and m["labels"][0]["name"] == "label"
        got[kind] = read_back(tmp_path / f"out-{kind}")
    for kind in ("gz", "npz"):
        np.testing.assert_array_equal(got[kind][0], got["raw"][0])
        np.testing.assert_array_equal(got[kind][1], got["raw"][1])


def test_splits_limit_and_a_missing_split(tmp_path):
    src = write_files(tmp_path / "m", {"mnist.npz": npz_bytes()})
    assert preprocess(src, tmp_path / "train", split="train")["count"] == N_TRAIN
    assert preprocess(src, tmp_path / "test", split="test")["count"] == N_TEST
    m = preprocess(src, tmp_path / "lim", split="all", limit=12)
    assert m["count"] == 12
    _, labels = read_back(tmp_path / "lim")
    np.testing.assert_array_equal(labels, np.concatenate([digits(N_TRAIN, 0)[1], digits(N_TEST, 1)[1]])[:12])

    only_train = write_files(tmp_path / "t", {"mnist.npz": npz_bytes(splits=("train",))})
    with pytest.raises(DcganError, match="has no test split .*--split all or train"):
        preprocess(only_train, tmp_path / "x", split="test")
    with pytest.raises(DcganError, match="--crop celeba and --crop-size do not apply"):
        preprocess(src, tmp_path / "y", crop="celeba", size=28)


def test_resized_to_rgb_64(tmp_path):
    src = write_files(tmp_path / "m", {"mnist.npz": npz_bytes()})
    m = preprocess(src, tmp_path / "out", size=64, channels=3, split="train")
    assert (m["size"], m["channels"], m["count"]) == (64, 3, N_TRAIN)
    images, labels = read_back(tmp_path / "out")
    x, y = digits(N_TRAIN, 0)
    assert images.shape == (N_TRAIN, 64, 64, 3)
    assert (images[..., 0] == images[..., 2]).all()  # grey in RGB
    # The bright square is where it was, twice as far in: the label's place survives the resize.
    for img, small, label in zip(images[..., 0], x, labels):
        assert np.unravel_index(img.argmax(), img.shape)[0] // 2 in range(small.argmax() // 28 - 1, small.argmax() // 28 + 7)
    np.testing.assert_array_equal(labels, y)


def test_cli_defaults_follow_the_arrays_and_a_damaged_file_names_the_fix(tmp_path):
    files = idx_files(gz=True)
    src = write_files(tmp_path / "fm", files)
    r = runner.invoke(app, ["preprocess", str(src), "--data-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "processed" / "fm-28" / "manifest.json").read_text())
    assert (m["size"], m["channels"]) == (28, 1)
    assert m["labels"][0]["classes"] == [str(i) for i in range(10)]  # not a registry download: ids as names

    name = "train-images-idx3-ubyte.gz"
    (src / name).write_bytes(gzip.compress(idx_bytes(digits(N_TRAIN, 0)[0])[:-5]))  # 5 pixels short
    r = runner.invoke(app, ["preprocess", str(src), "--out", str(tmp_path / "o2")])
    one_line_error(r, f"Error: {src / name} holds", "dcgan download NAME --force")
    (src / name).write_bytes(b"<html>not idx</html>")
    r = runner.invoke(app, ["preprocess", str(src), "--out", str(tmp_path / "o3")])
    one_line_error(r, "is not an IDX file")


def test_celeba_split_test_is_partition_2(tmp_path):
    from helpers import write_faces

    folder = write_faces(tmp_path / "img_align_celeba", n=6)
    names = sorted(p.name for p in folder.iterdir())
    (tmp_path / "list_eval_partition.txt").write_text("".join(f"{n} {i % 3}\n" for i, n in enumerate(names)))
    m = preprocess(folder, tmp_path / "out", size=16, channels=3, crop="center", split="test")
    assert m["count"] == 2 and "labels" not in m
    with pytest.raises(DcganError, match="has no label labels .*preprocess a labelled data set"):
        read_back(tmp_path / "out")


# -- presets: build and train for real --------------------------------------------------------


def test_presets_prefer_their_own_data(tmp_path):
    from dcgan_cli.config import resolve_data
    from dcgan_cli.data.shards import find_data

    for name in ("celeba-64", "celeba-28", "mnist-28", "other-32"):
        (tmp_path / "processed" / name).mkdir(parents=True)
        (tmp_path / "processed" / name / "manifest.json").write_text("{}")
    assert resolve_data(None, tmp_path, "mnist").name == "mnist-28"
    assert resolve_data(None, tmp_path, "celeba28").name == "celeba-28"
    assert resolve_data(None, tmp_path, "dcgan").name == "celeba-64"
    assert resolve_data(tmp_path / "processed" / "other-32", tmp_path, "mnist").name == "other-32"  # --data wins
    assert find_data(tmp_path).name == "celeba-64"


def test_celeba28_generator_is_the_examples_architecture():
    from keras import layers

    from dcgan_cli.config import preset
    from dcgan_cli.gan.model import build_discriminator, build_generator

    c = preset("celeba28")
    g = build_generator(c.image_size, c.channels, c.latent_dim, c.g_filters, activation=c.g_activation, fast=False)
    convs = [x for x in g.layers if isinstance(x, layers.Conv2DTranspose)]
    assert [x.output.shape[1:] for x in convs] == [(7, 7, 1024), (14, 14, 512), (28, 28, 3)]
    assert sum(isinstance(x, layers.LeakyReLU) for x in g.layers) == 2
    assert not any(isinstance(x, layers.ReLU) for x in g.layers)
    assert sum(isinstance(x, layers.BatchNormalization) for x in g.layers) == 2
    assert g.layers[-1].get_config()["activation"] == "tanh"
    d = build_discriminator(c.image_size, c.channels, c.d_filters, fast=False)
    assert sum(isinstance(x, layers.BatchNormalization) for x in d.layers) == 1
    assert sum(isinstance(x, layers.LeakyReLU) for x in d.layers) == 2
    # The paper's generator is unchanged by default.
    assert not any(isinstance(x, layers.LeakyReLU) for x in build_generator(28, 1, 8, 8, fast=False).layers)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("name,channels", [("mnist", 1), ("celeba28", 3)])
def test_presets_train_a_step_and_sample_from_the_saved_generator(tmp_path, name, channels):
    from dcgan_cli.config import preset
    from dcgan_cli.training.loop import train

    src = write_files(tmp_path / "m", {"mnist.npz": npz_bytes()})
    data = tmp_path / f"data-{channels}"
    preprocess(src, data, channels=channels)
    small = {"g_filters": 16} if name == "celeba28" else {}  # the real 512 is tested above, untrained
    cfg = preset(name, data=str(data), runs_dir=str(tmp_path / "runs"), batch_size=8, epochs=1, steps_per_epoch=1,
                 num_samples=4, precision="fp32", strategy="default", **small)
    assert (cfg.image_size, cfg.channels) == (28, channels)
    run = train(cfg, quiet=True)
    assert (run / "samples" / "epoch-0001.png").exists()

    # generator.keras loads with Keras alone, in a process that never imports dcgan_cli.
    code = ("import sys, numpy as np, keras; g = keras.saving.load_model(sys.argv[1]); "
            "x = g.predict(np.zeros((2, g.input_shape[-1]), 'float32'), verbose=0); "
            "assert 'dcgan_cli' not in sys.modules; print(x.shape, type(g.layers[4]).__name__)")
    out = subprocess.run([sys.executable, "-c", code, str(run / "generator.keras")], capture_output=True, text=True,
                         check=True).stdout
    assert f"(2, 28, 28, {channels})" in out
    assert ("LeakyReLU" if name == "celeba28" else "ReLU") in out

    grid = tmp_path / "grid.png"
    r = runner.invoke(app, ["sample", "--generator", str(run / "generator.keras"), "-n", "4", str(grid)])
    assert r.exit_code == 0, r.output
    from PIL import Image

    with Image.open(grid) as im:
        assert im.size == (2 * 28 + 3 * 2, 2 * 28 + 3 * 2)
