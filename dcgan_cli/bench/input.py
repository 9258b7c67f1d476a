"""Benchmarks of the data path: preprocessing speed and memory, input-pipeline speed.

These print figures; they assert nothing (speed is not tested, it is measured).
`dcgan bench` reports `input_throughput` as `input_img_per_s`. To run one by hand:

    python -c "from dcgan_cli.bench.input import *; print(preprocess_throughput('/tmp/b'))"
    python -c "from dcgan_cli.bench.input import *; \\
               print(input_throughput(make_bench_shards('/tmp/b', 20000, 64)))"
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

CELEBA_W, CELEBA_H = 178, 218


def make_bench_shards(workdir: str | Path, n_images: int, size: int = 64, channels: int = 3,
                      n_shards: int = 8) -> Path:
    """Synthetic preprocessed data (random pixels) in the real shard format; reused if present.

    The pipeline's speed does not depend on what the pixels show, so this
    skips decoding entirely: it writes records with the shard format's own
    serialiser, writer and manifest (shards.py), as preprocess does.
    """
    import numpy as np

    from dcgan_cli import __version__

    from dcgan_cli.data import shards

    out = Path(workdir) / f"bench-shards-{n_images}-{size}x{channels}-{n_shards}"
    if (out / shards.MANIFEST).exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    nbytes = size * size * channels
    # Shards sized so there are n_shards of them: interleaving needs several files.
    record = len(shards.serialize_example(bytes(nbytes))) + shards.TFRECORD_FRAMING
    writer = shards.ShardWriter(out, "bench", -(-n_images // n_shards) * record)
    rng = np.random.default_rng(0)
    entries = []
    for start in range(0, n_images, 1024):
        block = rng.integers(0, 256, (min(1024, n_images - start), nbytes), dtype=np.uint8)
        for row in block:
            closed = writer.add(shards.serialize_example(row.tobytes()))
            if closed:
                entries.append(closed)
    if (closed := writer.close()) is not None:
        entries.append(closed)
    shards.write_manifest(out, shards.make_manifest(
        size=size, channels=channels, shards=entries, crop="none", crop_size=0,
        source="synthetic (dcgan_cli.bench.input)", skipped=0, small=0, tool_version=__version__))
    return out


def input_throughput(data_dir: str | Path, batch_size: int = 128, batches: int = 200) -> float:
    """Images/s the input pipeline alone delivers (shuffled, repeated, batched), after warm-up."""
    from dcgan_cli.data.pipeline import make_dataset

    ds = make_dataset(data_dir, batch_size, shuffle=True, repeat=True, seed=0)
    it = iter(ds)
    for _ in range(20):  # fills the shuffle buffer, starts the interleave and prefetch threads
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batch_size * batches / (time.perf_counter() - t0)


_MARKER = ".complete"  # written last into a folder of generated pictures: it holds all of them


def _complete(folder: Path, n_images: int) -> bool:
    """Whether `folder` already holds its `n_images` pictures (its marker says so); if not, it is emptied for them."""
    marker = folder / _MARKER
    if marker.exists() and marker.read_text() == str(n_images):
        return True
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return False


def write_celeba_like(folder: str | Path, n_images: int, seed: int = 0) -> Path:
    """n 178x218 JPEGs that compress and decode like aligned CelebA faces.

    Real photos are smooth areas plus edges plus sensor noise; so are these:
    a lit background gradient, a skin-toned face ellipse with eyes and mouth,
    dark hair, and mild noise, saved at JPEG quality 90 (CelebA's files average
    ~7 KB; these come out at about that size). Reused if already written.
    """
    import numpy as np
    from PIL import Image

    folder = Path(folder)
    if _complete(folder, n_images):
        return folder
    rng = np.random.default_rng(seed)
    h, w = CELEBA_H, CELEBA_W
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n_images):
        bg = rng.uniform(40, 220, 3) + (yy[..., None] / h) * rng.uniform(-60, 60, 3)
        cx, cy = w / 2 + rng.normal(0, 3), h / 2 + 5 + rng.normal(0, 3)
        face = (((xx - cx) / rng.uniform(32, 40)) ** 2 + ((yy - cy) / rng.uniform(44, 52)) ** 2) < 1
        hair = ((((xx - cx) / 48) ** 2 + ((yy - cy + 18) / 58) ** 2) < 1) & ~face
        img = bg.copy()
        img[hair] = rng.uniform(10, 90, 3)
        skin = np.array([rng.uniform(150, 240), rng.uniform(110, 190), rng.uniform(90, 160)])
        img[face] = skin * (0.75 + 0.25 * np.cos((xx[face] - cx) / 40))[..., None]
        for ex in (-14, 14):
            img[((xx - cx - ex) ** 2 + (yy - cy + 8) ** 2) < 16] = 30
        img[(np.abs(xx - cx) < 12) & (np.abs(yy - cy - 22) < 3)] = (150, 60, 60)
        img += rng.normal(0, 4, img.shape)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{i + 1:06d}.jpg", quality=90)
    (folder / _MARKER).write_text(str(n_images))
    return folder


def write_celeba_like_faces(folder: str | Path, n_images: int, seed: int = 0) -> Path:
    """n 178x218 JPEGs, each with one real face: CelebA-sized input for `--crop face`.

    The faces are scikit-image's 100 LFW crops (`skimage.data.lfw_subset()`, offline),
    enlarged to 90-110 px, turned by up to 12 degrees and put near the middle of
    a lit gradient background with mild noise, at JPEG quality 90. A detector's
    cost depends on the picture's size and content, so these need real faces.
    """
    import numpy as np
    from PIL import Image
    from skimage.data import lfw_subset

    folder = Path(folder)
    if _complete(folder, n_images):
        return folder
    rng = np.random.default_rng(seed)
    lfw = lfw_subset()[:100]
    h, w = CELEBA_H, CELEBA_W
    yy = np.mgrid[0:h, 0:w][0].astype(np.float32)
    for i in range(n_images):
        bg = rng.uniform(40, 220, 3) + (yy[..., None] / h) * rng.uniform(-60, 60, 3)
        photo = Image.fromarray((bg + rng.normal(0, 4, bg.shape)).clip(0, 255).astype(np.uint8))
        side = int(rng.integers(90, 111))
        face = Image.fromarray((lfw[i % 100] * 255).astype(np.uint8)).convert("RGB")
        face = face.resize((side, side), Image.Resampling.BICUBIC)
        fill = tuple(int(v) for v in bg[h // 2, w // 2])
        face = face.rotate(rng.uniform(-12, 12), Image.Resampling.BICUBIC, expand=True, fillcolor=fill)
        photo.paste(face, ((w - face.width) // 2 + int(rng.integers(-8, 9)), (h - face.height) // 2 + 10))
        photo.save(folder / f"{i + 1:06d}.jpg", quality=90)
    (folder / _MARKER).write_text(str(n_images))
    return folder


class _TreeRss:
    """Samples the summed RSS of this process and all its descendants (Linux /proc)."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak, self.main_peak = interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _tree(self) -> list[int]:
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    pass
        tree, frontier = [os.getpid()], [os.getpid()]
        while frontier:
            frontier = [p for p, pp in parents.items() if pp in frontier]
            tree += frontier
        return tree

    def _run(self):
        while not self._stop.is_set():
            main = self._rss(os.getpid())
            self.main_peak = max(self.main_peak, main)
            self.peak = max(self.peak, sum(self._rss(p) for p in self._tree()))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def preprocess_throughput(workdir: str | Path, n_images: int = 2000, workers: int | None = None,
                          crop: str = "celeba") -> dict:
    """Time `preprocess` of n CelebA-like 178x218 JPEGs to 64x64 (celeba crop); report speed and memory.

    `crop="face"` times `--crop face` instead, on 178x218 JPEGs that each hold one
    real face (detection, alignment; `faces_found` says how many were found).

    `img_per_s` is end to end (including starting the worker processes);
    `steady_img_per_s` leaves out the time to the first finished chunk.
    `peak_rss_mb` is the largest summed RSS of the process and its workers;
    `cpu_ms_per_img` the CPU time spent per image, which (unlike wall-clock
    rates) does not change when other programs share the cores.
    """
    import tensorflow as tf  # noqa: F401  (loaded up front: a fixed cost, not preprocessing)

    from dcgan_cli.data.preprocess import PreprocessConfig, preprocess

    workdir = Path(workdir)
    if crop == "face":
        src = write_celeba_like_faces(workdir / f"celeba-like-faces-{n_images}", n_images)
    else:
        src = write_celeba_like(workdir / f"celeba-like-{n_images}", n_images)
    out = workdir / f"{src.name}-64"
    shutil.rmtree(out, ignore_errors=True)
    cfg = PreprocessConfig(source=str(src), out=str(out), size=64, crop=crop, workers=workers or 0)
    first: list[float] = []

    def progress(done, total):
        if not first:
            first.append((time.perf_counter(), done))

    import resource

    def cpu() -> float:  # this process + its finished (joined) workers
        return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                     resource.getrusage(resource.RUSAGE_CHILDREN)))

    with _TreeRss() as rss:
        cpu0, t0 = cpu(), time.perf_counter()
        m = preprocess(cfg, progress=progress, log=lambda line: None)
        seconds, cpu_seconds = time.perf_counter() - t0, cpu() - cpu0
    t_first, done_first = first[0] if first else (t0, 0)
    steady = (n_images - done_first) / max(1e-9, t0 + seconds - t_first)  # photos, for --crop face
    jpeg_kb = sum(p.stat().st_size for p in src.glob("*.jpg")) / n_images / 1024
    return {
        "images": n_images, "workers": _workers_used(cfg, n_images), "seconds": round(seconds, 2),
        "img_per_s": round(n_images / seconds, 1), "steady_img_per_s": round(steady, 1),
        # CPU time per image does not depend on what else the machine is running:
        # n cores free give about n * 1000 / cpu_ms_per_img images/s.
        "cpu_ms_per_img": round(1000 * cpu_seconds / n_images, 3),
        **({"faces_found": m["count"]} if crop == "face" else {}),
        "peak_rss_mb": round(rss.peak / 2**20, 1), "main_rss_mb": round(rss.main_peak / 2**20, 1),
        "jpeg_kb": round(jpeg_kb, 1), "shards": len(m["shards"]),
    }


def _workers_used(cfg, n_images: int) -> int:
    """The processes the driver really starts for n images (few images: fewer than --workers)."""
    from dcgan_cli.data.preprocess.driver import workers_for

    return workers_for(cfg, n_images)


if __name__ == "__main__":  # python -m dcgan_cli.bench.input [WORKDIR]
    import sys
    import tempfile

    work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="dcgan-bench-"))
    print(json.dumps({"preprocess": preprocess_throughput(work)}))
    print(json.dumps({"input_img_per_s": round(input_throughput(make_bench_shards(work, 20000, 64)), 1)}))
