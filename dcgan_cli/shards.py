"""The shard format: what `dcgan preprocess` writes and `pipeline.py` reads, owned here alone.

A data directory (local or gs://) holds:
  DIR/manifest.json     {"format": "dcgan-shards-v1", "count", "size", "channels",
                        facts about how it was made (crop, source, ...),
                        "shards": [{"file", "count", "sha256", "bytes"}]}
  DIR/shard-TAG-NNNNN.tfrecord   tf.train.Example records, one per image, with
                        feature "image": the raw uint8 bytes of (size, size, channels)
The manifest is written last and is the commit point: the data is complete
exactly when it is there, and only the shards it lists belong to the data.

Adding per-image fields later (a class id, an identity, attributes) without
breaking readers of old shards:
  - a new field is a new, optional feature of the Example; readers parse only
    the features they ask for, so old readers skip it and `parse_images` keeps
    working on new shards;
  - the manifest says which extra features its shards carry, as an optional
    "labels" list of {"name": FEATURE, ...}; an old manifest has none, and a
    reader that wants labels asks for them there (with a default for old data).
The format name changes only when an old reader could misread new shards.

No TensorFlow import at module level: `config.py` and `cli.py` use the size
rule before TensorFlow loads; the functions that do I/O import it (its gfile
reads local paths and gs:// alike).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dcgan_cli.errors import DcganError

FORMAT_NAME = "dcgan-shards"
FORMAT_VERSION = 1
FORMAT = f"{FORMAT_NAME}-v{FORMAT_VERSION}"
MANIFEST = "manifest.json"
IMAGE_FEATURE = "image"
SHARD_KEYS = ("file", "count", "sha256", "bytes")  # a shard's entry in the manifest
TFRECORD_FRAMING = 16  # bytes around each record: length, its CRC, the data's CRC

# ----------------------------------------------------------------------------
# The size rule: 28 (MNIST-like, the model starts from 7x7) or 16 ... 256 (from 4x4)

SIZES = (28,) + tuple(2**k for k in range(4, 9))
SIZE_RULE = "28 or a power of two from 16 to 256"


def check_size(size: int, fix: str = "") -> int:
    """`size` if the model can make images of it, else a one-line error ending in `fix`."""
    if size not in SIZES:
        raise DcganError(f"image size {size} is not supported; use {SIZE_RULE}{f' ({fix})' if fix else ''}")
    return size


# ----------------------------------------------------------------------------
# One image -> one serialised tf.train.Example, without TensorFlow or protobuf


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def example_prefix(n: int) -> bytes:
    """The bytes of a serialised `tf.train.Example` that come before an n-byte "image".

    The record is Example{features: {"image": bytes_list[data]}}; every length
    in it depends only on n, so one prefix serves every image of a run and the
    workers build records without TensorFlow or protobuf (tests check the
    bytes equal `tf.train.Example(...).SerializeToString()`).
    """
    bytes_list = b"\x0a" + _varint(n)  # BytesList.value (field 1)
    feature = b"\x0a" + _varint(len(bytes_list) + n)  # Feature.bytes_list (1)
    value = feature + bytes_list
    key = IMAGE_FEATURE.encode()
    entry_key = b"\x0a" + _varint(len(key)) + key  # map entry key (1)
    entry = entry_key + b"\x12" + _varint(len(value) + n)  # map entry value (2)
    entry_len = len(entry) + len(value) + n
    features = b"\x0a" + _varint(entry_len)  # Features.feature (1)
    return b"\x0a" + _varint(len(features) + entry_len) + features + entry + value  # Example.features (1)


def serialize_example(pixels: bytes) -> bytes:
    """A record holding one image's raw uint8 bytes."""
    return example_prefix(len(pixels)) + pixels


def parse_images(serialized, size: int, channels: int):
    """A batch of serialised records -> uint8 images (N, size, size, channels), in one op call.

    Only the image feature is parsed: records that carry more features read the same.
    """
    import tensorflow as tf

    feats = tf.io.parse_example(serialized, {IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string)})
    pixels = tf.io.decode_raw(feats[IMAGE_FEATURE], tf.uint8)
    return tf.reshape(pixels, [-1, size, size, channels])


# ----------------------------------------------------------------------------
# Files: names, paths, writes that work on local paths and gs:// alike


def shard_name(tag: str, index: int) -> str:
    return f"shard-{tag}-{index:05d}.tfrecord"


def is_shard_name(name: str) -> bool:
    return name.startswith("shard-") and name.endswith(".tfrecord")


def join(out: str | Path, name: str) -> str:
    return f"{str(out).rstrip('/')}/{name}"


def is_local(path: str | Path) -> bool:
    return "://" not in str(path)


def shard_paths(data_dir: str | Path, manifest: dict) -> list[str]:
    return [join(data_dir, s["file"]) for s in manifest["shards"]]


def write_text(path: str, text: str) -> None:
    """Atomic replace: temp + rename locally (fsutil); one object write on gs://."""
    if is_local(path):
        from dcgan_cli.fsutil import write_text as write_local

        write_local(path, text)
    else:
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "w") as f:
            f.write(text)


def sha256_file(path: str) -> str:
    import tensorflow as tf

    h = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


class ShardWriter:
    """Appends records to `shard-TAG-NNNNN.tfrecord` files of about `limit` bytes each.

    `add` and `close` return the manifest entry of the shard they closed
    ({"file", "count", "sha256", "bytes"}), else None; collect them for
    `make_manifest`. `abandon` closes an open file without recording it
    (a half-written shard, which the next run deletes).
    """

    def __init__(self, out: str | Path, tag: str, limit: int, first_index: int = 0):
        self.out, self.tag, self.limit, self.index = str(out), tag, limit, first_index
        self.writer, self.count, self.bytes = None, 0, 0

    def name(self) -> str:
        return shard_name(self.tag, self.index)

    def add(self, record: bytes) -> dict | None:
        """Write one record; returns the shard's entry when this record closed it."""
        import tensorflow as tf

        if self.writer is None:
            self.writer = tf.io.TFRecordWriter(join(self.out, self.name()))
            self.count, self.bytes = 0, 0
        self.writer.write(record)
        self.count += 1
        self.bytes += len(record) + TFRECORD_FRAMING
        return self.close() if self.bytes >= self.limit else None

    def close(self) -> dict | None:
        if self.writer is None:
            return None
        self.writer.close()
        self.writer = None
        path = join(self.out, self.name())
        entry = {"file": self.name(), "count": self.count, "sha256": sha256_file(path), "bytes": self.bytes}
        self.index += 1
        return entry

    def abandon(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# ----------------------------------------------------------------------------
# The manifest: make, check, write, read


def make_manifest(*, size: int, channels: int, shards: list[dict], **facts) -> dict:
    """The manifest of `shards` (entries from `ShardWriter`), checked.

    Keys come in a fixed order: format, count, size, channels, then `facts`
    in the order given (crop, source, ...), then the shards.
    """
    entries = [{k: s[k] for k in SHARD_KEYS} for s in shards]
    m = {"format": FORMAT, "count": sum(s["count"] for s in entries), "size": size, "channels": channels,
         **facts, "shards": entries}
    return validate_manifest(m, "the new manifest")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _problem(m) -> str | None:
    """What is wrong with a manifest, in a few words; None when it is sound."""
    if not isinstance(m, dict):
        return "not a JSON object"
    if m.get("format") != FORMAT:
        return f"format is {m.get('format')!r}"
    shards = m.get("shards")
    if not isinstance(shards, list) or not shards:
        return "no shards listed"
    for s in shards:
        if not isinstance(s, dict) or not isinstance(s.get("file"), str) or not is_shard_name(s["file"]) \
                or "/" in s["file"] or not _is_int(s.get("count")) or s["count"] < 0:
            return f"bad shard entry {str(s)[:60]}"
    if not _is_int(m.get("count")) or m["count"] != sum(s["count"] for s in shards):
        return f"count {m.get('count')!r} is not the sum of the shards' counts"
    if not _is_int(m.get("size")) or m["size"] < 1:  # any square reads; the model's rule is check_size's
        return f"size {m.get('size')!r} is not a positive whole number"
    if m.get("channels") not in (1, 3) or not _is_int(m.get("channels")):
        return f"channels {m.get('channels')!r} is not 1 or 3"
    labels = m.get("labels", [])
    names = [x.get("name") for x in labels if isinstance(x, dict)] if isinstance(labels, list) else None
    if names is None or len(names) != len(labels) or not all(isinstance(n, str) and n for n in names) \
            or IMAGE_FEATURE in names or len(set(names)) != len(names):
        return "labels is not a list of {\"name\": FEATURE} with distinct names other than \"image\""
    return None


def validate_manifest(m, where: str = MANIFEST) -> dict:
    """`m` if it is a sound manifest, else a one-line error that names `where` and the fix."""
    if isinstance(m, dict) and m.get("format") == FORMAT and m.get("count") == 0:
        raise DcganError(f"{where} lists no images; preprocess a folder that has some")
    problem = _problem(m)
    if problem:
        raise DcganError(f"{where} is not a valid {FORMAT} manifest ({problem}); "
                         f"re-run `dcgan preprocess ... --force`")
    return m


def write_manifest(out: str | Path, manifest: dict) -> None:
    """Write `manifest` into `out`, atomically: the commit point of a data directory."""
    write_text(join(out, MANIFEST), json.dumps(validate_manifest(manifest), indent=2) + "\n")


def load_manifest(data_dir: str | Path, *, check_shards: bool = True) -> dict:
    """Read and check DIR/manifest.json (and that its shards are there); errors name `dcgan preprocess`."""
    import tensorflow as tf  # gfile: local paths and gs:// alike

    data_dir = str(data_dir)
    path = join(data_dir, MANIFEST)
    hint = "make it with `dcgan preprocess SOURCE --out DIR` (e.g. `dcgan preprocess celeba`)"
    if not tf.io.gfile.exists(data_dir):
        raise DcganError(f"data directory {data_dir} does not exist; {hint}")
    if not tf.io.gfile.exists(path):
        raise DcganError(f"{data_dir} has no {MANIFEST}, so it is not (completely) preprocessed data; {hint}")
    try:
        with tf.io.gfile.GFile(path) as f:
            m = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DcganError(f"{path} is corrupt ({e}); re-run `dcgan preprocess ... --force`") from None
    validate_manifest(m, path)
    if check_shards:
        missing = [s["file"] for s in m["shards"] if not tf.io.gfile.exists(join(data_dir, s["file"]))]
        if missing:
            raise DcganError(f"{data_dir} is missing {len(missing)} of its {len(m['shards'])} shards "
                             f"({missing[0]}, ...); re-run `dcgan preprocess ... --force`")
    return m


# ----------------------------------------------------------------------------
# Finding the data


def find_data(data_dir: str | Path, image_size: int | None = None) -> Path:
    """The preprocessed data set under DATA_DIR/processed/ to train on.

    celeba-SIZE (SIZE: `image_size`, default 64) if it is there, else the only
    data set there is; several others, or none, is an error that says what to pass.
    """
    processed = Path(data_dir) / "processed"
    sets = sorted(p for p in processed.glob("*") if (p / MANIFEST).exists()) if processed.is_dir() else []
    preferred = [p for p in sets if p.name == f"celeba-{image_size or 64}"]
    if preferred:
        return preferred[0]
    if len(sets) == 1:
        return sets[0]
    if not sets:
        raise DcganError(f"no preprocessed data under {processed}/; make some with `dcgan preprocess celeba` "
                         f"(or any folder of images), or pass --data DIR")
    raise DcganError(f"several data sets under {processed}/ ({', '.join(p.name for p in sets)}); "
                     f"pick one with --data")
