"""Data: known data sets and their download, preprocessing into shards once, and the tf.data pipeline.

    datasets/     the registry, HTTP/Drive download, verification, safe extraction, array files
    preprocess/   any source -> shards + manifest, resumable (crop, align, resize in workers)
    shards.py     the shard format and the manifest; the image-size rule
    pipeline.py   shards -> tf.data batches (uint8, sharded per worker)
    conditions.py --condition: the labels a conditional run is trained on, their joint distribution
    weights.py    pretrained files (2015 Inception graph, VGG19) in Keras' cache
"""
