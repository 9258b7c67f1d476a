"""Sample-quality metrics: FID, KID, precision/recall, density/coverage and IS on features of a pretrained network.

`stats.py` holds the numerics (NumPy only, no TensorFlow): streaming feature
statistics, the Fréchet distance and the kernel inception distance.
`prdc.py` holds precision/recall, density/coverage (chunked k-NN) and the
Inception Score. `inception2015.py` loads the papers' 2015 Inception graph.
`extractors.py` holds the feature networks, by name, and the one image path
(uint8 -> antialiased resize -> network) that real and generated images share.
`evaluate.py` puts them together with the data, the cache and the CLI;
`curves.py` scores a run's kept checkpoints, giving the scores over training.
"""
