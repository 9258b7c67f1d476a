"""Neural style transfer (Gatys, Ecker & Bethge, 2016) for any image or generated faces.

Gradient descent on the pixels of an image G (Adam, in one `tf.function`) minimises

    J(G) = alpha * J_content(C, G) + beta * J_style(S, G) + tv * J_tv(G)

over the features F^l (H_l x W_l positions by N_l channels; M_l = H_l * W_l) of a
fixed convolutional network:

- Gram matrix: gram(F) = F^T F, the unnormalised N_l x N_l cross-covariance of
  the channels summed over positions (`gram`).
- J_content = ||F^c(G) - F^c(C)||^2 / ||F^c(C)||^2 on the content layer c.
- J_style = sum_l lambda_l * ||gram(F^l(G))/M_l - gram(F^l(S))/M_l'||^2 / ||gram(F^l(S))/M_l'||^2
  over the style layers l (M_l' counts the style image's positions).
- J_tv = mean over pixels of the squared differences to the right and lower
  neighbours, pixels in [0, 1].

The normalisation, documented because it sets what alpha, beta and lambda mean:
dividing a Gram matrix by its positions M_l makes it independent of the image
size (the style image need not have the output's size), and dividing each
term by the squared norm of its own target makes it a relative error that
starts near 1 whatever the network's activation scale. Gatys divides by
4 N_l^2 M_l^2 instead, which leaves the terms' scales to the network (the
published alpha/beta ratios of 1e-3 to 1e-4 only hold for Caffe's rescaled
VGG); with relative errors the same defaults work for VGG19 and for the random
network, at every size. Per image, the terms are summed over a batch, so
images optimised together do not influence each other (Adam is elementwise).

Features (`--features`):

- "auto" (the default): "vgg19" when Keras' cache holds the VGG19 weights
  (`dcgan download vgg19` puts them there), else "random", saying so in one line.
- "random": a VGG-shaped network (3x3 convolutions with ReLU,
  five blocks of 32, 64, 128, 256, 256 channels, 2x2 average pooling) with
  seeded random weights and per-layer normalisation: each convolution's kernel
  is rescaled, layer by layer, so that every channel's pre-activation has unit
  variance on a fixed seeded 1/f-noise image (LSUV, Mishkin & Matas 2016) with a
  natural image's spectrum. Without it, random layers' activations grow or shrink
  geometrically and one layer dominates the Gram terms; with it, random-weight
  VGGs transfer style well (He, Wang & Hopcroft, NeurIPS 2016; Ustyuzhaninov,
  Brendel, Gatys & Bethge 2016). Blocks hold 1, 1, 2, 2, 1 convolutions (VGG19
  holds 2, 2, 4, 4, 4): about 9x cheaper per step (measured by `dcgan bench
  --parts stylize`), which is what makes a default run fit in a minute on 2 cores.
- "vgg19:FILE" (or `--vgg-weights FILE`; "vgg19" alone: the copy in Keras'
  cache): Keras' VGG19 with the ImageNet weights in FILE
  (vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5), the usual recipe: content block5_conv2, style
  block1_conv1..block5_conv1, equal weights.

Reproducibility: the noise start and the random network come from the seed,
the style targets are computed once, and Adam and the convolutions run the
same ops in the same order on each step, so the same seed, inputs and machine
give the same bytes (tests check it).

Identity check: `stylize_faces(..., verifier=...)` accepts any callable
`verifier(originals, styled) -> sequence of bool` (uint8 batches, one verdict
per pair: still the same person?) and reports how many faces still verify.
`dcgan stylize --identity-model M` passes `identity.verification.same_person_check(M)`;
without it nothing is reported.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, ContextManager, Protocol, Sequence

import numpy as np

from dcgan_cli.data import weights
from dcgan_cli.errors import DcganError, UsageError, resume_hint
from dcgan_cli.fsutil import file_digest
from dcgan_cli.pixels import unit_to_uint8

DEFAULT_SIZE = 256
DEFAULT_STEPS = 300
MIN_SIZE = 32
# The largest output side accepted. A step costs time in proportion to the pixels: at 256x256 the
# random network spends ~0.09 CPU seconds a step (`dcgan bench --parts stylize`); at 1024x1024 ~1.5
# CPU seconds (measured: 10 steps, 22 s of CPU with start-up, 2.8 GB peak memory), so the default 300
# steps take 5 to 8 minutes on 2 cores. 2048 would take half an hour and ~11 GB. Past 1024 a CPU run
# is no longer something to wait for.
MAX_SIZE = 1024
INITS = ("content", "noise")
DEFAULT_LR = 0.02

RANDOM_BLOCKS = ((32, 1), (64, 1), (128, 2), (256, 2), (256, 1))  # (channels, convolutions) per block
STYLE_LAYERS = tuple(f"block{b}_conv1" for b in range(1, 6))
CONTENT_LAYER = {"random": "block4_conv2", "vgg19": "block5_conv2"}

VGG19_FILE = weights.VGG19.filename
VGG19_URL = weights.VGG19.remote.mirrors[0]
VGG19_MD5 = weights.VGG19.remote.md5  # what keras.applications.VGG19 checks it against
_VGG_MEAN_BGR = (103.939, 116.779, 123.68)  # keras.applications.vgg19.preprocess_input ("caffe")


# ----------------------------------------------------------------------------
# options


@dataclass(frozen=True)
class StyleOptions:
    """Everything that decides the result, besides the images.

    Attributes:
        size: longer side of the output in pixels (aspect kept); None keeps the content's own size.
        steps: Adam steps on the pixels.
        content_weight, style_weight, tv_weight: alpha, beta and the total-variation weight.
        init: "content" starts from the content image, "noise" from seeded uniform noise.
        features: "auto", "random", "vgg19" (Keras' cache) or "vgg19:FILE".
        seed: seeds the noise start and the random network.
        lr: Adam's learning rate, pixels in [0, 1].
        content_layer: None for the network's default.
        style_layers: ((layer, lambda), ...), relative (scaled to sum to 1); empty for the network's
            default, block1..5_conv1 with equal weights.
        save_every_steps: write the image every N steps (0: only at the end).
    """

    size: int | None = DEFAULT_SIZE
    steps: int = DEFAULT_STEPS
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 1.0
    init: str = "content"
    features: str = "auto"
    seed: int = 0
    lr: float = DEFAULT_LR
    content_layer: str | None = None
    style_layers: tuple[tuple[str, float], ...] = ()
    save_every_steps: int = 0

    def __post_init__(self):
        if self.size is not None:
            check_style_size(self.size)
        if self.steps < 1:
            raise UsageError(f"steps must be at least 1, got {self.steps}", "--steps")
        for name in ("content_weight", "style_weight", "tv_weight"):
            if getattr(self, name) < 0 or not math.isfinite(getattr(self, name)):
                flag = f"--{name.replace('_', '-')}"
                raise UsageError(f"{flag} must be a finite number >= 0, got {getattr(self, name)}", flag)
        if self.init not in INITS:
            raise UsageError(f"unknown --init {self.init!r}; choose one of {', '.join(INITS)}", "--init")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"--lr must be a positive number, got {self.lr}", "--lr")
        if self.save_every_steps < 0:
            raise UsageError(f"--save-every-steps must be 0 (off) or a number of steps, got {self.save_every_steps}",
                             "--save-every-steps")
        parse_features(self.features)


def check_style_size(size: int) -> None:
    """The side style transfer can work at (not the model's size rule, which is `shards.check_size`)."""
    if size < MIN_SIZE:
        raise DcganError(f"--size {size} is too small: the network pools the image 4 times; use {MIN_SIZE} or more")
    if size > MAX_SIZE:
        raise DcganError(f"--size {size} is above {MAX_SIZE}, the largest stylised here: a step's cost grows with "
                         f"the pixels (~{(size / 256) ** 2:.0f}x the 256 px step), so {DEFAULT_STEPS} steps would "
                         f"take well over half an hour on a CPU; stylise at {MAX_SIZE} or less and upscale")


def parse_style_layers(spec: str) -> tuple[tuple[str, float], ...]:
    """'block1_conv1:1,block3_conv1:0.5' (a bare name weighs 1) -> ((name, weight), ...)."""
    out = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(block\d_conv\d)\s*(?::\s*([0-9.eE+-]+)\s*)?", part)
        if not m:
            raise UsageError(f"{part.strip()!r} in {spec!r} is not LAYER or LAYER:WEIGHT; write e.g. "
                             f"block1_conv1:1,block2_conv1:0.5", "--style-layers")
        try:
            weight = float(m.group(2)) if m.group(2) is not None else 1.0
        except ValueError:
            weight = -1.0
        if not (weight >= 0 and math.isfinite(weight)):
            raise UsageError(f"the weight of {m.group(1)} in {spec!r} must be a number >= 0", "--style-layers")
        out.append((m.group(1), weight))
    if len({n for n, _ in out}) != len(out):
        raise UsageError(f"a layer appears twice in {spec!r}; give each layer once", "--style-layers")
    return tuple(out)


def parse_features(spec: str) -> tuple[str, Path | None]:
    """'auto' / 'random' / 'vgg19' -> (spec, None); 'vgg19:FILE' -> ("vgg19", FILE)."""
    if spec in ("auto", "random", "vgg19"):
        return spec, None
    kind, _, rest = spec.partition(":")
    if kind == "vgg19" and rest:
        return "vgg19", Path(rest).expanduser()
    raise UsageError(f"unknown --features {spec!r}; use auto, random, vgg19 (Keras' cache), or vgg19:FILE with "
                     f"Keras' {VGG19_FILE}", "--features")


def features_spec(features: str, vgg_weights: Path | None) -> str:
    """--features and --vgg-weights FILE (which means vgg19:FILE) as one spec."""
    if vgg_weights is None:
        return features
    if features not in ("auto", "vgg19"):
        raise UsageError(f"--vgg-weights gives VGG19 its weights; it does not go with --features {features}",
                         "--vgg-weights")
    return f"vgg19:{vgg_weights}"


def resolve_features(spec: str) -> tuple[str, Path | None, str]:
    """(kind, weights file, a note for the user or ""): "auto" becomes VGG19 from Keras' cache when it is
    there, else the random network, with a note saying so."""
    kind, path = parse_features(spec)
    if kind == "vgg19" and path is None:
        return "vgg19", weights.resolve("vgg19"), ""
    if kind == "auto":
        path = weights.cached("vgg19")
        if path is None:
            return "random", None, (
                f"No VGG19 ImageNet weights in Keras' cache ({weights.keras_cache_dir()}): using the random "
                f"VGG-shaped network; `dcgan download vgg19` (from {VGG19_URL}) or --vgg-weights FILE gives the "
                f"pretrained features")
        return "vgg19", path, ""
    return kind, path, ""


# ----------------------------------------------------------------------------
# images in


@dataclass
class LoadedImage:
    pixels: np.ndarray  # float32 (H, W, 3) in [0, 1]
    note: str = ""  # how it was converted, for the user ("" when it was plain RGB)


def load_image(path: str | Path, what: str, size: int | None = None) -> LoadedImage:
    """An image file as float32 RGB in [0, 1], its longer side resized to `size` (None: as is).

    Grey becomes RGB (the same value in each channel); transparency is laid on
    white, as a viewer shows it; 16-bit grey is scaled to 8 bits; an animation
    gives its first frame. Anything Pillow cannot read is a one-line error.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise DcganError(f"no {what} image at {path}; check the path")
    if path.is_dir():
        raise DcganError(f"{path} is a folder; pass one {what} image file")
    try:
        with Image.open(path) as im:
            im.load()
            frames = getattr(im, "n_frames", 1)
            mode = im.mode
            rgb, note = _to_rgb(im, path, what)
    except UnidentifiedImageError:
        raise DcganError(f"{path} is not an image Pillow can read; pass a PNG, JPEG or WebP {what} image") from None
    except Image.DecompressionBombError:
        raise DcganError(f"{path} has too many pixels to open safely; shrink it below 100 megapixels first") from None
    except OSError as e:  # truncated or damaged file
        raise DcganError(f"cannot read {path} ({e}); re-save or re-download the {what} image") from None
    if frames > 1:
        note = ", ".join(filter(None, [note, f"first of {frames} frames"]))
    if size is not None:
        rgb = resize_longer_side(rgb, size)
    if min(rgb.shape[:2]) < MIN_SIZE // 2:
        raise DcganError(f"the {what} image {path} would be {rgb.shape[1]}x{rgb.shape[0]}: too thin to stylise; "
                         f"crop it closer to a square")
    return LoadedImage(rgb.astype(np.float32) / 255.0, note if mode != "RGB" or frames > 1 else "")


def _to_rgb(im, path: Path, what: str) -> tuple[np.ndarray, str]:
    """uint8 (H, W, 3) from any Pillow mode that holds a picture, and what was done."""
    from PIL import Image

    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, np.uint8), ""
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        grey = (np.asarray(im, np.float64) / 257.0).round().astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1), f"16-bit grey {mode} -> RGB"
    if mode in ("I", "F"):
        raise DcganError(f"{path} holds {'32-bit integer' if mode == 'I' else 'floating-point'} pixels (mode "
                         f"{mode}), whose range is unknown; save the {what} image as an 8-bit PNG first")
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out = Image.alpha_composite(white, rgba).convert("RGB")
        return np.asarray(out, np.uint8), f"{mode} with transparency laid on white"
    try:
        out = im.convert("RGB")
    except (ValueError, OSError):
        raise DcganError(f"{path} is in Pillow mode {mode}, which has no RGB conversion; save the {what} "
                         f"image as an RGB PNG first") from None
    kind = {"L": "grey", "1": "black-and-white", "P": "palette", "CMYK": "CMYK"}.get(mode, mode)
    return np.asarray(out, np.uint8), f"{kind} -> RGB"


def resize_longer_side(rgb: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) resized (Lanczos) so that its longer side is `size`, aspect kept."""
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    if new == (w, h):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize(new, Image.LANCZOS), np.uint8)


# ----------------------------------------------------------------------------
# features


@dataclass
class Features:
    """A network that maps RGB images in [0, 1] to the named layers' activations."""

    model: object  # keras.Model: (B, H, W, 3) in [0, 1] -> [content, *style] activations
    content_layer: str
    style_layers: tuple[tuple[str, float], ...]
    description: str  # said to the user: which features were used

    def __call__(self, images):
        out = self.model(images, training=False)
        return out[0], out[1:]


def build_features(spec: str, seed: int = 0, content_layer: str | None = None,
                   style_layers: Sequence[tuple[str, float]] = (), log: Callable[[str], None] = lambda m: None
                   ) -> Features:
    """The feature network `spec` names (see `resolve_features`), cut at the layers used."""
    import keras

    kind, path, note = resolve_features(spec)
    if kind == "random":
        body, description = random_vgg(seed), f"random VGG-shaped network (seed {seed}, per-layer normalised)"
        rescale = lambda x: x * 2.0 - 1.0  # noqa: E731 - [0, 1] -> [-1, 1], what the calibration saw
    else:
        body, description = load_vgg19(path)
        mean = np.array(_VGG_MEAN_BGR, np.float32)
        rescale = lambda x: x[..., ::-1] * 255.0 - mean  # noqa: E731 - Caffe's preprocessing, as VGG19 was trained
    content_layer = content_layer or CONTENT_LAYER[kind]
    style_layers = tuple(style_layers) or tuple((name, 1.0 / len(STYLE_LAYERS)) for name in STYLE_LAYERS)
    names = {layer.name for layer in body.layers if "conv" in layer.name}
    unknown = [n for n in [content_layer, *(n for n, _ in style_layers)] if n not in names]
    if unknown:
        raise DcganError(f"the {kind} network has no layer {', '.join(unknown)}; choose from "
                         f"{', '.join(sorted(names, key=_layer_order))}")
    total = sum(w for _, w in style_layers)
    if not total > 0:
        raise DcganError("every style layer has weight 0; give at least one a positive weight")
    # Relative weights: lambda sums to 1, so --style-weight keeps its meaning whatever the layers.
    style_layers = tuple((n, w / total) for n, w in style_layers)
    x = inp = keras.Input((None, None, 3))
    outputs = [body.get_layer(n).output for n in [content_layer, *(n for n, _ in style_layers)]]
    cut = keras.Model(body.inputs, outputs)  # only what leads to these layers runs
    model = keras.Model(inp, cut(keras.layers.Lambda(rescale)(x)))
    model.trainable = False
    if note:  # once the network is known to work: a refused command prints its error alone
        log(note)
    return Features(model, content_layer, style_layers, description)


def _layer_order(name: str):
    return tuple(int(d) for d in re.findall(r"\d+", name))


def random_vgg(seed: int = 0):
    """The VGG-shaped random network, normalised layer by layer (see the module docstring)."""
    import keras
    from keras import layers

    x = inp = keras.Input((None, None, 3), name="image")
    convs = []
    for b, (width, n) in enumerate(RANDOM_BLOCKS, 1):
        if b > 1:
            x = layers.AveragePooling2D(2, name=f"block{b - 1}_pool")(x)
        for c in range(1, n + 1):
            conv = layers.Conv2D(width, 3, padding="same", name=f"block{b}_conv{c}",
                                 kernel_initializer=keras.initializers.HeNormal(seed=seed * 1000 + len(convs)),
                                 bias_initializer="zeros")
            x = conv(x)
            convs.append(conv)
            x = layers.ReLU(name=f"block{b}_relu{c}")(x)
    model = keras.Model(inp, x, name="random_vgg")
    _calibrate(model, convs, seed)
    return model


def calibration_image(size: int = 128, seed: int = 0) -> np.ndarray:
    """Seeded 1/f noise in [-1, 1], (1, size, size, 3): random, but with a natural image's spectrum."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / size)
    channels = []
    for _ in range(3):
        phase = rng.uniform(0, 2 * np.pi, amplitude.shape)
        img = np.fft.irfft2(amplitude * np.exp(1j * phase), s=(size, size))
        channels.append(img / np.abs(img).max())
    return np.stack(channels, -1)[None].astype(np.float32)


def _calibrate(model, convs, seed: int) -> None:
    """LSUV: scale each kernel so its channels' pre-activations have unit variance on the calibration image."""
    import keras

    probe = calibration_image(seed=seed)
    for conv in convs:
        before = keras.Model(model.input, conv.output)
        y = np.asarray(before(probe, training=False))
        std = y.reshape(-1, y.shape[-1]).std(axis=0)
        kernel, bias = conv.get_weights()
        conv.set_weights([kernel / np.maximum(std, 1e-6), bias])


def load_vgg19(path: Path):
    """Keras' VGG19 (no top) with the weights in `path`; a wrong file is a one-line error."""
    import keras

    if not path.is_file():
        raise DcganError(f"no VGG19 weights file at {path}; give the path of Keras' {VGG19_FILE} "
                         f"(download it from {VGG19_URL} on a machine with internet)")
    if not path.name.endswith(".h5"):
        raise DcganError(f"{path.name} is not a .h5 weights file; pass Keras' {VGG19_FILE}")
    md5 = file_digest(path, "md5")
    try:
        model = keras.applications.VGG19(weights=str(path), include_top=False, input_shape=(None, None, 3))
    except Exception as e:  # another network's file: ValueError; not HDF5 at all: OSError; ...
        first = (str(e).strip().splitlines() or [""])[0][:160]
        raise DcganError(f"cannot load {path} as VGG19 weights without the top ({type(e).__name__}: {first}); "
                         f"it should be Keras' {VGG19_FILE}") from None
    which = "Keras' ImageNet file" if md5 == VGG19_MD5 else f"md5 {md5[:12]}, not Keras' published file"
    return model, f"VGG19 from {path.name} ({which})"



# ----------------------------------------------------------------------------
# the losses (TensorFlow; tests compare them with NumPy)


def gram(features):
    """(B, H, W, N) -> (B, N, N): F^T F summed over positions, unnormalised."""
    import tensorflow as tf

    return tf.einsum("bhwi,bhwj->bij", features, features)


def normalised_gram(features):
    """gram(F) / M, M = H * W positions: comparable between images of different sizes."""
    import tensorflow as tf

    m = tf.cast(tf.shape(features)[1] * tf.shape(features)[2], features.dtype)
    return gram(features) / m


def content_loss(features, target):
    """(B,) ||F - F_C||^2 / ||F_C||^2 per image."""
    import tensorflow as tf

    num = tf.reduce_sum(tf.square(features - target), axis=[1, 2, 3])
    return num / (tf.reduce_sum(tf.square(target), axis=[1, 2, 3]) + 1e-12)


def style_layer_loss(features, target_gram):
    """(B,) ||gram(F)/M - G_S||^2 / ||G_S||^2 per image, target_gram = gram(F_S)/M_S of shape (B or 1, N, N)."""
    import tensorflow as tf

    num = tf.reduce_sum(tf.square(normalised_gram(features) - target_gram), axis=[1, 2])
    return num / (tf.reduce_sum(tf.square(target_gram), axis=[1, 2]) + 1e-12)


def tv_loss(images):
    """(B,) mean squared difference to the right and lower neighbours."""
    import tensorflow as tf

    dy = tf.reduce_mean(tf.square(images[:, 1:] - images[:, :-1]), axis=[1, 2, 3])
    dx = tf.reduce_mean(tf.square(images[:, :, 1:] - images[:, :, :-1]), axis=[1, 2, 3])
    return dx + dy


# ----------------------------------------------------------------------------
# the optimisation


@dataclass
class StyleResult:
    pixels: np.ndarray  # uint8 (B, H, W, 3)
    start: dict  # per-term losses (summed over the batch) of the starting image
    final: dict  # ... of the result
    history: list = field(default_factory=list)  # one dict of the terms per step, before its update
    seconds: float = 0.0  # the optimisation loop alone
    features: str = ""  # which network


class Transfer:
    """Style transfer of a batch of same-size content images towards one style image."""

    def __init__(self, features: Features, options: StyleOptions):
        self.features, self.options = features, options

    def run(self, content: np.ndarray, style: np.ndarray,
            on_step: Callable[[int, dict], None] | None = None,
            on_save: Callable[[int, np.ndarray], None] | None = None, step_offset: int = 0) -> StyleResult:
        """content: float32 (B, H, W, 3) in [0, 1]; style: float32 (H', W', 3) in [0, 1].

        `on_step(step, terms)` after every step; `on_save(step, uint8 pixels)`
        every `save_every_steps` steps (not after the last, which is the result).
        """
        import keras
        import tensorflow as tf

        o, feats = self.options, self.features
        content = tf.constant(content, tf.float32)
        c_target, _ = feats(content)
        _, s_feats = feats(tf.constant(style[None], tf.float32))
        s_targets = [tf.constant(normalised_gram(f)) for f in s_feats]
        lambdas = [w for _, w in feats.style_layers]
        alpha, beta, tv_w = (tf.constant(v, tf.float32) for v in (o.content_weight, o.style_weight, o.tv_weight))

        if o.init == "content":
            start = content
        else:
            rng = np.random.default_rng(o.seed)
            start = tf.constant(rng.uniform(0, 1, content.shape).astype(np.float32))
        image = keras.Variable(start, name="stylised", dtype="float32")
        optimizer = keras.optimizers.Adam(learning_rate=o.lr)
        optimizer.build([image])

        def terms(x):
            c_feats, g_feats = feats(x)
            jc = content_loss(c_feats, c_target)
            js = tf.add_n([w * style_layer_loss(f, t) for w, f, t in zip(lambdas, g_feats, s_targets)])
            jt = tv_loss(x)
            total = alpha * jc + beta * js + tv_w * jt
            return {"total": tf.reduce_sum(total), "content": tf.reduce_sum(jc), "style": tf.reduce_sum(js),
                    "tv": tf.reduce_sum(jt)}

        @tf.function
        def step():
            with tf.GradientTape() as tape:  # the variable is watched: it is trainable
                t = terms(image.value)
            grad = tape.gradient(t["total"], image.value)
            optimizer.apply_gradients([(grad, image)])
            image.assign(tf.clip_by_value(image.value, 0.0, 1.0))
            return t

        evaluate = tf.function(terms)
        as_floats = lambda t: {k: float(v) for k, v in t.items()}  # noqa: E731
        first = as_floats(evaluate(image.value))
        history = []
        began = time.perf_counter()
        for i in range(1, o.steps + 1):
            t = as_floats(step())
            history.append(t)
            if on_step:
                on_step(step_offset + i, t)
            if on_save and o.save_every_steps and i % o.save_every_steps == 0 and i < o.steps:
                on_save(i, unit_to_uint8(image.numpy()))
        seconds = time.perf_counter() - began
        final = as_floats(evaluate(image.value))
        return StyleResult(unit_to_uint8(image.numpy()), first, final, history, seconds, feats.description)


def step_name(out: Path, step: int) -> Path:
    """out.png -> out.step-0100.png: an intermediate result of --save-every-steps, sorted by step."""
    return out.with_name(f"{out.stem}.step-{step:04d}{out.suffix}")


# ----------------------------------------------------------------------------
# one image


def stylize_file(content_path: str | Path, style_path: str | Path, out: str | Path, options: StyleOptions,
                 on_step: Callable[[int, dict], None] | None = None, log: Callable[[str], None] = lambda m: None
                 ) -> StyleResult:
    """CONTENT + STYLE -> OUT (atomic), with --save-every-steps images beside it. Checks all input before any work."""
    from dcgan_cli.images import save_image

    out = check_output(out)
    content = load_image(content_path, "content", options.size)
    style = load_image(style_path, "style", max(content.pixels.shape[:2]))
    for what, img in (("content", content), ("style", style)):
        if img.note:
            log(f"The {what} image was converted: {img.note}")
    features = build_features(options.features, options.seed, options.content_layer, options.style_layers, log)
    log(f"Features: {features.description}; content {features.content_layer}, style "
        + ", ".join(f"{n}:{w:g}" for n, w in features.style_layers))
    result = Transfer(features, options).run(
        content.pixels[None], style.pixels, on_step=on_step,
        on_save=lambda step, px: save_image(step_name(out, step), px[0]))
    save_image(out, result.pixels[0])
    return result


# ----------------------------------------------------------------------------
# generated faces


DEFAULT_SEEDS = "0-15"  # the faces `dcgan stylize --run` paints when --seeds is not given


class Verifier(Protocol):
    """Is each styled face still its original's person? One verdict per (original, styled) pair of uint8 images.

    A protocol, not identity's class: any callable serves (tests pass a lambda), and
    `identity.verification.same_person_check(model)` is the one `dcgan stylize --identity-model` uses.
    """

    def __call__(self, originals: np.ndarray, styled: np.ndarray) -> Sequence[bool]: ...


@dataclass
class FacesResult:
    count: int
    size: int
    start: dict
    final: dict
    seconds: float
    features: str
    verified: int | None = None  # faces that still verify as their original; None when no verifier was given


# Faces are stylised together, as many as fit in the pixels of one MAX_SIZE image.
BATCH_PIXELS = MAX_SIZE * MAX_SIZE
# Generated faces are stylised at the generator's side, upscaled to at least this: at 16 or 32 px the
# network's deepest style layer would see 1 or 2 positions.
FACES_MIN_SIZE = 64


def faces_plan(generator, n: int, size: int | None = None) -> tuple[int, int]:
    """(side the faces are stylised at, number of batches) for n faces of `generator`."""
    side = size or max(FACES_MIN_SIZE, *(int(d) for d in generator.output_shape[1:3]))
    check_style_size(side)
    return side, -(-n // max(1, BATCH_PIXELS // (side * side)))


def check_output(out: str | Path) -> Path:
    """OUT's extension and folder, checked before any work."""
    from dcgan_cli.images import check_image_path
    from dcgan_cli.generate.sampling import check_writable

    out = check_image_path(out)
    check_writable(out)
    return out


def stylize_faces(generator, seeds, style_path: str | Path, out: str | Path, options: StyleOptions,
                  truncation: float = 1.0, verifier: Verifier | None = None,
                  on_step: Callable[[int, dict], None] | None = None, log: Callable[[str], None] = lambda m: None,
                  cols: int = 16) -> FacesResult:
    """Generate one face per seed, stylise them, write a grid: a content row above each styled row.

    Faces are stylised at the generator's side (at least FACES_MIN_SIZE)
    unless options.size asks for another (resized with Lanczos first). `verifier`, when given, is asked
    whether each stylised face is still the person of its original.
    """
    from dcgan_cli.images import Grid, save_image
    from dcgan_cli.generate.sampling import Sampler, latents

    out = check_output(out)
    seeds = list(seeds)
    sampler = Sampler(generator, batch_size=min(len(seeds), 64))
    c = sampler.image_shape[-1]
    size, _ = faces_plan(generator, len(seeds), options.size)
    style = load_image(style_path, "style", size)
    if style.note:
        log(f"The style image was converted: {style.note}")
    features = build_features(options.features, options.seed, options.content_layer, options.style_layers, log)
    log(f"Features: {features.description}; content {features.content_layer}, style "
        + ", ".join(f"{n}:{wt:g}" for n, wt in features.style_layers))

    faces = sampler(latents(seeds, sampler.latent_dim, truncation))  # uint8 (N, h, w, C)
    if c == 1:
        faces = np.repeat(faces, 3, axis=-1)
    content = np.stack([resize_longer_side(f, size) for f in faces]).astype(np.float32) / 255.0
    ch, cw = content.shape[1:3]
    per_batch = max(1, BATCH_PIXELS // (ch * cw))
    transfer = Transfer(features, options)
    styled, totals, seconds = [], [], 0.0
    for i in range(0, len(seeds), per_batch):
        r = transfer.run(content[i:i + per_batch], style.pixels, on_step=on_step, step_offset=len(totals) * options.steps)
        styled.append(r.pixels)
        totals.append(r)
        seconds += r.seconds
    styled = np.concatenate(styled)
    originals = unit_to_uint8(content)

    n = len(seeds)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    grid = Grid(2 * rows * cols, ch, cw, 3, nrow=cols)
    for r in range(rows):
        grid.paste(2 * r * cols, originals[r * cols:(r + 1) * cols])
        grid.paste((2 * r + 1) * cols, styled[r * cols:(r + 1) * cols])
    save_image(out, grid.pixels)

    verified = None
    if verifier is not None:
        verdicts = list(verifier(originals, styled))
        if len(verdicts) != n:
            raise DcganError(f"the identity check answered {len(verdicts)} verdicts for {n} faces")
        verified = sum(bool(v) for v in verdicts)
    add = lambda key: {k: sum(getattr(t, key)[k] for t in totals) / n for k in totals[0].start}  # noqa: E731
    return FacesResult(n, max(ch, cw), add("start"), add("final"), seconds, features.description, verified)


# ----------------------------------------------------------------------------
# what `dcgan stylize` asks for


@dataclass(frozen=True)
class StylizeRequest:
    """What `dcgan stylize` asks for: one CONTENT image in the style of STYLE, or generated faces.

    Checked as a whole on creation, before any image or model loads; a
    contradiction raises `UsageError` naming the option at fault. `faces` and
    `chosen` (the seeds) are derived.

    Attributes:
        images: (CONTENT, STYLE), or (STYLE,) with `run` or `generator`.
        out: the output image; a grid of faces above their stylised versions for faces.
        run / generator: stylise faces of this run's generator, or of this generator .keras file.
        seeds: the faces' seeds, DEFAULT_SEEDS when not given. ema: a run's EMA weights (when it kept them).
        identity_model: an embedding model (or its run) to count the faces that still verify.
        options: how to stylise (its size None: DEFAULT_SIZE for one image, the generator's side for faces).
    """

    images: tuple[Path, ...]
    out: Path
    run: Path | None = None
    generator: Path | None = None
    seeds: str | None = None
    ema: bool = True
    identity_model: Path | None = None
    options: StyleOptions = StyleOptions(size=None)
    faces: bool = field(init=False, repr=False)
    chosen: object = field(init=False, repr=False)  # sampling.Seeds

    def __post_init__(self):
        from dcgan_cli.generate.sampling import Seeds

        n = len(self.images)
        faces = self.run is not None or self.generator is not None
        if self.run is not None and self.generator is not None:
            raise UsageError("give --run or --generator, not both", "--generator")
        if faces and n != 1:
            raise UsageError(f"with --run or --generator give the STYLE image alone (got {n} images)",
                             "[CONTENT] STYLE")
        if not faces and n != 2:
            raise UsageError(f"give CONTENT and STYLE (got {n} image{'s' if n != 1 else ''}), or "
                             f"--run/--generator with STYLE", "[CONTENT] STYLE")
        if not self.ema and self.run is None:
            raise UsageError("--no-ema applies to --run", "--no-ema")
        if self.seeds is not None and not faces:
            raise UsageError("--seeds picks generated faces: use it with --run or --generator", "--seeds")
        if self.identity_model is not None and not faces:
            raise UsageError("--identity-model checks generated faces: use it with --run or --generator",
                             "--identity-model")
        if self.options.save_every_steps and faces:
            raise UsageError("--save-every-steps applies to one CONTENT image, not to a grid of faces",
                             "--save-every-steps")
        try:
            chosen = Seeds.parse(self.seeds or DEFAULT_SEEDS)
        except DcganError as e:
            raise UsageError(str(e), "--seeds") from None
        if self.options.size is None and not faces:
            object.__setattr__(self, "options", replace(self.options, size=DEFAULT_SIZE))
        object.__setattr__(self, "faces", faces)
        object.__setattr__(self, "chosen", chosen)


def fulfil(req: StylizeRequest, *, bar: Callable[[int], ContextManager[Callable[[int, dict], None]]],
           log: Callable[[str], None] = lambda m: None,
           make_verifier: Callable[[Path], Verifier] | None = None) -> str:
    """Do what `req` asks; returns the one-line summary.

    `make_verifier(identity_model)` turns `req.identity_model` into a `Verifier` (the CLI passes
    identity's `same_person_check` over `resolve_model`); style transfer itself knows no identity model.

    `bar(total_steps)` is a context manager yielding the per-step callback (a
    progress bar, or a no-op). Ctrl-C leaves OUT unwritten and says so.
    """
    with resume_hint(f"Interrupted: {req.out} was not written."):
        if not req.faces:
            with bar(req.options.steps) as on_step:
                r = stylize_file(req.images[0], req.images[1], req.out, req.options, on_step=on_step, log=log)
            h, w = r.pixels.shape[1:3]
            return (f"Wrote {req.out} ({w}x{h}, {req.options.steps} steps in {r.seconds:.1f} s; features: {r.features}); "
                    f"style loss {r.start['style']:.3g} -> {r.final['style']:.3g}, content loss "
                    f"{r.final['content']:.3g}")

        from dcgan_cli.generate.sampling import load_generator

        check_output(req.out)  # before the generator loads
        verifier = None
        if req.identity_model is not None:
            verifier = make_verifier(req.identity_model)  # a bad file fails now, not after the faces
        loaded = load_generator(req.run, req.generator, ema=req.ema, warn=lambda m: log(f"Warning: {m}"))
        log(f"Generating faces with {loaded.source}")
        _, batches = faces_plan(loaded.model, len(req.chosen), req.options.size)
        with bar(req.options.steps * batches) as on_step:
            r = stylize_faces(loaded.model, req.chosen, req.images[0], req.out, req.options, on_step=on_step,
                              log=log, verifier=verifier)
    verified = "" if r.verified is None else f"; {r.verified} of {r.count} still verify as their original"
    return (f"Wrote {req.out}: {r.count} faces (seeds {req.chosen}) at {r.size} px, each above its stylised version "
            f"({req.options.steps} steps in {r.seconds:.1f} s; features: {r.features}); mean style loss "
            f"{r.start['style']:.3g} -> {r.final['style']:.3g}{verified}")
