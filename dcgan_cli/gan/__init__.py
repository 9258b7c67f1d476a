"""The GAN itself: the networks, what D sees (augmentation), the GradientTape step, the health monitor
and the trainer's response to it, and a run's generator as a file. The loop that drives them is
training/loop.py, one level up: it also draws grids (generate/) and scores (metrics/).

    model.py         generator and discriminator (DCGAN, Radford et al. 2015), the fused batch norm
    augment.py       DiffAugment's ops and ADA's rule for p, as TF ops inside the step
    step.py          the step: the two-tape DCGAN update, then mixed precision, augmentation/ADA, EMA;
                     the state a checkpoint holds (GAN, build_gan), precision
    regularize.py    the hinge loss, spectral normalisation of D, lazy R1, bCR: options of the step, off by default
    health.py        D winning, mode collapse, divergence: pure functions over the epoch rows
    on_collapse.py   the trainer's response to a finding or a NaN: warn, stop, roll back
    generator_io.py  a run's generator restored from its checkpoints; .keras files saved and loaded
"""
