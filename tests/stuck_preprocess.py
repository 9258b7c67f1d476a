"""`dcgan preprocess` with one image whose read never finishes, like a file on a hung network mount.

Usage: python stuck_preprocess.py NAME PIPE DCGAN-ARGS...

Reading the image file NAME (it must be a real image, or it is skipped before
being read) first reads the named pipe PIPE, which blocks until a writer opens
it and closes it: the test holds the run there, then kills or interrupts it.
Run with --workers 1, so the decoding happens in this process.
"""

import signal
import sys

from dcgan_cli.data.preprocess import decoding

# Ctrl-C as a user's shell delivers it: a parent that ignores SIGINT (a test runner's
# worker may) would otherwise hand this process an ignored SIGINT, and Python then never
# raises KeyboardInterrupt.
signal.signal(signal.SIGINT, signal.default_int_handler)

name, pipe, *args = sys.argv[1:]
original = decoding.process_image


def process_image(fp, cfg):
    if isinstance(fp, str) and fp.endswith(name):
        with open(pipe, "rb") as f:
            f.read()
    return original(fp, cfg)


decoding.process_image = process_image

from dcgan_cli.cli import app  # noqa: E402 - after the patch, as the command would import it

sys.argv = ["dcgan", *args]
app()
