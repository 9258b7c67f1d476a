"""dcgan bench: figures, never pass/fail. Each part prints ratios against a reference run in the
same process (the Keras canonical step, a plain-Keras DCGAN, classical baselines).

    suite.py     the parts and their order; the step, loop, identity and stylize timings
    input.py     the input pipeline and preprocess throughput
    quality.py   sample quality against a plain-Keras reference on the same budget
    repair.py    project / inpaint against classical inpainting
    photos.py    faces in whole photos: anonymize against blur, pixelation, a black box; restore against bicubic
"""
