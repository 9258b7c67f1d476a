"""A generator for phones: the SavedModel's serving function converted to TFLite (LiteRT).

    dcgan export RUN OUT.tflite [--quantize float16|dynamic]

The converted function is `sampling.savedmodel_module`'s, so the file serves
what the SavedModel serves: float32 latents [N, latent_dim] in, uint8 images
[N, H, W, C] out (the signature `serving_default`, input `latent`, output
`images`). Three flavours:

- float32 (no --quantize): the same arithmetic; images differ from the
  SavedModel's only where a float lands on a pixel's rounding edge.
- float16: the weights stored as float16 (about half the file), widened to
  float32 when the interpreter loads them (on CPU); a GPU delegate may run in
  float16.
- dynamic: the weights stored as int8 (about a quarter), and the interpreter
  quantises activations on the fly for its int8 kernels: the smallest and, on
  CPU, often the fastest, with the largest pixel differences.

docs/studio.md ("A generator for phones") has the measured sizes, latencies and
pixel differences against the SavedModel.
"""

from __future__ import annotations

from pathlib import Path

from dcgan_cli.errors import DcganError

QUANTIZE = ("float16", "dynamic")
SIGNATURE = "serving_default"
_MAGIC = b"TFL3"  # a TFLite flatbuffer's file identifier, bytes 4..8


def is_tflite_file(path: str | Path) -> bool:
    """Whether `path` is a TFLite flatbuffer (read from its identifier, without loading it)."""
    path = Path(path)
    if not path.is_file() or path.is_symlink():
        return False
    with open(path, "rb") as f:
        return f.read(8)[4:8] == _MAGIC


def check_quantize(quantize: str | None) -> None:
    if quantize is not None and quantize not in QUANTIZE:
        raise DcganError(f"unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZE)} "
                         f"(or leave it out for float32)")


def convert(module, quantize: str | None = None) -> bytes:
    """The TFLite flatbuffer of a serving module (`sampling.savedmodel_module`), float32 or quantised as asked."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    check_quantize(quantize)
    # The weights frozen into constants first: converted as they are, a Keras 3 model's weights stay
    # resource variables that the interpreter never initialises (the file came out a few KB and drew
    # black images, from a function or a saved model alike).
    served = module.__call__.get_concrete_function()
    frozen = convert_variables_to_constants_v2(served)
    latent = served.structured_input_signature[0][0]

    @tf.function(input_signature=[tf.TensorSpec(latent.shape, latent.dtype, name="latent")])
    def serving(latent):
        return {"images": frozen(latent)[0]}

    holder = tf.Module()  # with a trackable owner the file keeps the signature (serving_default)
    holder.serving = serving
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serving.get_concrete_function()], holder)
    return _convert(converter, quantize)


def _convert(converter, quantize: str | None) -> bytes:
    import tensorflow as tf

    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        return converter.convert()
    except Exception as e:  # the converter raises ConverterError and others; its first line names the op
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise DcganError(f"TFLite could not convert this generator ({type(e).__name__}: {first}); "
                         f"export it as a SavedModel instead (--format savedmodel)") from None


def write(module, out: str | Path, quantize: str | None = None) -> Path:
    """Convert the serving module and write the .tflite file atomically."""
    from dcgan_cli.fsutil import write_bytes

    write_bytes(out, convert(module, quantize))
    return Path(out)
