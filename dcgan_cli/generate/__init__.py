"""What a trained generator is used for: sampling, walks and export; repair (project, inpaint);
directions and editing; style transfer.

    sampling.py   the Sampler (the one generator runner), seeds, latents, grids, walks, export
    repair.py     dcgan project / inpaint: latent search with Yeh et al.'s losses, Poisson blending
    directions.py dcgan directions: an attribute classifier, InterFaceGAN boundaries in z, saved in the run
    edit.py       dcgan edit: seeds, latents or photos moved along those directions (--keep, --sweep)
    stylize.py    dcgan stylize: Gatys style transfer on generated or given faces
"""
