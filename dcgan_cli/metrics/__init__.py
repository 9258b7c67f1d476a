"""Sample-quality metrics: FID and KID on features of a pretrained network.

`stats.py` holds the numerics (NumPy only, no TensorFlow): streaming feature
statistics, the Fréchet distance and the kernel inception distance.
`extractors.py` holds the feature networks, by name, and the one image path
(uint8 -> antialiased resize -> network) that real and generated images share.
`dcgan_cli/evaluate.py` puts them together with the data, the cache and the CLI.
"""
