"""Preprocessed shards -> batches of uint8 images, as a `tf.data` pipeline.

The format (manifest.json listing tf.train.Example shards, one image each) is
`shards.py`'s, read with its `load_manifest`, `parse_images` and `parse_ints`.

Batches stay uint8 here; the train step scales them to [-1, 1] on the device,
which keeps the input pipeline's CPU cost to copying bytes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dcgan_cli.errors import DcganError
from dcgan_cli.data.shards import label_specs, load_manifest, parse_images, parse_ints, shard_paths

__all__ = ["labelled_batches", "make_dataset"]

log = logging.getLogger(__name__)
_warned: set[tuple[str, int]] = set()


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
    cycle_length: int = 8,
    epochs: tuple[int, int] | None = None,
    batches_per_epoch: int = 0,
    labels: tuple[str, ...] = (),
):
    """A dataset of uint8 batches (batch_size, size, size, channels).

    With `labels` (int64 features the manifest declares, e.g. ("label",)),
    each element is (images, {name: int64 (batch,)}) instead.

    Order of work: shard files (shuffled) -> interleaved reading -> [shard by
    data] -> [cache] -> shuffle -> repeat -> batch -> one vectorised parse and
    decode per batch -> prefetch. With a `seed` the order is reproducible
    (training seeds it per epoch); `seed=None` lets TensorFlow reorder for speed.

    `input_context` (from `strategy.distribute_datasets_from_function`) splits
    the data across input pipelines and gives the per-replica batch size:
    by file when there are at least as many shards as pipelines, else by
    record, with a warning (every pipeline then reads every file).

    `epochs=(first, stop)` with `batches_per_epoch` makes one pipeline for a
    whole training run: epoch e is `batches_per_epoch` batches shuffled with
    `seed + e` (so a resumed run sees the same batches), and batches keep
    flowing across epoch boundaries instead of stalling while a new pipeline
    fills its shuffle buffer. With `cache` the records are read from disk once.
    """
    import tensorflow as tf

    m = load_manifest(data_dir)
    _require_labels(data_dir, m, labels)
    deterministic = seed is not None
    records = _Records.split(data_dir, shard_paths(data_dir, m), input_context, shuffle=shuffle,
                             deterministic=deterministic, cycle_length=cycle_length)
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    buffer = min(shuffle_buffer, m["count"])
    if epochs is None:
        ds = _one_stream(records, seed, buffer, shuffle=shuffle, repeat=repeat, cache=cache)
    else:
        ds = _epoch_by_epoch(records, seed, buffer, epochs, batches_per_epoch * batch_size, shuffle=shuffle, cache=cache)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = _parse_batches(ds, m, labels, deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    if input_context is not None:  # sharded by _Records; tf.distribute must not shard again
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


@dataclass(frozen=True)
class _Records:
    """The serialized examples one input pipeline reads: its shard files, interleaved, [its share of records].

    Sharding across workers is ours to do: `distribute_datasets_from_function`
    never auto-shards. By file when every pipeline can have its own files, else
    by record (each pipeline reads everything, keeps 1/n).
    """

    files: list[str]
    shuffle: bool
    deterministic: bool
    cycle_length: int
    input_context: object = None
    by_file: bool = False
    by_data: bool = False

    @classmethod
    def split(cls, data_dir, files: list[str], input_context, **how) -> "_Records":
        """How `files` are split across `input_context`'s pipelines; warns (once) when it must be by record."""
        pipelines = input_context.num_input_pipelines if input_context is not None else 1
        by_file = pipelines > 1 and len(files) >= pipelines
        by_data = pipelines > 1 and not by_file
        if by_data and (str(data_dir), pipelines) not in _warned:  # once, not every epoch
            _warned.add((str(data_dir), pipelines))
            log.warning("%s has %d shard file(s) for %d input pipelines; splitting by record instead, so every "
                        "pipeline reads every file (re-run `dcgan preprocess --shard-mb` smaller for more shards)",
                        data_dir, len(files), pipelines)
        return cls(files, input_context=input_context, by_file=by_file, by_data=by_data, **how)

    def read(self, file_seed):
        """The records, the file order shuffled with `file_seed` (an int, a tensor or None)."""
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices(self.files)
        if self.by_file:
            ds = ds.shard(self.input_context.num_input_pipelines, self.input_context.input_pipeline_id)
        # Splitting by record needs every pipeline to see the records in the same
        # order, so the file order may only be shuffled with a shared seed.
        if self.shuffle and len(self.files) > 1 and (self.deterministic or not self.by_data):
            ds = ds.shuffle(len(self.files), seed=file_seed, reshuffle_each_iteration=True)
        ds = ds.interleave(
            lambda f: tf.data.TFRecordDataset(f, buffer_size=4 << 20),
            cycle_length=max(1, min(len(self.files), self.cycle_length)),
            block_length=16,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=self.deterministic or self.by_data,
        )
        if self.by_data:
            ds = ds.shard(self.input_context.num_input_pipelines, self.input_context.input_pipeline_id)
        return ds


def _one_stream(records: _Records, seed: int | None, buffer: int, *, shuffle: bool, repeat: bool, cache: bool):
    """Records -> [cache] -> shuffle (reshuffled on every pass) -> [repeat forever]."""
    ds = records.read(seed)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds


def _epoch_by_epoch(records: _Records, seed: int | None, buffer: int, epochs: tuple[int, int], per_epoch: int, *,
                    shuffle: bool, cache: bool):
    """Epochs first..stop-1 back to back, `per_epoch` records each, epoch e shuffled with seed + e."""
    import tensorflow as tf

    first, stop = epochs
    base = records.read(seed).cache() if cache else None  # cached: read once, reshuffled every epoch

    def epoch(e):  # e: a scalar int64 tensor
        # Seeds here are tensors, which TF's seed logic mishandles when a global
        # seed of 0 is set (keras.utils.set_random_seed(0)); this function's own
        # graph needs no global seed: the op seed decides alone.
        tf.compat.v1.get_default_graph().seed = None
        epoch_seed = (seed or 0) + e
        ds = base if base is not None else records.read(epoch_seed)
        if shuffle:
            ds = ds.shuffle(buffer, seed=epoch_seed)
        # An epoch may be longer than the data (--steps-per-epoch): repeat, then cut.
        return ds.repeat().take(per_epoch)

    return tf.data.Dataset.range(first, stop).flat_map(epoch)


def _parse_batches(ds, manifest: dict, labels: tuple[str, ...], deterministic: bool):
    """Batches of serialized examples -> uint8 images [, {label: int64}]: one vectorised parse per batch."""
    import tensorflow as tf

    size, channels = manifest["size"], manifest["channels"]

    from dcgan_cli.data.shards import label_length, parse_labelled

    lengths = {n: label_length(label_specs(manifest)[n]) for n in labels}

    def parse(serialized):
        if any(n > 1 for n in lengths.values()):  # a vector label (CelebA's attributes): (batch, length)
            return parse_labelled(serialized, size, channels, lengths)
        images = parse_images(serialized, size, channels)
        return (images, parse_ints(serialized, labels)) if labels else images

    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def _require_labels(data_dir: str | Path, manifest: dict, labels: tuple[str, ...]) -> None:
    """An error naming the preprocess option that adds them, unless `manifest` declares every one of `labels`."""
    have = label_specs(manifest)
    missing = [n for n in labels if n not in have]
    if not missing:
        return
    from dcgan_cli.data.preprocess.arrays import LABEL_FEATURE
    from dcgan_cli.data.preprocess.labels import ATTRIBUTES, IDENTITY

    fixes = {
        LABEL_FEATURE: "preprocess a labelled data set such as mnist or fashion-mnist",
        IDENTITY: "preprocess it with --labels celeba (CelebA) or --labels folders (person/x.jpg folders)",
        ATTRIBUTES: "preprocess CelebA with --labels celeba",
    }
    fix = fixes.get(missing[0], "preprocess a data set that carries them")
    raise DcganError(f"{data_dir} has no {', '.join(missing)} labels (it has: {', '.join(have) or 'none'}); {fix}")


def labelled_batches(data_dir: str | Path, batch_size: int, labels: tuple[str, ...] = ()):
    """(uint8 images, {label: int64 array}) numpy batches of every image, in shard order (no shuffle).

    Labels the data does not carry are an error naming the fix; an image without
    one reads shards.MISSING_LABEL.
    """
    import tensorflow as tf

    from dcgan_cli.data.shards import label_length, parse_labelled

    m = load_manifest(data_dir)
    _require_labels(data_dir, m, labels)
    specs = label_specs(m)
    wanted = {n: label_length(specs[n]) for n in labels}
    ds = tf.data.TFRecordDataset(shard_paths(data_dir, m), buffer_size=4 << 20).batch(batch_size)
    ds = ds.map(lambda s: parse_labelled(s, m["size"], m["channels"], wanted)).prefetch(2)
    for images, values in ds:
        yield images.numpy(), {k: v.numpy() for k, v in values.items()}
