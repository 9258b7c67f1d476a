"""What a trained generator is used for: sampling, walks and export; repair (project, inpaint);
directions and editing; style transfer.

    sampling.py   the Sampler (the one generator runner), seeds, latents, grids, walks, export
    conditional.py   what G(z, y) draws: --class, --attr, a grid with a row per class
    latent_math.py   --latents "a.npy - b.npy + c.npy": the DCGAN paper's vector arithmetic
    repair.py     dcgan project / inpaint: latent search with Yeh et al.'s losses, Poisson blending
    directions.py dcgan directions: an attribute classifier, InterFaceGAN boundaries in z, saved in the run
    edit.py       dcgan edit: seeds, latents or photos moved along those directions (--keep, --sweep)
    stylize.py    dcgan stylize: Gatys style transfer on generated or given faces
    tflite.py     dcgan export --format tflite: the SavedModel's serving function for phones (LiteRT)
"""
