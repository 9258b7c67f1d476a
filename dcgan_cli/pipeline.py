"""Preprocessed shards -> batches of uint8 images, as a `tf.data` pipeline.

Format written by `dcgan preprocess` (see preprocess.py):
  DIR/manifest.json          count, size, channels, crop, source, shards [...]
  DIR/shard-00000-of-000NN.tfrecord  tf.train.Example records, one per image,
                             feature "image": raw uint8 bytes of (size, size, channels)

Batches stay uint8 here; the train step scales them to [-1, 1] on the device,
which keeps the input pipeline's CPU cost to copying bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

from dcgan_cli.errors import DcganError

MANIFEST = "manifest.json"
FORMAT = "dcgan-shards-v1"


def load_manifest(data_dir: str | Path) -> dict:
    """Read and check `manifest.json`; errors name `dcgan preprocess` as the fix."""
    import tensorflow as tf  # gfile: local paths and gs:// alike

    data_dir = str(data_dir)
    path = f"{data_dir.rstrip('/')}/{MANIFEST}"
    hint = "make it with `dcgan preprocess SOURCE --out DIR` (e.g. `dcgan preprocess celeba`)"
    if not tf.io.gfile.exists(data_dir):
        raise DcganError(f"data directory {data_dir} does not exist; {hint}")
    if not tf.io.gfile.exists(path):
        raise DcganError(f"{data_dir} has no {MANIFEST}, so it is not (completely) preprocessed data; {hint}")
    try:
        with tf.io.gfile.GFile(path) as f:
            m = json.load(f)
    except json.JSONDecodeError as e:
        raise DcganError(f"{path} is corrupt ({e}); re-run `dcgan preprocess ... --force`") from None
    if m.get("format") != FORMAT or not m.get("shards"):
        raise DcganError(f"{path} is not a {FORMAT} manifest; re-run `dcgan preprocess ... --force`")
    if m.get("count", 0) < 1:
        raise DcganError(f"{data_dir} holds no images; preprocess a folder that has some")
    return m


def shard_paths(data_dir: str | Path, manifest: dict) -> list[str]:
    return [f"{str(data_dir).rstrip('/')}/{s['file']}" for s in manifest["shards"]]


def make_dataset(
    data_dir: str | Path,
    batch_size: int,
    *,
    shuffle: bool = True,
    repeat: bool = True,
    seed: int | None = 0,
    cache: bool = False,
    drop_remainder: bool = True,
    input_context=None,
    shuffle_buffer: int = 10_000,
):
    """A dataset of uint8 batches (batch_size, size, size, channels).

    `input_context` (from `strategy.distribute_datasets_from_function`) shards
    the files across input pipelines and gives the per-replica batch size.
    """
    import tensorflow as tf

    m = load_manifest(data_dir)
    size, channels = m["size"], m["channels"]
    files = shard_paths(data_dir, m)

    # Sharding across workers is ours to do: `distribute_datasets_from_function`
    # never auto-shards. By file when every worker can have its own files, else
    # by record (each worker reads everything, keeps 1/n; the trainer warns).
    pipelines = input_context.num_input_pipelines if input_context is not None else 1
    by_file = pipelines > 1 and len(files) >= pipelines
    by_data = pipelines > 1 and not by_file

    ds = tf.data.Dataset.from_tensor_slices(files)
    if by_file:
        ds = ds.shard(pipelines, input_context.input_pipeline_id)
    # By-data sharding needs the same record order on every worker: files in
    # manifest order, read deterministically, then the record shuffle below.
    if shuffle and not by_data:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, buffer_size=8 << 20),
        cycle_length=min(len(files), 4),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=seed is not None or by_data,
    )
    if by_data:
        ds = ds.shard(pipelines, input_context.input_pipeline_id)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(min(shuffle_buffer, m["count"]), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    # Vectorised parse and decode: one op call per batch, not per image.
    def parse(serialized):
        feats = tf.io.parse_example(serialized, {"image": tf.io.FixedLenFeature([], tf.string)})
        pixels = tf.io.decode_raw(feats["image"], tf.uint8)
        return tf.reshape(pixels, [-1, size, size, channels])

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
