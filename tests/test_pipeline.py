"""The tf.data pipeline over real shards: shapes, order, shuffling, sharding, errors, benchmarks."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from dcgan_cli.bench.input import input_throughput, make_bench_shards, preprocess_throughput
from dcgan_cli.errors import DcganError
from dcgan_cli.data.pipeline import labelled_batches, make_dataset
from dcgan_cli.data.shards import load_manifest


@pytest.fixture(scope="module")
def shards4(tmp_path_factory):
    """200 random (so distinct) 8x8 RGB images in 4 shards."""
    return make_bench_shards(tmp_path_factory.mktemp("bench"), 200, 8, n_shards=4)


def ids(batches) -> list[int]:
    """Which images a list of batches holds, by content (each image is distinct)."""
    out = []
    for b in batches:
        b = b.numpy().reshape(b.shape[0], -1)
        out += [hash(row.tobytes()) for row in b]
    return out


def all_ids(data_dir) -> list[int]:
    return ids(make_dataset(data_dir, 1000, shuffle=False, repeat=False, drop_remainder=False, cycle_length=1))


def test_batches_have_the_manifest_shape_and_dtype(shards4):
    import tensorflow as tf

    m = load_manifest(shards4)
    assert len(m["shards"]) >= 4 and m["count"] == 200
    batch = next(iter(make_dataset(shards4, 32)))
    assert batch.shape == (32, 8, 8, 3) and batch.dtype == tf.uint8


def test_one_epoch_holds_every_image_once_and_the_seed_fixes_the_order(shards4):
    every = all_ids(shards4)
    assert len(set(every)) == 200
    epoch = lambda seed: ids(make_dataset(shards4, 50, seed=seed, repeat=False, drop_remainder=False))  # noqa: E731
    a, b, c = epoch(1), epoch(1), epoch(2)
    assert sorted(a) == sorted(every)
    assert a == b and a != c and a != every


def test_repeat_and_drop_remainder(shards4):
    ds = make_dataset(shards4, 64, shuffle=False, repeat=False, drop_remainder=True)
    assert [b.shape[0] for b in ds] == [64, 64, 64]
    ds = make_dataset(shards4, 64, shuffle=False, repeat=False, drop_remainder=False)
    assert [b.shape[0] for b in ds] == [64, 64, 64, 8]
    assert len(list(make_dataset(shards4, 64).take(7))) == 7  # repeats past one epoch


def _context(n, i):
    import tensorflow as tf

    return tf.distribute.InputContext(num_input_pipelines=n, input_pipeline_id=i, num_replicas_in_sync=n)


def test_input_pipelines_split_by_file_without_overlap(shards4, caplog):
    with caplog.at_level(logging.WARNING, logger="dcgan_cli.data.pipeline"):
        parts = [ids(make_dataset(shards4, 20, input_context=_context(2, i), repeat=False, drop_remainder=False))
                 for i in range(2)]
    assert not caplog.records
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(all_ids(shards4))


def test_fewer_shards_than_pipelines_splits_by_record_with_a_warning(tmp_path, caplog):
    one = make_bench_shards(tmp_path, 90, 8, n_shards=1)
    assert len(load_manifest(one)["shards"]) == 1
    with caplog.at_level(logging.WARNING, logger="dcgan_cli.data.pipeline"):
        parts = [ids(make_dataset(one, 30, input_context=_context(3, i), repeat=False, drop_remainder=False))
                 for i in range(3)]
    assert "splitting by record" in caplog.text
    assert caplog.text.count("splitting by record") == 1, "warned once, not on every dataset built"
    assert [len(p) for p in parts] == [30, 30, 30]
    assert len(set(parts[0] + parts[1] + parts[2])) == 90


def test_cache_gives_the_same_data(shards4):
    plain = make_dataset(shards4, 50, seed=3, repeat=False)
    cached = make_dataset(shards4, 50, seed=3, repeat=False, cache=True)
    assert ids(plain) == ids(cached)


def test_missing_or_broken_data_is_an_error_naming_preprocess(shards4, tmp_path):
    with pytest.raises(DcganError, match="dcgan preprocess"):
        load_manifest(tmp_path / "nothing-here")
    broken = tmp_path / "broken"
    broken.mkdir()
    m = json.loads((shards4 / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps(m))  # shards not copied
    with pytest.raises(DcganError, match=r"missing 4 of its 4 shards.*--force"):
        load_manifest(broken)


@pytest.mark.parametrize("label, fix", [("label", "preprocess a labelled data set such as mnist"),
                                        ("identity", "preprocess it with --labels celeba (CelebA) or --labels folders"),
                                        ("attributes", "preprocess CelebA with --labels celeba")])
def test_labels_the_data_lacks_are_one_error_naming_the_fix_for_that_label(shards4, label, fix):
    expected = f"{shards4} has no {label} labels (it has: none); {fix}"
    with pytest.raises(DcganError) as training:
        make_dataset(shards4, 4, labels=(label,))
    with pytest.raises(DcganError) as reading:
        next(labelled_batches(shards4, 4, (label,)))
    assert str(training.value) == str(reading.value) and str(training.value).startswith(expected)


def test_benchmarks_report_figures(tmp_path):
    """The benchmark functions run end to end and report what they measured (not how fast it must be)."""
    rate = input_throughput(make_bench_shards(tmp_path, 300, 16), batch_size=32, batches=5)
    assert rate > 0
    r = preprocess_throughput(tmp_path, n_images=24, workers=1)
    assert r["images"] == 24 and r["img_per_s"] > 0 and r["peak_rss_mb"] >= r["main_rss_mb"] > 0
    m = json.loads((tmp_path / "celeba-like-24-64" / "manifest.json").read_text())
    assert (m["count"], m["crop"], m["size"]) == (24, "celeba", 64)


@pytest.mark.parametrize("cache", [False, True])
def test_one_pipeline_for_a_run_gives_each_epoch_its_own_seeded_order(shards4, cache):
    import keras

    keras.utils.set_random_seed(0)  # the trainer sets a global seed of 0; epoch seeds must not depend on it

    def run(first, stop):
        ds = make_dataset(shards4, 50, seed=11, cache=cache, epochs=(first, stop), batches_per_epoch=4)
        return ids(ds)

    everything = set(all_ids(shards4))
    three = run(0, 3)
    assert len(three) == 3 * 200
    epochs = [three[i * 200:(i + 1) * 200] for i in range(3)]
    for e in epochs:  # every epoch is one pass over the data...
        assert set(e) == everything and len(set(e)) == 200
    assert epochs[0] != epochs[1] != epochs[2]  # ...in its own order
    assert run(0, 3) == three  # reproducible
    assert run(1, 3) == three[200:]  # a run resumed at epoch 1 sees what an uninterrupted one saw


def test_an_epoch_longer_than_the_data_repeats_it(shards4):
    ds = make_dataset(shards4, 50, seed=3, epochs=(0, 1), batches_per_epoch=10)
    got = ids(ds)
    assert len(got) == 500 and set(got) == set(all_ids(shards4))
