"""The GAN itself: the networks, what D sees (augmentation), the GradientTape step, the training loop
and the health monitor that watches it.

    model.py      generator and discriminator (DCGAN, Radford et al. 2015), the fused batch norm
    augment.py    DiffAugment's ops and ADA's rule for p, as TF ops inside the step
    health.py     D winning, mode collapse, divergence: pure functions over the epoch rows
    training.py   the step and the loop: restore or start, each step, end of epoch, export
"""
