"""scikit-learn's handwritten digits as a folder data set with real classes: DIR/<digit>/NNNN.png.

1,797 8x8 images of 10 classes (about 180 each), shipped with scikit-learn:
the offline stand-in for face identities (train on seven digits, verify one-shot
on the three never seen). The code lives in dcgan_cli/identity/bench.py, which
`dcgan bench --parts identity` uses too.
"""

from __future__ import annotations

from dcgan_cli.identity.bench import preprocess_digits, write_digits  # noqa: F401
