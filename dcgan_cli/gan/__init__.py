"""The GAN itself: the networks, what D sees (augmentation), the GradientTape step, the training loop
and the health monitor that watches it.

    model.py         generator and discriminator (DCGAN, Radford et al. 2015), the fused batch norm
    augment.py       DiffAugment's ops and ADA's rule for p, as TF ops inside the step
    step.py          the step: the two-tape DCGAN update, then mixed precision, augmentation/ADA, EMA;
                     the state a checkpoint holds (GAN, build_gan), precision
    training.py      the loop, `train()`: restore or start, each step, end of epoch, export
    health.py        D winning, mode collapse, divergence: pure functions over the epoch rows
    on_collapse.py   the trainer's response to a finding or a NaN: warn, stop, roll back
    generator_io.py  a run's generator restored from its checkpoints; .keras files saved and loaded
"""
