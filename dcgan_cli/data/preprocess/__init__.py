"""Images -> training-ready shards, once (pipeline.py reads them; shards.py owns their format).

Decoding, cropping and resizing happen here and never again during training.
  sources.py    SOURCE as typed -> a sorted list of image files; CelebA's split
  decoding.py   one image -> pixels, in worker processes (crop box, modes, resize)
  config.py     PreprocessConfig: what a run does, checked once; resolve_config fills the defaults
  driver.py     `preprocess()`: lock, fingerprint, resume, the process pool, the commit
  reports.py    skipped.txt and small.txt: one escaped line per file, whatever its name
  faces.py      `--crop face`: every face in a photo, found and aligned like CelebA's
  arrays.py     array data sets (mnist.npz, IDX files) -> records with their class labels
  labels.py     identities and attributes stored beside the pixels (`--labels`)
"""

from dcgan_cli.data.preprocess.config import PreprocessConfig, resolve_config
from dcgan_cli.data.preprocess.decoding import CELEBA_CROP, CROP_HELP, CROPS, Crop, crop_box, process_image
from dcgan_cli.data.preprocess.driver import default_workers, preprocess
from dcgan_cli.data.preprocess.sources import (CELEBA_NAMES, SPLITS, Listing, Split, list_images, resolve_source,
                                          train_split)

__all__ = ["CELEBA_CROP", "CELEBA_NAMES", "CROP_HELP", "CROPS", "Crop", "Listing", "PreprocessConfig", "SPLITS", "Split",
           "crop_box", "default_workers", "list_images", "preprocess", "process_image", "resolve_config", "resolve_source",
           "train_split"]
