"""What a trained generator is used for: sampling, walks and export; repair (project, inpaint);
style transfer.

    sampling.py   the Sampler (the one generator runner), seeds, latents, grids, walks, export
    search.py     the latent search (z on the sphere, restarts chosen by fit and realism)
    repair.py     dcgan project / inpaint: crops, masks, Yeh et al.'s context weights, Poisson blending
    photo_faces.py  faces in whole photos: detected, aligned as the run's data, pasted back
    anonymize.py  dcgan anonymize: every face's box inpainted with a generated face
    restore.py    dcgan restore: a face whose degraded copy is the input (PULSE)
    stylize.py    dcgan stylize: Gatys style transfer on generated or given faces
"""
