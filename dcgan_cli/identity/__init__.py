"""Who is this face? A face -> 128-number embedding network, verification, identification and the audit.

  config.py        IdentityConfig: one frozen config, saved in the run dir (no TensorFlow import)
  losses.py        triplet loss with online semi-hard and batch-hard mining, ArcFace (additive angular margin)
  model.py         the small ResNet-style embedding CNN (stock Keras layers: the .keras file loads anywhere)
  data.py          labelled shards -> arrays, the held-out identity split, P x K batches
  train.py         `dcgan identity train`: the loop, checkpoints, resume, Ctrl-C, the saved model
  verification.py  the embedding model file + its metadata, the LFW pair protocol, ROC, verify, identify
  audit.py         does a generator reproduce people from its training set?
  bench.py         the offline quality bar: one-shot verification on digit classes never trained on

Imports flow cli -> identity.* -> (pipeline, shards, runs, sampling, preprocess.decoding).
"""
