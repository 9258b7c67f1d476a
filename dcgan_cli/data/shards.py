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
This is how identities and attributes are stored (preprocess/labels.py): int64
features "identity" (one per image) and "attributes" (40 for CelebA), declared as
{"name", "length", "source", ...}; `parse_labelled` reads them, MISSING_LABEL (-1)
where an image or an older shard has none.
The format name changes only when an old reader could misread new shards.

No TensorFlow import at module level: `config.py` and `cli.py` use the size
rule before TensorFlow loads; the functions that do I/O import it (its gfile
reads local paths and gs:// alike).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
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


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def serialize_example(pixels: bytes, ints: dict | None = None) -> bytes:
    """A record holding one image's raw uint8 bytes, and optional int64 features.

    `ints` maps a name to an int or a list of ints ({"label": 7}, {"identity": 2880,
    "attributes": [1, 0, ...]}); each is Feature{int64_list: Int64List{value: [...]}}
    (field 3, packed). Readers ask for them with `parse_ints` / `parse_labelled`
    (declare them in the manifest's "labels"). Without `ints` the record is
    `example_prefix(n) + pixels`, what the decoding workers write.
    """
    if not ints:
        return example_prefix(len(pixels)) + pixels
    entries = [(IMAGE_FEATURE, _field(1, _field(1, pixels)))]  # Feature.bytes_list(1).value(1)
    for name, value in ints.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        packed = b"".join(_varint(int(v) & 0xFFFFFFFFFFFFFFFF) for v in values)  # two's complement, as protobuf
        entries.append((name, _field(3, _field(1, packed))))  # Feature.int64_list(3).value(1, packed)
    features = b"".join(_field(1, _field(1, k.encode()) + _field(2, v)) for k, v in entries)
    return _field(1, features)  # Example.features(1)


def parse_ints(serialized, names, default: int = -1):
    """A batch of serialised records -> {name: int64 (N,)}; records without a feature read `default`."""
    import tensorflow as tf

    spec = {n: tf.io.FixedLenFeature([], tf.int64, default_value=default) for n in names}
    return tf.io.parse_example(serialized, spec)


def parse_images(serialized, size: int, channels: int):
    """A batch of serialised records -> uint8 images (N, size, size, channels), in one op call.

    Only the image feature is parsed: records that carry more features read the same.
    """
    import tensorflow as tf

    feats = tf.io.parse_example(serialized, {IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string)})
    pixels = tf.io.decode_raw(feats[IMAGE_FEATURE], tf.uint8)
    return tf.reshape(pixels, [-1, size, size, channels])


MISSING_LABEL = -1  # what a reader gets for a label an image (or an older shard) does not carry


def label_specs(manifest: dict) -> dict[str, dict]:
    """The manifest's labels by name ({} for data made before labels existed)."""
    return {x["name"]: x for x in manifest.get("labels", [])}


def label_length(spec: dict) -> int:
    """Values per image of a label: 1 for an id, e.g. 40 for CelebA's attributes."""
    return int(spec.get("length", 1))


def parse_labelled(serialized, size: int, channels: int, labels: dict[str, int]):
    """A batch of records -> (uint8 images, {name: int64 (N,) or (N, length)}).

    `labels` maps each wanted label to its length (`label_length`); an image
    without it reads as MISSING_LABEL, so old shards parse too.
    """
    import tensorflow as tf

    spec = {IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string)}
    for name, n in labels.items():
        spec[name] = tf.io.FixedLenFeature([n], tf.int64, default_value=[MISSING_LABEL] * n)
    feats = tf.io.parse_example(serialized, spec)
    pixels = tf.reshape(tf.io.decode_raw(feats[IMAGE_FEATURE], tf.uint8), [-1, size, size, channels])
    return pixels, {name: feats[name][:, 0] if n == 1 else feats[name] for name, n in labels.items()}


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
    `make_manifest`. `abandon` closes an open file without recording it and
    deletes it (a half-written shard).
    """

    def __init__(self, out: str | Path, tag: str, limit: int, first_index: int = 0):
        self.out, self.tag, self.limit, self.index = str(out), tag, limit, first_index
        self.writer, self.count, self.bytes = None, 0, 0

    def name(self) -> str:
        return shard_name(self.tag, self.index)

    def add(self, record: bytes, may_close: bool = True) -> dict | None:
        """Write one record; returns the shard's entry when this record closed it.

        `may_close=False` keeps the shard open past its size (a writer that
        resumes at whole source files closes shards only between them).
        """
        import tensorflow as tf

        if self.writer is None:
            self.writer = tf.io.TFRecordWriter(join(self.out, self.name()))
            self.count, self.bytes = 0, 0
        self.writer.write(record)
        self.count += 1
        self.bytes += len(record) + TFRECORD_FRAMING
        return self.close() if may_close and self.bytes >= self.limit else None

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
        """Close and delete the open shard: unrecorded, it is of no use (a full disk may have cut it short)."""
        if self.writer is None:
            return
        import tensorflow as tf

        writer, self.writer = self.writer, None
        with contextlib.suppress(OSError, tf.errors.OpError):  # already failing: keep the first error
            writer.close()
        with contextlib.suppress(OSError, tf.errors.OpError):
            tf.io.gfile.remove(join(self.out, self.name()))


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
# Checking the shards against the manifest, before training

VERIFIED = ".verified.json"  # beside the manifest: what the last full check saw (hidden: not a data file)


def data_id(manifest: dict) -> str:
    """A short identity of a data set's content: the hash of its shards' hashes (same images, same id)."""
    return hashlib.sha256("".join(s["sha256"] for s in manifest["shards"]).encode()).hexdigest()[:16]


def _record_size(manifest: dict) -> int | None:
    """Bytes each record takes on disk when every record is one plain image (no label features), else None."""
    if manifest.get("labels"):
        return None
    n = manifest["size"] * manifest["size"] * manifest["channels"]
    return len(example_prefix(n)) + n + TFRECORD_FRAMING


def verify_shards(data_dir: str | Path, manifest: dict, *, full: bool = False,
                  log=None) -> bool:
    """Check the shards against `manifest` before training; returns True when the hashes were checked.

    Always (cheap): each shard's size is the manifest's `bytes`, and, for plain
    image records, `count` records of the image's size (so an edited count is
    caught). The SHA-256 of every shard too with `full`, or when the manifest or
    a shard changed since the last full check (recorded in DIR/.verified.json,
    when the folder is writable). Any mismatch is a one-line error naming the
    shard and the fix, raised before anything is written.
    """
    import tensorflow as tf

    data_dir = str(data_dir)
    fix = "re-run `dcgan preprocess ... --force` to rebuild the data"
    per_record = _record_size(manifest)
    seen = {}
    for s in manifest["shards"]:
        path = join(data_dir, s["file"])
        try:
            st = tf.io.gfile.stat(path)
        except tf.errors.OpError:
            raise DcganError(f"shard {path} is missing; {fix}") from None
        size = st.length
        expected = s.get("bytes")
        if _is_int(expected) and size != expected:
            raise DcganError(f"shard {path} is {size:,} bytes but the manifest says {expected:,} (truncated or "
                             f"replaced); {fix}")
        if per_record and size != s["count"] * per_record:
            raise DcganError(f"shard {path} holds {size / per_record:g} images' worth of bytes but the manifest "
                             f"says {s['count']}; the manifest or the shard was changed: {fix}")
        seen[s["file"]] = [size, getattr(st, "mtime_nsec", 0)]
    record_path = join(data_dir, VERIFIED)
    try:
        manifest_hash = hashlib.sha256(tf.io.gfile.GFile(join(data_dir, MANIFEST), "rb").read()).hexdigest()
    except tf.errors.OpError:
        manifest_hash = ""
    state = {"manifest_sha256": manifest_hash, "shards": seen}
    if not full and is_local(data_dir):
        try:
            last = json.loads(Path(record_path).read_text())
        except (OSError, ValueError):
            last = None
        if isinstance(last, dict) and {k: last.get(k) for k in state} == state:
            return False  # nothing changed since the last full check
    elif not full:
        return False  # gs://: hashing means reading every byte over the network; only with --verify-data
    if log:
        log(f"Verifying {len(manifest['shards'])} shard(s) of {data_dir} against its manifest (SHA-256)")
    for s in manifest["shards"]:
        path = join(data_dir, s["file"])
        if sha256_file(path) != s["sha256"]:
            raise DcganError(f"shard {path} does not match the SHA-256 in the manifest (damaged on disk, or "
                             f"the manifest was edited); {fix}")
    if is_local(data_dir):
        try:
            from dcgan_cli.fsutil import write_json

            write_json(record_path, {**state, "verified": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        except OSError:
            pass  # read-only data: it will be verified again next time, which is only slower
    return True


# ----------------------------------------------------------------------------
# Where preprocessed data lives, and finding it

PROCESSED_DIR = "processed"  # DATA_DIR/processed/NAME-SIZE: `dcgan preprocess`'s default output


def processed_name(name: str, size: int) -> str:
    """The folder name of data set NAME preprocessed at SIZE: NAME-SIZE (celeba-64, mnist-28)."""
    return f"{name}-{size}"


def processed_dir(data_dir: str | Path, name: str, size: int) -> Path:
    """DATA_DIR/processed/NAME-SIZE: where `dcgan preprocess NAME --size SIZE` writes, and `train` looks."""
    return Path(data_dir) / PROCESSED_DIR / processed_name(name, size)


def find_data(data_dir: str | Path, image_size: int | None = None, prefer: str | None = None) -> Path:
    """The preprocessed data set under DATA_DIR/processed/ to train on.

    `prefer` (a preset's own data, e.g. mnist-28) if it is there, else
    celeba-SIZE (SIZE: `image_size`, default 64), else the only data set there
    is; several others, or none, is an error that says what to pass.
    """
    processed = Path(data_dir) / PROCESSED_DIR
    sets = sorted(p for p in processed.glob("*") if (p / MANIFEST).exists()) if processed.is_dir() else []
    names = [n for n in (prefer, processed_name("celeba", image_size or 64)) if n]
    preferred = sorted((p for p in sets if p.name in names), key=lambda p: names.index(p.name))
    if preferred:
        return preferred[0]
    if len(sets) == 1:
        return sets[0]
    if not sets:
        raise DcganError(f"no preprocessed data under {processed}/; make some with `dcgan preprocess celeba` "
                         f"(or any folder of images), or pass --data DIR")
    raise DcganError(f"several data sets under {processed}/ ({', '.join(p.name for p in sets)}); "
                     f"pick one with --data")


# ----------------------------------------------------------------------------
# The data's shape


def check_shape(manifest: dict, image_size: int, channels: int, *, wanted_by: str = "the config",
                fix: str | None = None) -> None:
    """Refuse data whose images are not `image_size` x `image_size` x `channels`, in one line.

    `wanted_by` says what wants that shape ("the config", "the generator"); the message ends
    with `fix`, by default the `dcgan preprocess` flags that make data of the wanted shape.
    """
    size, have = manifest["size"], manifest["channels"]
    if (size, have) == (image_size, channels):
        return
    if fix is None:
        flags = [f"--size {image_size}"] if size != image_size else []
        flags += [f"--channels {channels}"] if have != channels else []
        fix = f"preprocess again with `dcgan preprocess SOURCE {' '.join(flags)}`"
    raise DcganError(f"the data is {size}x{size}x{have} but {wanted_by} wants "
                     f"{image_size}x{image_size}x{channels}; {fix}")
