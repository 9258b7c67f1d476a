"""What a conditional run is conditioned on: `--condition classes | attributes | attributes:A,B`.

The shards' labels are the conditions (preprocess stores them, shards.py declares them in the manifest):
  classes     one class per image: the "label" of MNIST-like arrays, or the "identity" of
              `preprocess --labels folders` (its sub-folder); the manifest's "classes" are the names
  attributes  CelebA's 40 attributes, multi-hot (`preprocess --labels celeba`), all or the named ones

A `Condition` turns a batch's raw labels into the models' input y (float, one row per image):
one-hot for a class (a missing class reads all zeros), +1 / -1 per attribute (0 when missing).
`LabelTable` is the training labels' joint distribution: their distinct y rows and counts, read
from the data once when a run starts and kept in RUN/condition.json, so the fakes' labels, the
grid, `sample --attr` and exports use the same rows on resume, on any machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dcgan_cli.errors import DcganError

CONDITION_KINDS = ("classes", "attributes")
CONDITION_FILE = "condition.json"  # in the run directory (runs/layout.py's place for run files)
_CLASS_FEATURES = ("label", "identity")  # in this order of preference
_ATTR_FEATURE = "attributes"


def check_spec(spec: str) -> None:
    """The syntax of --condition, before any data is read."""
    kind, _, names = spec.partition(":")
    if kind not in CONDITION_KINDS or (kind == "classes" and names) or (":" in spec and not names.strip(", ")):
        raise DcganError(f"--condition {spec!r} is not one of: classes, attributes, attributes:NAME,NAME "
                         f"(e.g. attributes:Smiling,Male)")


@dataclass(frozen=True)
class Condition:
    kind: str  # classes | attributes
    feature: str  # the shards' int64 feature: label, identity or attributes
    names: tuple[str, ...]  # the class names, or the chosen attributes' names: what the user types
    columns: tuple[int, ...] = ()  # attributes: the chosen ones' places in the feature's vector
    length: int = 1  # the feature's values per image

    @property
    def dim(self) -> int:
        return len(self.names)

    def encode(self, raw):
        """The models' y (B, dim) float32 of a batch's raw int64 labels ((B,) classes, (B, length) attributes)."""
        import tensorflow as tf

        if self.kind == "classes":
            return tf.one_hot(tf.cast(raw, tf.int32), self.dim, dtype=tf.float32)  # -1 (missing): zeros
        v = tf.gather(tf.reshape(raw, [-1, self.length]), list(self.columns), axis=1)
        return tf.cast(tf.where(v < 0, tf.zeros_like(v), 2 * v - 1), tf.float32)

    def encode_np(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw)
        if self.kind == "classes":
            return (raw[:, None] == np.arange(self.dim)[None]).astype(np.float32)
        v = raw.reshape(-1, self.length)[:, list(self.columns)]
        return np.where(v < 0, 0, 2 * v - 1).astype(np.float32)

    def to_json(self) -> dict:
        return {"kind": self.kind, "feature": self.feature, "names": list(self.names),
                "columns": list(self.columns), "length": self.length}

    @classmethod
    def from_json(cls, d: dict) -> "Condition":
        return cls(d["kind"], d["feature"], tuple(d["names"]), tuple(d.get("columns", ())), int(d.get("length", 1)))


def resolve(spec: str, manifest: dict, data_dir) -> Condition:
    """The condition `spec` names on the data of `manifest`; one-line errors that name the fix."""
    from dcgan_cli.data.shards import label_specs

    check_spec(spec)
    kind, _, wanted = spec.partition(":")
    have = label_specs(manifest)
    if kind == "classes":
        for f in _CLASS_FEATURES:
            if f in have and have[f].get("classes"):
                return Condition("classes", f, tuple(str(c) for c in have[f]["classes"]))
        raise DcganError(f"--condition classes needs class labels, and {data_dir} has "
                         f"{'only ' + ', '.join(have) + ' labels' if have else 'none'}: preprocess class folders with "
                         f"`--labels folders` (or MNIST / Fashion-MNIST), or train without --condition")
    if _ATTR_FEATURE not in have or not have[_ATTR_FEATURE].get("names"):
        raise DcganError(f"--condition attributes needs attribute labels, and {data_dir} has "
                         f"{'only ' + ', '.join(have) + ' labels' if have else 'none'}: preprocess CelebA with "
                         f"`--labels celeba` (list_attr_celeba.txt beside the images), or train without --condition")
    all_names = [str(n) for n in have[_ATTR_FEATURE]["names"]]
    chosen = [n.strip() for n in wanted.split(",") if n.strip()] if wanted else all_names
    unknown = [n for n in chosen if n not in all_names]
    if unknown:
        raise DcganError(f"unknown attribute {unknown[0]!r} in --condition; {data_dir} has: {', '.join(all_names)}")
    if len(set(chosen)) != len(chosen):
        raise DcganError(f"--condition {spec!r} names an attribute twice; name each once")
    return Condition("attributes", _ATTR_FEATURE, tuple(chosen), tuple(all_names.index(n) for n in chosen),
                     len(all_names))


# ----------------------------------------------------------------------------
# the training labels' joint distribution


@dataclass(frozen=True)
class LabelTable:
    condition: Condition
    rows: np.ndarray  # float32 (U, dim): the distinct y rows of the training data, most frequent first
    counts: np.ndarray  # int64 (U,): how many images have each

    def draw(self, n: int, seed) -> np.ndarray:
        """n rows drawn from the joint distribution by a stateless key (numpy: `sample`'s rows)."""
        rng = np.random.default_rng(seed)
        return self.rows[rng.choice(len(self.rows), size=n, p=self.counts / self.counts.sum())]

    def draw_tf(self, u):
        """The rows of uniform int64 draws `u` in [0, total): searchsorted on the cumulative counts (in graph)."""
        import tensorflow as tf

        cum = tf.constant(np.cumsum(self.counts), tf.int64)
        return tf.gather(tf.constant(self.rows, tf.float32), tf.searchsorted(cum, u, side="right"))

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def grid_rows(self, most: int = 16) -> np.ndarray:
        """The grid's rows: one per class, or the most frequent attribute combinations (at most `most`)."""
        if self.condition.kind == "classes":
            return np.eye(self.condition.dim, dtype=np.float32)[:most]
        return self.rows[:most]

    def to_json(self) -> dict:
        return {**self.condition.to_json(), "rows": self.rows.astype(int).tolist(), "counts": self.counts.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> "LabelTable":
        return cls(Condition.from_json(d), np.asarray(d["rows"], np.float32).reshape(len(d["counts"]), -1),
                   np.asarray(d["counts"], np.int64))

    def save(self, path: str | Path) -> None:
        from dcgan_cli.fsutil import write_text

        write_text(path, json.dumps(self.to_json()) + "\n")


def load_table(path: str | Path) -> LabelTable | None:
    """A run's label table (RUN/condition.json), None for an unconditional run."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return LabelTable.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as e:
        raise DcganError(f"{path} is damaged ({type(e).__name__}); it is written when a conditional run "
                         f"starts: train a new run") from None


def read_table(data_dir, manifest: dict, condition: Condition) -> LabelTable:
    """Every training image's y, counted by distinct row: one pass over the shards' label features only."""
    import tensorflow as tf

    from dcgan_cli.data.shards import MISSING_LABEL, shard_paths

    n = condition.length
    spec = {condition.feature: tf.io.FixedLenFeature([n], tf.int64, default_value=[MISSING_LABEL] * n)}
    ds = tf.data.TFRecordDataset(shard_paths(data_dir, manifest)).batch(4096)
    ds = ds.map(lambda s: tf.io.parse_example(s, spec)[condition.feature])
    raw = np.concatenate([b.numpy() for b in ds]) if manifest["count"] else np.zeros((0, n), np.int64)
    y = condition.encode_np(raw[:, 0] if condition.kind == "classes" else raw)
    if not len(y):
        raise DcganError(f"{data_dir} has no images to read labels from; preprocess some first")
    rows, counts = np.unique(y, axis=0, return_counts=True)
    order = np.lexsort((np.arange(len(rows)), -counts))  # most frequent first, ties in row order
    return LabelTable(condition, rows[order].astype(np.float32), counts[order].astype(np.int64))
