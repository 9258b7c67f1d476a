"""What a trained generator is used for: sampling, walks and export; repair (project, inpaint);
directions and editing; style transfer.

    sampling.py   the Sampler (the one generator runner), seeds, latents, grids, walks, export
    conditional.py   what G(z, y) draws: --class, --attr, a grid with a row per class
    latent_math.py   --latents "a.npy - b.npy + c.npy": the DCGAN paper's vector arithmetic
    directions.py dcgan directions: an attribute classifier, InterFaceGAN boundaries in z, saved in the run
    edit.py       dcgan edit: seeds, latents or photos moved along those directions (--keep, --sweep)
    search.py     the latent search (z on the sphere, restarts chosen by fit and realism)
    repair.py     dcgan project / inpaint: crops, masks, Yeh et al.'s context weights, Poisson blending
    photo_faces.py  faces in whole photos: detected, aligned as the run's data, pasted back
    anonymize.py  dcgan anonymize: every face's box inpainted with a generated face
    restore.py    dcgan restore: a face whose degraded copy is the input (PULSE)
    stylize.py    dcgan stylize: Gatys style transfer on generated or given faces
    tflite.py     dcgan export --format tflite: the SavedModel's serving function for phones (LiteRT)
"""
