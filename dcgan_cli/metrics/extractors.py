"""Feature extractors by name, and the one path images take into them.

Real and generated images take exactly the same path: uint8 pixels
(generated ones go through `pixels.to_uint8` first, as they would to a PNG)
-> grey repeated to RGB -> float -> antialiased bilinear resize to the network's
input side -> [-1, 1] -> the network's pooled features.

- "inception_v3": Keras' InceptionV3 with ImageNet weights, include_top=False,
  average pooled: 2,048-d at 299x299. The weights come from Keras' cache
  (~/.keras/models, filled on first use), or from a file given with
  `--inception-weights` / $DCGAN_INCEPTION_WEIGHTS for machines without
  internet.
- "inception-2015" and "inception-2015-clean": TensorFlow's 2015 Inception
  graph (classify_image_graph_def.pb), pool_3, 2,048-d, with its 1,008-class
  head for the Inception Score: the papers' FID (see inception2015.py). The
  first feeds images at their size and lets the graph resize them (TTUR,
  StudioGAN's TF-Inception column); the second resizes with PIL bicubic first
  (clean-fid). The graph comes from Keras' cache (`dcgan download
  inception-2015`) or a file given with `--inception-weights`; never downloaded here.
- "tiny-random": a two-layer conv net with seeded random weights, 16-d at
  32x32. Its scores mean nothing; it exists so tests (and a quick smoke run)
  exercise the whole path without a 90 MB download. Not offered on the CLI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import file_digest
from dcgan_cli.pixels import to_signed

WEIGHTS_ENV = "DCGAN_INCEPTION_WEIGHTS"
# Where and what keras.applications.InceptionV3(weights="imagenet", include_top=False) fetches.
WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + WEIGHTS_FILE
WEIGHTS_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"
# None: Keras' own cache root ($KERAS_HOME or ~/.keras); tests point it elsewhere.
KERAS_CACHE_DIR: str | None = None

RESIZE = "bilinear-antialias"


@dataclass(frozen=True)
class ExtractorSpec:
    """What is known about an extractor before it is built (guards need `dim`)."""

    name: str
    dim: int  # feature dimensions
    size: int  # input side the images are resized to
    build: Callable[[str | None], tuple[object, str]]  # weights file or None -> (keras model, weights id)
    description: str
    channels: int = 3  # the network's input channels: 3 (grey is repeated) or 1 (RGB is averaged)
    resize: str = RESIZE  # how images reach `size`
    classes: int = 0  # classes of a classifier head (the Inception Score needs one), 0: none
    graph: bool = False  # a frozen GraphDef (GraphExtractor), not a Keras model


# ----------------------------------------------------------------------------
# InceptionV3



def resolve_inception_weights(path: str | os.PathLike | None = None, flag: bool = True) -> tuple[Path, str]:
    """(local weights file, id) from `path`, $DCGAN_INCEPTION_WEIGHTS, or Keras' cache.

    The id is "imagenet" for the file Keras ships (checked by its MD5), else
    "md5:<digest>", so statistics cached with other weights are never reused.
    A missing file offline is a DcganError that says how to provide one
    (naming `--inception-weights` when the command has that flag).
    """
    path = path or os.environ.get(WEIGHTS_ENV) or None
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            source = WEIGHTS_ENV if os.environ.get(WEIGHTS_ENV) == str(path) else "--inception-weights"
            raise DcganError(f"InceptionV3 weights file {path} (from {source}) does not exist; give the path of "
                             f"Keras' {WEIGHTS_FILE} (download it from {WEIGHTS_URL})")
        md5 = file_digest(path, "md5")
        return path, "imagenet" if md5 == WEIGHTS_MD5 else f"md5:{md5}"

    import contextlib
    import sys

    import keras

    try:
        # Returns the cached copy when its hash matches; downloads otherwise. Keras
        # reports the download on stdout, which belongs to the result (--json).
        with contextlib.redirect_stdout(sys.stderr):
            local = keras.utils.get_file(WEIGHTS_FILE, WEIGHTS_URL, cache_subdir="models", file_hash=WEIGHTS_MD5,
                                         cache_dir=KERAS_CACHE_DIR)
    except Exception as e:  # Keras wraps URL, HTTP and hash errors in plain Exception
        reason = str(e).split(" -- ")[-1].strip() or type(e).__name__
        how = f"pass it with --inception-weights FILE (or set {WEIGHTS_ENV}=FILE)" if flag else f"set {WEIGHTS_ENV}=FILE"
        raise DcganError(f"the InceptionV3 ImageNet weights are not in Keras' cache and could not be "
                         f"downloaded ({reason}); download {WEIGHTS_URL} on a machine with internet and {how}") from None
    return Path(local), "imagenet"


def _build_inception(weights: str | None):
    import keras

    path, weights_id = resolve_inception_weights(weights)
    try:
        model = keras.applications.InceptionV3(include_top=False, pooling="avg", weights=str(path),
                                               input_shape=(299, 299, 3))
    except Exception as e:  # a file of other weights: Keras raises ValueError, h5py OSError, ...
        raise DcganError(f"cannot load {path} as InceptionV3 weights without the top "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
                         f"it should be Keras' {WEIGHTS_FILE}") from None
    return model, weights_id


# ----------------------------------------------------------------------------
# a tiny seeded network for tests


def _build_tiny(weights: str | None):
    import keras
    from keras import layers

    x = inp = keras.Input((32, 32, 3))
    for i, f in enumerate((8, 16)):
        x = layers.Conv2D(f, 3, 2, "same", activation="relu",
                          kernel_initializer=keras.initializers.HeNormal(seed=i + 1),
                          bias_initializer=keras.initializers.Constant(0.1))(x)
    out = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, out, name="tiny_random"), "seeded-v1"


# ----------------------------------------------------------------------------
# the 2015 Inception graph (the papers' FID)


def _build_inception_2015(weights: str | None):
    from dcgan_cli.data import weights as known
    from dcgan_cli.metrics.inception2015 import load_graph

    path = known.resolve("inception-2015", weights)
    return load_graph(path), f"sha256:{file_digest(path)[:16]}"


EXTRACTORS: dict[str, ExtractorSpec] = {
    s.name: s for s in (
        ExtractorSpec("inception_v3", 2048, 299, _build_inception,
                      "Keras InceptionV3, ImageNet weights, average-pooled 2048-d at 299x299"),
        ExtractorSpec("inception-2015", 2048, 299, _build_inception_2015,
                      "TensorFlow's 2015 Inception graph, pool_3 2048-d, resized by the graph (TTUR, StudioGAN)",
                      resize="tf-graph", classes=1008, graph=True),
        ExtractorSpec("inception-2015-clean", 2048, 299, _build_inception_2015,
                      "the 2015 Inception graph after clean-fid's PIL bicubic resize to 299",
                      resize="clean", classes=1008, graph=True),
        ExtractorSpec("tiny-random", 16, 32, _build_tiny,
                      "a seeded random two-layer conv net (tests only; its scores mean nothing)"),
    )
}


# ----------------------------------------------------------------------------
# any Keras model the user gives: FILE.keras or FILE.keras:LAYER


def is_model_file(name: str) -> bool:
    return name.split(":", 1)[0].endswith(".keras")



_FILE_SPECS: dict[tuple, ExtractorSpec] = {}  # by (name, the file's size and mtime): a rewritten file is read again


def _file_spec(name: str) -> ExtractorSpec:
    """FILE.keras[:LAYER]: the named layer's output (default: the layer before the last), pooled to a vector.

    Images reach it at the model's own input side, in [-1, 1] (as they do
    InceptionV3); its `name` in results and cache files is `keras-<sha256[:12]>[-LAYER]`,
    so other weights or another layer never reuse cached statistics.
    """
    file, _, layer = name.partition(":")
    path = Path(file).expanduser()
    if not path.is_file():
        raise DcganError(f"no feature extractor model at {path}; pass a Keras model saved as .keras "
                         f"(FILE.keras, or FILE.keras:LAYER to pick a layer)")
    stat = path.stat()
    memo = (name, stat.st_size, stat.st_mtime_ns)
    if memo in _FILE_SPECS:
        return _FILE_SPECS[memo]
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # not a zip, custom layers, another Keras: several types
        raise DcganError(f"cannot load {path} as a Keras model ({type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0][:160]}); save it with model.save('x.keras') using "
                         f"built-in layers") from None
    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else ()
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] not in (1, 3):
        raise DcganError(f"{path} takes inputs of shape {shape}; a feature extractor takes square images "
                         f"(batch, H, H, 1 or 3)")
    layers = [lay for lay in model.layers if not isinstance(lay, keras.layers.InputLayer)]
    if layer:
        try:
            chosen = model.get_layer(layer)
        except ValueError:
            raise DcganError(f"{path} has no layer {layer!r}; its layers are "
                             f"{', '.join(lay.name for lay in layers)}") from None
    elif len(layers) >= 2:
        chosen = layers[-2]  # the penultimate layer: the features a classifier's last layer reads
    else:
        raise DcganError(f"{path} has a single layer; name the features with {path}:LAYER")
    out = chosen.output
    if len(out.shape) == 4:  # a feature map: average over positions
        out = keras.layers.GlobalAveragePooling2D()(out)
    elif len(out.shape) != 2:
        raise DcganError(f"layer {chosen.name!r} of {path} gives {tuple(out.shape)}; pick a layer whose output "
                         f"is a vector or a feature map")
    features = keras.Model(model.inputs, out, name="extractor")
    digest = file_digest(path)
    label = f"keras-{digest[:12]}" + (f"-{layer}" if layer else "")
    built = (features, f"sha256:{digest}:{chosen.name}")
    s = ExtractorSpec(label, int(out.shape[-1]), int(shape[1]), lambda _weights: built,
                      f"{path} ({chosen.name}, {int(out.shape[-1])}-d at {shape[1]}x{shape[1]})", int(shape[3]))
    _FILE_SPECS[memo] = s
    return s


def spec(name: str) -> ExtractorSpec:
    if is_model_file(name):
        return _file_spec(name)
    if name not in EXTRACTORS:
        raise DcganError(f"unknown feature extractor {name!r}; choose one of {', '.join(EXTRACTORS)}, "
                         f"or a model file FILE.keras[:LAYER]")
    return EXTRACTORS[name]


# ----------------------------------------------------------------------------
# the shared image path


class Extractor:
    """uint8 image batches -> float32 feature batches, in fixed-size batches.

    Batches are padded to `batch_size` so the traced function is reused for
    the last, short batch instead of tracing the whole network again.
    `images_seen` counts the images embedded (tests use it to prove a cache hit).
    `embed(images, probs=True)` also returns class probabilities where the
    network has a classifier head (`spec.classes`), for the Inception Score.
    """

    def __init__(self, spec: ExtractorSpec, model, weights_id: str, batch_size: int = 64):
        self.spec, self.model, self.weights_id, self.batch_size = spec, model, weights_id, batch_size
        self.images_seen = 0
        self._embed = self._trace(model, spec.size) if model is not None else None

    @staticmethod
    def _trace(model, size):
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def embed(u8):
            x = tf.cast(u8, tf.float32)
            # Antialiased, so downscaling never aliases; identical for real and fake.
            x = tf.image.resize(x, (size, size), method="bilinear", antialias=True)
            return tf.cast(model(to_signed(x), training=False), tf.float32)

        return embed

    @property
    def key(self) -> str:
        """Names everything that changes the features: network, weights, input side, resize."""
        return f"{self.spec.name}:{self.weights_id}:{self.spec.size}:{self.spec.resize}"

    @property
    def classes(self) -> int:
        return self.spec.classes

    def _batch(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        n = len(chunk)
        if n < self.batch_size:
            chunk = np.concatenate([chunk, np.zeros((self.batch_size - n, *chunk.shape[1:]), np.uint8)])
        return self._embed(chunk).numpy()[:n], None

    def embed(self, images: np.ndarray, probs: bool = False):
        """Features of uint8 `images` (N, H, W, C); with `probs`, (features, class probabilities)."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f"the extractor takes uint8 images, got {images.dtype}")
        if images.shape[-1] == 1 and self.spec.channels == 3:  # grey: the same value in R, G and B
            images = np.repeat(images, 3, axis=-1)
        elif images.shape[-1] == 3 and self.spec.channels == 1:  # a grey network: the mean of R, G and B
            images = np.round(images.mean(axis=-1, keepdims=True)).astype(np.uint8)
        feats, ps = [], []
        for i in range(0, len(images), self.batch_size):
            f, p = self._batch(images[i:i + self.batch_size])
            feats.append(f)
            ps.append(p)
        self.images_seen += len(images)
        out = np.concatenate(feats) if feats else np.zeros((0, self.spec.dim), np.float32)
        if not probs:
            return out
        if not self.classes:
            raise ValueError(f"{self.spec.name} has no classifier head")
        return out, (np.concatenate(ps) if ps else np.zeros((0, self.classes), np.float32))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.embed(images)


class GraphExtractor(Extractor):
    """The 2015 Inception graph (inception2015.py): float 0..255 images, resized by the graph or by PIL first."""

    def __init__(self, spec: ExtractorSpec, graph, weights_id: str, batch_size: int = 64):
        # The spec's dim/classes are the real graph's; a graph of the same tensor names may differ (tests).
        spec = replace(spec, dim=graph.dim, classes=graph.classes)
        super().__init__(spec, None, weights_id, batch_size)
        self.graph = graph

    def _batch(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        from dcgan_cli.metrics.inception2015 import clean_resize

        x = clean_resize(chunk, self.spec.size) if self.spec.resize == "clean" else chunk.astype(np.float32)
        return self.graph.run(x)


_BUILT: dict[tuple[str, str, int], Extractor] = {}


def get_extractor(name: str = "inception_v3", weights: str | os.PathLike | None = None,
                  batch_size: int = 64) -> Extractor:
    """The named extractor, built and traced once per process (training evaluates every few epochs)."""
    s = spec(name)
    key = (name, s.name, str(weights or os.environ.get(WEIGHTS_ENV) or ""), batch_size)  # s.name: a file's hash
    if key not in _BUILT:
        model, weights_id = s.build(str(weights) if weights else None)
        _BUILT[key] = (GraphExtractor if s.graph else Extractor)(s, model, weights_id, batch_size)
    return _BUILT[key]
