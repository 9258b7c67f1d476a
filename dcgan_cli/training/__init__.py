"""`dcgan train`: the loop that drives the GAN's step (gan/) through a run directory (runs/), drawing
the per-epoch grids (generate/) and scoring them (metrics/). It sits above those packages, as
stylegan2-ada's training_loop sits above its metrics.

    loop.py   `train()`: the checks, then restore or start, each step, end of epoch, export
"""
