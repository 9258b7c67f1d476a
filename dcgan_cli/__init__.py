"""dcgan: a command-line DCGAN that learns to draw faces."""

__version__ = "0.1.0"
