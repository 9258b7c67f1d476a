"""The shard format on real files: write with the public writer, read through the real pipeline, reject bad manifests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dcgan_cli.data import shards
from dcgan_cli.errors import DcganError
from dcgan_cli.data.pipeline import make_dataset


def write_data(out, images, limit=1, **facts):
    """`images` (N, H, W, C) uint8 -> shards of about `limit` bytes each, and their manifest; returns it."""
    out.mkdir(parents=True, exist_ok=True)
    writer = shards.ShardWriter(out, "test", limit)
    entries = [e for img in images if (e := writer.add(shards.serialize_example(img.tobytes())))]
    if (last := writer.close()) is not None:
        entries.append(last)
    n, size, _, channels = images.shape
    manifest = shards.make_manifest(size=size, channels=channels, shards=entries, crop="none", **facts)
    shards.write_manifest(out, manifest)
    return manifest


def read_all(data_dir):
    ds = make_dataset(data_dir, 1000, shuffle=False, repeat=False, drop_remainder=False, cycle_length=1)
    return np.concatenate([b.numpy() for b in ds])


def test_round_trip_through_the_pipeline(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    record = len(shards.serialize_example(images[0].tobytes())) + shards.TFRECORD_FRAMING
    m = write_data(tmp_path / "d", images, limit=3 * record, source="test")
    # Three records per shard, in order, named by the format's rule, each with its real checksum.
    assert [s["count"] for s in m["shards"]] == [3, 3, 3, 1]
    assert [s["file"] for s in m["shards"]] == [shards.shard_name("test", i) for i in range(4)]
    import hashlib

    for s in m["shards"]:
        data = (tmp_path / "d" / s["file"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (s["bytes"], s["sha256"])
    # The manifest on disk is what was written, keys in the documented order.
    on_disk = json.loads((tmp_path / "d" / shards.MANIFEST).read_text())
    assert on_disk == shards.load_manifest(tmp_path / "d") == m
    assert list(on_disk)[:4] == ["format", "count", "size", "channels"] and list(on_disk)[-1] == "shards"
    assert (on_disk["format"], on_disk["count"], on_disk["source"]) == ("dcgan-shards-v1", 10, "test")
    np.testing.assert_array_equal(read_all(tmp_path / "d"), images)


def test_grayscale_28x28_round_trip(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)
    write_data(tmp_path / "d", images, limit=1 << 20)
    np.testing.assert_array_equal(read_all(tmp_path / "d"), images)


def test_example_bytes_equal_tensorflow_serialisation():
    import tensorflow as tf

    for n in (0, 1, 127, 128, 784, 16 * 16 * 3, 64 * 64 * 3, 256 * 256 * 3):
        data = bytes(range(256)) * (n // 256) + bytes(n % 256)
        ex = tf.train.Example(features=tf.train.Features(feature={
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))}))
        assert shards.serialize_example(data) == ex.SerializeToString(), n


def test_records_with_more_features_and_a_labels_list_still_read(tmp_path):
    """How labels will be added: an extra feature per record plus a manifest "labels" list; readers keep working."""
    import tensorflow as tf

    images = np.random.default_rng(2).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    out = tmp_path / "labelled"
    out.mkdir()
    name = shards.shard_name("lab", 0)
    with tf.io.TFRecordWriter(str(out / name)) as w:
        for k, img in enumerate(images):
            w.write(tf.train.Example(features=tf.train.Features(feature={
                "class": tf.train.Feature(int64_list=tf.train.Int64List(value=[k % 2])),
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[img.tobytes()])),
            })).SerializeToString())
    entry = {"file": name, "count": 6, "sha256": shards.sha256_file(str(out / name)),
             "bytes": (out / name).stat().st_size}
    shards.write_manifest(out, shards.make_manifest(size=16, channels=3, shards=[entry],
                                                    labels=[{"name": "class", "classes": 2}]))
    assert shards.load_manifest(out)["labels"] == [{"name": "class", "classes": 2}]
    np.testing.assert_array_equal(read_all(out), images)


def _good():
    return {"format": shards.FORMAT, "count": 3, "size": 16, "channels": 3,
            "shards": [{"file": "shard-a-00000.tfrecord", "count": 3, "sha256": "0" * 64, "bytes": 10}]}


@pytest.mark.parametrize("change, problem", [
    (lambda m: m.update(format="dcgan-shards-v2"), "format is 'dcgan-shards-v2'"),
    (lambda m: m.update(shards=[]), "no shards listed"),
    (lambda m: m.update(count=4), "count 4 is not the sum"),
    (lambda m: m.update(count="3"), "count '3' is not the sum"),
    (lambda m: m["shards"][0].update(file="../../etc/passwd"), "bad shard entry"),
    (lambda m: m["shards"][0].update(file="sub/shard-a-00000.tfrecord"), "bad shard entry"),
    (lambda m: m["shards"][0].pop("count"), "bad shard entry"),
    (lambda m: m.update(size=0), "size 0 is not a positive whole number"),
    (lambda m: m.update(channels=2), "channels 2 is not 1 or 3"),
    (lambda m: m.update(labels="class"), "labels is not a list"),
    (lambda m: m.update(labels=[{"name": "image"}]), "labels is not a list"),
    (lambda m: m.update(labels=[{"name": "id"}, {"name": "id"}]), "labels is not a list"),
])
def test_validate_rejects_a_bad_manifest_with_a_one_line_error(change, problem):
    assert shards.validate_manifest(_good()) == _good()
    m = _good()
    change(m)
    with pytest.raises(DcganError) as e:
        shards.validate_manifest(m, "DIR/manifest.json")
    msg = str(e.value)
    assert "\n" not in msg and problem in msg, msg
    assert msg.startswith("DIR/manifest.json is not a valid dcgan-shards-v1 manifest") and "dcgan preprocess" in msg


def test_load_manifest_errors_name_the_fix(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / shards.MANIFEST).write_text("{not json")
    with pytest.raises(DcganError, match=r"manifest.json is corrupt .*dcgan preprocess"):
        shards.load_manifest(d)
    (d / shards.MANIFEST).write_text(json.dumps({**_good(), "count": 0, "shards": [
        {"file": "shard-a-00000.tfrecord", "count": 0, "sha256": "", "bytes": 0}]}))
    with pytest.raises(DcganError, match="lists no images"):
        shards.load_manifest(d)
    (d / shards.MANIFEST).write_text(json.dumps(_good()))
    with pytest.raises(DcganError, match=r"missing 1 of its 1 shards \(shard-a-00000.tfrecord, ...\)"):
        shards.load_manifest(d)
    assert shards.load_manifest(d, check_shards=False) == _good()


def test_the_size_rule_is_one_rule_everywhere():
    from dcgan_cli.config import TrainConfig
    from dcgan_cli.gan.model import build_generator
    from dcgan_cli.data.preprocess import PreprocessConfig

    assert shards.SIZES == (28, 16, 32, 64, 128, 256)
    for size in shards.SIZES:
        assert shards.check_size(size) == size
    for size in (8, 24, 100, 512):
        for make in (lambda: shards.check_size(size), lambda: TrainConfig(image_size=size),
                     lambda: PreprocessConfig(source="s", out="o", size=size)):
            with pytest.raises(DcganError, match=shards.SIZE_RULE):
                make()
        with pytest.raises(ValueError, match=shards.SIZE_RULE):
            build_generator(image_size=size)


def test_find_data_prefers_celeba_then_the_only_set(tmp_path):
    def make(name):
        (tmp_path / "processed" / name).mkdir(parents=True)
        (tmp_path / "processed" / name / shards.MANIFEST).write_text("{}")

    with pytest.raises(DcganError, match=r"no preprocessed data under .*dcgan preprocess celeba.*--data DIR"):
        shards.find_data(tmp_path)
    (tmp_path / "processed" / "half-done").mkdir(parents=True)  # no manifest: not a data set
    make("faces-32")
    assert shards.find_data(tmp_path, 32) == tmp_path / "processed" / "faces-32"
    make("lfw-sample-16")
    with pytest.raises(DcganError, match=r"several data sets .*\(faces-32, lfw-sample-16\); pick one with --data"):
        shards.find_data(tmp_path)
    make("celeba-64")
    make("celeba-128")
    assert shards.find_data(tmp_path) == tmp_path / "processed" / "celeba-64"
    assert shards.find_data(tmp_path, 128) == tmp_path / "processed" / "celeba-128"


@pytest.mark.subprocess
def test_shards_imports_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys, dcgan_cli.data.shards, dcgan_cli.config, dcgan_cli.data.preprocess; "
            "print('tensorflow' in sys.modules, 'PIL' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
