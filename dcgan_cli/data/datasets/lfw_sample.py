"""The offline demo set: the 100 face images scikit-image ships."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import write_json

N_FACES = 100  # lfw_subset() holds 100 faces then 100 non-faces
MARKER = ".complete.json"


def write_lfw_sample(out: Path, force: bool = False) -> Path:
    """Write the faces as PNGs into `out`; a complete folder is left as is."""
    if (out / MARKER).exists() and not force:
        return out
    try:
        from skimage.data import lfw_subset
    except ImportError:
        raise DcganError("lfw-sample needs scikit-image: pip install 'dcgan-cli[demo]' (or run `make demo`)") from None
    import numpy as np
    from PIL import Image

    faces = lfw_subset()[:N_FACES]  # (100, 25, 25) float in [0, 1]
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target, then swap in: an interrupted run leaves no half folder.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for i, face in enumerate(faces):
            Image.fromarray(np.round(face * 255).astype(np.uint8), mode="L").save(tmp / f"face-{i:03d}.png")
        write_json(tmp / MARKER, {"images": len(faces), "source": "skimage.data.lfw_subset()[:100]"})
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
