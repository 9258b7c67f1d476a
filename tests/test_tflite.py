"""`dcgan export RUN OUT.tflite --format tflite [--quantize float16|dynamic]`: a generator for phones.

Each file is run by tf.lite.Interpreter in a fresh process that never imports this package, beside the
SavedModel export of the same run, on the same latents: uint8 images of the same shape, and pixels within
each flavour's tolerance of the SavedModel's (float32: one level, where a float sits on a rounding edge).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from helpers import dcgan_here

# Largest |pixel difference| against the SavedModel, out of 255 (measured on the tiny run: 0, 1 and 1; means
# under 0.07). docs/studio.md has a real run's.
TOLERANCE = {"float32": 1, "float16": 4, "dynamic": 16}


@pytest.mark.slow
@pytest.mark.subprocess
def test_tflite_files_run_without_this_package_and_match_the_savedmodel(tiny_run, tmp_path):
    r = dcgan_here("export", tiny_run, tmp_path / "saved")
    assert r.returncode == 0, r.stderr
    files = {}
    for flavour in TOLERANCE:
        out = tmp_path / f"g-{flavour}.tflite"
        r = dcgan_here("export", tiny_run, out, "--format", "tflite",
                       *(["--quantize", flavour] if flavour != "float32" else []))
        assert r.returncode == 0, r.stderr
        assert f"as TFLite ({flavour}" in r.stdout, r.stdout
        files[flavour] = str(out)
    z = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    code = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import tensorflow as tf
        z = np.load({str(tmp_path / 'z.npy')!r})
        reference = tf.saved_model.load({str(tmp_path / 'saved')!r}).signatures["serving_default"](
            latent=tf.constant(z))["images"].numpy().astype(np.int16)
        out = {{}}
        for flavour, path in {files!r}.items():
            interpreter = tf.lite.Interpreter(model_path=path)
            run = interpreter.get_signature_runner("serving_default")
            images = run(latent=z)["images"]
            diff = np.abs(images.astype(np.int16) - reference)
            out[flavour] = dict(dtype=str(images.dtype), shape=list(images.shape), max=int(diff.max()),
                                mean=float(diff.mean()), inputs=sorted(run.get_input_details()))
        assert "dcgan_cli" not in sys.modules
        print(json.dumps(out))
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    sizes = {f: (tmp_path / f"g-{f}.tflite").stat().st_size for f in TOLERANCE}
    for flavour, tolerance in TOLERANCE.items():
        g = got[flavour]
        assert g["dtype"] == "uint8" and g["shape"] == [5, 16, 16, 3] and g["inputs"] == ["latent"], g
        assert g["max"] <= tolerance and g["mean"] < 0.5, (flavour, g["max"], g["mean"])
    assert sizes["float16"] < sizes["float32"] and sizes["dynamic"] < sizes["float32"], sizes
