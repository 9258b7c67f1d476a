"""`dcgan bench --parts repair`: how well `dcgan inpaint` fills holes in faces (and digits) it never saw.

The data ship with the packages (offline), through `dcgan preprocess` as in
bench_quality.py, split once by `bench_quality.held_out_split`:

- faces: lfw_subset's 100 faces, 80 train the `dcgan` preset, the other 20 are
  repaired (`bench_quality.held_out_faces_set`);
- digits: sklearn's 1,797 digits, four fifths train, DIGITS_REPAIRED of the
  held-out fifth are repaired.

For each seed, the preset (batch 32) is trained on the training images, then
every held-out image gets a centre mask (the middle quarter of the area) and a
random one (80% of the pixels missing, Yeh et al.'s), and is repaired four
ways: ours (`repair.inpaint_arrays`, what `dcgan inpaint` runs), the mean of the
known pixels, the average training image pasted into the hole (aligned faces
make that a strong baseline), and OpenCV's Telea inpainting (`cv2.inpaint`,
when opencv is importable: `pip install 'dcgan-cli[repair]'`). PSNR and SSIM are measured on
the missing pixels only (SSIM: scikit-image's map, averaged over the hole), and
reported as ratios ours / baseline (above 1: ours is closer to the real image).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.bench.quality import QualitySet, held_out_split
from dcgan_cli.generate.repair import Search

SETS = ("faces", "digits")
MASKS = ("center", "random")
BATCH = 32
STEPS = {"faces": 2000, "digits": 1500}  # the training budget per seed: faces that look like faces at 32x32
DIGITS_REPAIRED = 40
SEARCH = Search(steps=300, restarts=4, batch_size=80)
DEFAULT_SEEDS = (0, 1)
FIGURE_FACES = 6


def telea_available() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------
# the data


def held_out_digits_set(workdir: Path, log: Callable[[str], None] = lambda m: None) -> QualitySet:
    """Four fifths of sklearn's digits as a folder -> `preprocess` -> shards; the rest held out."""
    from PIL import Image

    from dcgan_cli.bench.quality import digits_set, preprocessed_images

    full = digits_set(workdir, log)
    keep, held = held_out_split(len(full.images), len(full.images) * 4 // 5)
    src = workdir / "digits-train-png"
    src.mkdir(parents=True, exist_ok=True)
    for i in keep:
        Image.fromarray(full.images[i, :, :, 0], "L").save(src / f"digit-{i:04d}.png")
    images = preprocessed_images(src, workdir / "digits-train-32", log)
    return QualitySet("digits", workdir / "digits-train-32", images, full.labels[keep], held_out=full.images[held])


def repair_set(name: str, workdir: Path, log: Callable[[str], None] = lambda m: None) -> QualitySet:
    from dcgan_cli.bench.quality import held_out_faces_set

    if name == "faces":
        return held_out_faces_set(workdir / "faces", log)
    qs = held_out_digits_set(workdir / "digits", log)
    qs.held_out = qs.held_out[:DIGITS_REPAIRED]
    return qs


# ----------------------------------------------------------------------------
# the baselines and the scores


def mean_fill(photos: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Each hole filled with the mean of its image's known pixels (per channel)."""
    out = photos.copy()
    for img, hole in zip(out, holes):
        img[hole] = np.rint(img[~hole].mean(0)).astype(np.uint8)
    return out


def average_fill(photos: np.ndarray, holes: np.ndarray, training: np.ndarray) -> np.ndarray:
    """Each hole filled with the average training image there (the face a generator that learned nothing
    but the mean would draw): a strong baseline on aligned faces."""
    mean = np.rint(training.astype(np.float64).mean(0)).astype(np.uint8)
    out = photos.copy()
    for img, hole in zip(out, holes):
        img[hole] = mean[hole]
    return out


def telea(photos: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """OpenCV's Telea (2004) fast-marching inpainting, radius 3."""
    import cv2

    out = []
    for img, hole in zip(photos, holes):
        filled = cv2.inpaint(np.ascontiguousarray(img), hole.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
        out.append(filled.reshape(img.shape))
    return np.stack(out)


def hole_scores(pred: np.ndarray, real: np.ndarray, holes: np.ndarray) -> tuple[float, float]:
    """(mean PSNR in dB, mean SSIM) over images, each measured on its missing pixels only."""
    from skimage.metrics import structural_similarity

    psnr, ssim = [], []
    for p, r, h in zip(pred.astype(np.float64), real.astype(np.float64), holes):
        mse = max(float(np.mean((p[h] - r[h]) ** 2)), 1e-10)
        psnr.append(10 * np.log10(255.0 ** 2 / mse))
        _, full = structural_similarity(r, p, data_range=255.0, channel_axis=-1, full=True)
        ssim.append(float(full[h].mean()))
    return float(np.mean(psnr)), float(np.mean(ssim))


# ----------------------------------------------------------------------------
# the benchmark


def repair_seed(qs: QualitySet, seed: int, steps: int, runs: Path, search: Search) -> tuple[dict, dict]:
    """Train on `qs` with `seed`, repair its held-out images under each mask: ({mask: figures}, arrays for a figure)."""
    from dcgan_cli.bench.quality import our_config
    from dcgan_cli.generate.repair import inpaint_arrays, load_models, make_masks
    from dcgan_cli.training.loop import train

    cfg = our_config(qs, seed, steps, runs, batch_size=BATCH)
    t = time.perf_counter()
    run = runs / f"{qs.name}-{seed}"
    if not (run / "generator.keras").is_file():  # a --quality-workdir kept from an earlier bench: reuse its runs
        run = train(cfg, run, quiet=True, log=lambda m: None)
    trained = time.perf_counter() - t
    models = load_models(run)
    real = qs.held_out
    rows, arrays = {}, {}
    for kind in MASKS:
        holes = make_masks(len(real), real.shape[1], kind=kind, seed=seed)
        t = time.perf_counter()
        ours, _, _ = inpaint_arrays(models, real, holes, replace(search, seed=seed))
        took = time.perf_counter() - t
        methods = {"ours": ours, "mean": mean_fill(real, holes), "average": average_fill(real, holes, qs.images)}
        if telea_available():
            methods["telea"] = telea(real, holes)
        scores = {m: hole_scores(img, real, holes) for m, img in methods.items()}
        row = {"missing": float(holes.mean()), "seconds_train": round(trained, 1), "seconds_repair": round(took, 1),
               **{f"{m}_psnr": s[0] for m, s in scores.items()}, **{f"{m}_ssim": s[1] for m, s in scores.items()}}
        for base in [m for m in methods if m != "ours"]:
            row[f"psnr_ratio_{base}"] = scores["ours"][0] / scores[base][0]
            row[f"ssim_ratio_{base}"] = scores["ours"][1] / scores[base][1]
        rows[kind] = row
        arrays[kind] = {"holes": holes, **methods}
    return rows, arrays


def _line(name: str, seed: int, kind: str, n: int, row: dict) -> str:
    methods = [m for m in ("ours", "mean", "average", "telea") if f"{m}_psnr" in row]
    psnr = " ".join(f"{m} {row[f'{m}_psnr']:.2f}" for m in methods)
    ssim = " ".join(f"{m} {row[f'{m}_ssim']:.3f}" for m in methods)
    ratios = " | ".join(f"ours/{b} PSNR {row[f'psnr_ratio_{b}']:.2f} SSIM {row[f'ssim_ratio_{b}']:.2f}"
                        for b in methods[1:])
    return (f"repair {name} seed {seed} {kind} ({n} held out, {row['missing']:.0%} missing; train "
            f"{row['seconds_train']:.0f}s, repair {row['seconds_repair']:.0f}s): PSNR dB {psnr} | SSIM {ssim} | "
            f"{ratios}")


def _summary(name: str, kind: str, rows: list[dict], steps: int) -> tuple[str, dict]:
    out = {}
    for key in sorted(k for k in rows[0] if "ratio" in k or k.endswith(("_psnr", "_ssim"))):
        v = np.array([r[key] for r in rows], np.float64)
        out[key] = [float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0]
    ratios = ", ".join(f"{k.replace('_ratio_', ' ours/')} {m:.2f} +- {s:.2f}" for k, (m, s) in out.items()
                       if "ratio" in k)
    telea = "" if "telea_psnr" in out else " (no opencv: Telea not run; pip install 'dcgan-cli[repair]')"
    return (f"repair {name} {kind} over {len(rows)} seeds ({steps} training steps, batch {BATCH}): "
            f"{ratios}{telea}"), out


def bench_repair(seeds=DEFAULT_SEEDS, log: Callable[[str], None] = print, workdir: str | Path | None = None,
                 sets=SETS, steps: int | None = None, search: Search = SEARCH, figure: str | Path | None = None,
                 photos: bool = True) -> dict:
    """Each set of `sets`: train per seed, repair the held-out images; returns {set: {mask: figures}}.

    `steps`: the training budget for every set (None: STEPS). `figure`: write the docs
    picture (masked | ours | Telea | real) of the first faces, seed seeds[0], centre mask
    (and anonymize.png, restore.png beside it). `photos`: with faces, also the rows of
    faces in whole photos (bench/photos.py: anonymize and restore).
    """
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(workdir or tmp)
        result = {"telea": telea_available(), "search": asdict(search)}
        for name in sets:
            qs = repair_set(name, work, log)
            budget = steps or STEPS[name]
            per_mask = {kind: [] for kind in MASKS}
            for seed in seeds:
                rows, arrays = repair_seed(qs, seed, budget, work / "runs", search)
                for kind, row in rows.items():
                    per_mask[kind].append({"seed": seed, **row})
                    log(_line(name, seed, kind, len(qs.held_out), row))
                if figure is not None and name == "faces" and seed == seeds[0]:
                    write_figure(figure, qs.held_out, arrays["center"])
                    log(f"repair figure: {figure}")
            result[name] = {"held_out": len(qs.held_out), "train_images": len(qs.images), "steps": budget}
            for kind, rows in per_mask.items():
                line, summary = _summary(name, kind, rows, budget)
                log(line)
                result[name][kind] = {"per_seed": rows, "mean_std": summary}
        if photos and "faces" in sets and not telea_available():
            log("repair photos: skipped (no opencv for the independent face detector; "
                "pip install 'dcgan-cli[repair]')")
        elif photos and "faces" in sets:  # faces in whole photos: anonymize and restore (bench/photos.py)
            from dcgan_cli.bench.photos import bench_photos

            result["photos"] = bench_photos(seeds, work / "photos", log, steps or STEPS["faces"], search,
                                            Path(figure).parent if figure is not None else None)
        return result


def write_figure(path: str | Path, real: np.ndarray, arrays: dict, n: int = FIGURE_FACES, scale: int = 3) -> Path:
    """Rows of masked | ours | Telea (mean fill without opencv) | real, each scaled up `scale` times."""
    from dcgan_cli.images import make_grid, save_image

    holes = arrays["holes"][:n]
    masked = real[:n].copy()
    masked[holes] = 0
    other = arrays.get("telea", arrays["mean"])[:n]
    cells = np.stack([masked, arrays["ours"][:n], other, real[:n]], 1).reshape(-1, *real.shape[1:])
    cells = cells.repeat(scale, 1).repeat(scale, 2)
    return save_image(path, make_grid(cells, nrow=4))
