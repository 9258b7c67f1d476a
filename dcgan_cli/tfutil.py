"""Import TensorFlow without its start-up chatter.

TF 2.21 logs through absl before any log level applies, so
TF_CPP_MIN_LOG_LEVEL cannot hide lines like "oneDNN custom operations are on"
or "failed call to cuInit" on a machine without a GPU. We point file
descriptor 2 at /dev/null while TensorFlow loads and looks for devices, then
put it back. Real errors still surface: an exception is re-raised after stderr
is restored. DCGAN_TF_LOGS=1 shows everything.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager


@contextmanager
def _stderr_silenced():
    if os.environ.get("DCGAN_TF_LOGS") or "tensorflow" in sys.modules:
        yield
        return
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # captured stderr (tests): nothing to silence
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """`import tensorflow`, quietly; returns the module."""
    with _stderr_silenced():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # where CUDA complains when there is none
    return tf
