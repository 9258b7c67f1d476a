"""`dcgan bench --parts repair`, faces in whole photos: anonymize against blur and pixelation, restore against
bicubic and plain `project`, on lfw faces the generator never saw.

The data (offline): scikit-image's 100 lfw faces, split as the other repair rows
(`quality.held_out_split`, 80 train / 20 held out). Every face is pasted at about
100 px (92-108) into a textured scene (smooth colour blotches and grain): the 80
training faces one per scene, then `dcgan preprocess --crop face` (MTCNN and the
CelebA alignment, 32x32 grey) makes the run's data, and the `dcgan` preset
trains on it; the 20 held-out faces go one or two per scene (14 scenes).

Privacy, per seed: every face the detector finds in the held-out scenes is
replaced four ways, in the same detector box: ours (`anonymize_photos`),
a Gaussian blur (sigma a tenth of the box's side), a pixelation (8 blocks
across), and a black box (redaction: what any matcher still finds then comes
from the photo around the box, which every method keeps). Scored: the share of photos whose pixels outside the boxes are
unchanged; the share of faces an independent detector (OpenCV's Haar cascade,
`pip install 'dcgan-cli[repair]'`) still finds (a box overlapping the original's
by IoU >= 0.3); and the share re-identified (rank 1 among the 20 originals) by two
simple matchers that share nothing with our networks: HOG descriptors and raw
pixels (16x16 thumbnails, correlation), each on the box resized to 32x32 grey;
and by an identity model (`identity_model`): `dcgan identity train`'s network,
trained per seed on the 80 training faces, each pasted into ID_VIEWS scenes (other
sizes, places and backgrounds) and aligned by `preprocess --crop face`, each face
its own identity (instance discrimination: lfw_subset has no names). It is no
real recogniser (ArcFace on millions of faces): a check that our faces are not
its nearest neighbours of the people they replace, where blur's and
pixelation's are. Its queries are the faces aligned with the original
detection's landmarks. Every matcher's "clean" row is the same 20 faces pasted
into other scenes (other sizes and backgrounds), so that it shows what each
finds when nothing was hidden. An "ours+check" row is `anonymize --identity-model` with a
second identity model, the anonymiser's own (the same network and data, seed +
CHECKER_SEED): faces it still verifies as their person are searched again,
while the first model stays the judge.

Restore, per seed and factor (x4: 32 -> 8 px, x8: 32 -> 4 px): the aligned
held-out faces (the truth) are box-downsampled, then brought back by bicubic
upsampling, by plain `project` of the bicubic image (the search before the
sphere: free z, lowest loss), and by `restore` (`restore_arrays`). Scored:
consistency (RMS levels between the input and the result downsampled again),
PSNR and SSIM to the truth, the share the Haar cascade finds a face in (shown
at 128 px), and sharpness (variance of the Laplacian, as a share of the truth's).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.generate.search import Search

FACE_SIDES = (92, 108)
SCENE = (220, 170)  # one face; two faces: 360 wide
TWO_FACE_SCENES = 6  # of the 20 held-out faces, 12 in pairs, 8 alone
SEARCH = Search(steps=300, restarts=4, batch_size=80)
ID_VIEWS = 4  # scenes per training face in the identity model's data
ID_TRAINING = dict(image_size=32, channels=1, holdout=10, epochs=8, steps_per_epoch=50)
FACTORS = (4, 8)
BLUR_SHARE, PIXEL_BLOCKS = 0.1, 8
MATCH_SIDE = 32
METHODS = ("ours", "ours+check", "blur", "pixelate", "redact")
CHECKER_SEED = 100  # the anonymiser's own identity model: trained with seed + this, apart from the judge


def _texture(rng, w: int, h: int) -> np.ndarray:
    from PIL import Image

    out = np.zeros((h, w, 3))
    for cell, weight in ((40, 0.5), (12, 0.3), (4, 0.2)):
        base = rng.integers(30, 226, (h // cell + 2, w // cell + 2, 3)).astype(np.uint8)
        out += weight * np.asarray(Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC), np.float64)
    return np.clip(out + rng.normal(0, 6, out.shape), 0, 255).astype(np.uint8)


def scenes(faces: np.ndarray, groups: list[list[int]], seed: int) -> list[tuple[object, list]]:
    """(RGB PIL scene, pasted boxes) per group of face indices: faces (N, H, W) uint8 grey at ~100 px."""
    from PIL import Image

    rng = np.random.default_rng([seed, 0x5C])
    out = []
    for group in groups:
        w, h = SCENE[0] + (len(group) - 1) * 140, SCENE[1]
        img = Image.fromarray(_texture(rng, w, h))
        boxes = []
        for k, i in enumerate(group):
            side = int(rng.integers(FACE_SIDES[0], FACE_SIDES[1] + 1))
            x, y = 20 + k * 150 + int(rng.integers(0, 20)), int(rng.integers(10, h - side - 10))
            face = Image.fromarray(faces[i]).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
            img.paste(face, (x, y))
            boxes.append((x, y, side, side))
        out.append((img, boxes))
    return out


def lfw_faces() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 (100, 25, 25) lfw faces, training indices, held-out indices): the repair rows' split."""
    from skimage.data import lfw_subset

    from dcgan_cli.bench.quality import held_out_split
    from dcgan_cli.data.datasets.lfw_sample import N_FACES

    faces = np.round(lfw_subset()[:N_FACES] * 255).astype(np.uint8)
    keep, held = held_out_split(N_FACES, 80)
    return faces, keep, held


def held_out_groups(held: np.ndarray) -> list[list[int]]:
    pairs = [[int(held[2 * k]), int(held[2 * k + 1])] for k in range(TWO_FACE_SCENES)]
    return pairs + [[int(i)] for i in held[2 * TWO_FACE_SCENES:]]


def _scenes_preprocessed(out: Path, src: Path, seeds: list[int], path_of: Callable[[Path, int, int], Path],
                         log: Callable[[str], None], **options) -> Path:
    """The 80 training faces, each pasted into one scene per seed and saved at `path_of(src, face, view)`, then
    `preprocess --crop face --size 32 --channels 1` (+ `options`) into `out`; once: a finished `out` is reused."""
    from dcgan_cli.data.preprocess import PreprocessConfig, preprocess

    if (out / "manifest.json").is_file():
        return out
    faces, keep, _ = lfw_faces()
    for view, seed in enumerate(seeds):
        for i, (img, _) in zip(keep, scenes(faces, [[int(i)] for i in keep], seed=seed)):
            path = path_of(src, int(i), view)
            path.parent.mkdir(parents=True, exist_ok=True)
            img.save(path)
    preprocess(PreprocessConfig(source=str(src), out=str(out), size=32, crop="face", channels=1, workers=1,
                                **options), log=log)
    return out


def training_data(workdir: Path, log: Callable[[str], None]) -> Path:
    """The 80 training faces, one scene each -> the preprocessed run data."""
    return _scenes_preprocessed(workdir / "scenes-train-32", workdir / "scenes-train", [1],
                                lambda src, i, view: src / f"scene-{i:03d}.png", log)


def identity_data(workdir: Path, log: Callable[[str], None]) -> Path:
    """The 80 training faces, each pasted into ID_VIEWS scenes, as identities (`--labels folders`)."""
    return _scenes_preprocessed(workdir / "identities-32", workdir / "identities", [10 + v for v in range(ID_VIEWS)],
                                lambda src, i, view: src / f"face-{i:03d}" / f"view-{view}.png", log, labels="folders")
    faces, keep, _ = lfw_faces()
    src = workdir / "identities"
    for view in range(ID_VIEWS):
        for i, (img, _) in zip(keep, scenes(faces, [[int(i)] for i in keep], seed=10 + view)):
            (src / f"face-{i:03d}").mkdir(parents=True, exist_ok=True)
            img.save(src / f"face-{i:03d}" / f"view-{view}.png")
    preprocess(PreprocessConfig(source=str(src), out=str(out), size=32, crop="face", channels=1, labels="folders",
                                workers=1), log=log)
    return out


def identity_model(workdir: Path, seed: int, log: Callable[[str], None]) -> Path:
    """`dcgan identity train` (ArcFace loss, the defaults but ID_TRAINING) on identity_data; its embedding.keras."""
    from dcgan_cli.identity.config import IdentityConfig
    from dcgan_cli.identity.train import train_identity

    run_dir = workdir / "runs" / f"identity-{seed}"
    if not (run_dir / "embedding.keras").is_file():
        cfg = IdentityConfig(data=str(identity_data(workdir, log)), runs_dir=str(workdir / "runs"), seed=seed,
                             **ID_TRAINING)
        train_identity(cfg, run_dir, quiet=True, log=lambda m: None)
    return run_dir / "embedding.keras"


# ----------------------------------------------------------------------------
# the scores


def haar():
    import cv2

    return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def haar_finds(cascade, image: np.ndarray, boxes: list) -> list[bool]:
    """Whether the Haar cascade finds a face overlapping each box (IoU >= 0.3) in the uint8 RGB image."""
    grey = image if image.ndim == 2 else np.asarray(image @ [0.299, 0.587, 0.114], np.uint8)
    found = cascade.detectMultiScale(np.ascontiguousarray(grey.astype(np.uint8)), 1.1, 4, minSize=(24, 24))
    return [any(_iou(b, tuple(f)) >= 0.3 for f in found) for b in boxes]


def box_crops(image: np.ndarray, boxes: list, side: int = MATCH_SIDE) -> np.ndarray:
    """float (N, side, side) grey crops of each box, resized."""
    from PIL import Image

    out = []
    for x, y, w, h in boxes:
        crop = Image.fromarray(image).crop((int(x), int(y), int(round(x + w)), int(round(y + h)))).convert("L")
        out.append(np.asarray(crop.resize((side, side), Image.Resampling.BILINEAR), np.float64))
    return np.stack(out)


def matcher_features(crops: np.ndarray) -> dict[str, np.ndarray]:
    """{matcher: (N, D) unit features}: HOG, and raw 16x16 pixels normalised (correlation)."""
    from skimage.feature import hog
    from skimage.transform import resize

    feats = {"hog": np.stack([hog(c, pixels_per_cell=(8, 8), cells_per_block=(2, 2)) for c in crops]),
             "pixels": np.stack([resize(c, (16, 16), anti_aliasing=True).ravel() for c in crops])}
    out = {}
    for k, f in feats.items():
        f = f - f.mean(1, keepdims=True)
        out[k] = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    return out


def rank1(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """bool (N,): query i's nearest gallery row (cosine) is row i."""
    return np.argmax(queries @ gallery.T, axis=1) == np.arange(len(queries))


def blur_boxes(image: np.ndarray, boxes: list) -> np.ndarray:
    from PIL import Image, ImageFilter

    img = Image.fromarray(image)
    for x, y, w, h in boxes:
        box = (int(x), int(y), int(round(x + w)), int(round(y + h)))
        img.paste(img.crop(box).filter(ImageFilter.GaussianBlur(BLUR_SHARE * min(w, h))), box[:2])
    return np.asarray(img)


def pixelate_boxes(image: np.ndarray, boxes: list) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(image)
    for x, y, w, h in boxes:
        box = (int(x), int(y), int(round(x + w)), int(round(y + h)))
        crop = img.crop(box)
        small = crop.resize((PIXEL_BLOCKS, PIXEL_BLOCKS), Image.Resampling.BOX)
        img.paste(small.resize(crop.size, Image.Resampling.NEAREST), box[:2])
    return np.asarray(img)


def redact_boxes(image: np.ndarray, boxes: list) -> np.ndarray:
    """Each box painted black: what is left to a matcher is the photo around the boxes."""
    out = image.copy()
    for x, y, w, h in boxes:
        out[int(y):int(round(y + h)), int(x):int(round(x + w))] = 0
    return out


def kept_outside(before: np.ndarray, after: np.ndarray, boxes: list) -> bool:
    """Whether every pixel whose centre is outside all boxes has its bytes."""
    h, w = before.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    outside = np.ones((h, w), bool)
    for x, y, bw, bh in boxes:
        outside &= ~((xs >= x) & (xs <= x + bw) & (ys >= y) & (ys <= y + bh))
    return bool(np.array_equal(before[outside], after[outside]))


def sharpness(images: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian per uint8 image (N, H, W, C)."""
    from scipy.ndimage import laplace

    return np.array([laplace(img[..., 0].astype(np.float64)).var() for img in images])


def image_scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    from skimage.metrics import structural_similarity

    psnr = [10 * np.log10(255.0 ** 2 / max(float(np.mean((p.astype(float) - t) ** 2)), 1e-10))
            for p, t in zip(pred, truth)]
    ssim = [structural_similarity(t[..., 0], p[..., 0], data_range=255.0) for p, t in zip(pred, truth)]
    return float(np.mean(psnr)), float(np.mean(ssim))


# ----------------------------------------------------------------------------
# the benchmark


def privacy_seed(models, recipe, held: list, seed: int, search: Search, embed=None, clean: list | None = None,
                 check=None) -> tuple[dict, dict]:
    """({method: scores}, arrays for the figure) for the held-out scenes: ours, blur, pixelation, redaction.

    embed: the identity model (identity.verification.Embedder), or None; clean: the same faces in other
    scenes (as `held`), re-identified as they are: what each matcher finds when nothing was hidden.
    check: the anonymiser's own identity model (`distance_check`, another model than `embed`, the judge):
    an "ours+check" row, `anonymize --identity-model`, which searches again a face it still verifies."""
    from dcgan_cli.generate.anonymize import anonymize_photos
    from dcgan_cli.generate.photo_faces import find_faces

    photos = [img for img, _ in held]
    found = find_faces(photos, 20)
    boxes = [[f.box for f in fs] for fs in found]
    originals = [np.asarray(p, np.uint8) for p in photos]
    ours, _, _, _ = anonymize_photos(models, photos, recipe, replace(search, seed=seed), 20, found=found)
    checked = {}
    if check is not None:
        checked["ours+check"], _, _, records = anonymize_photos(models, photos, recipe, replace(search, seed=seed),
                                                                20, check=check, found=found)
        rows_check = {"searches": float(np.mean([r["attempts"] for r in records])),
                      "still_same": float(np.mean([r["identity"]["same_person"] for r in records]))}
    methods = {"ours": ours, **checked, "blur": [blur_boxes(o, b) for o, b in zip(originals, boxes)],
               "pixelate": [pixelate_boxes(o, b) for o, b in zip(originals, boxes)],
               "redact": [redact_boxes(o, b) for o, b in zip(originals, boxes)]}
    cascade = haar()
    gallery = face_features(originals, found, recipe, embed)
    rows = {"original": {"detected": float(np.mean([d for o, b in zip(originals, boxes)
                                                    for d in haar_finds(cascade, o, b)]))}}
    if clean is not None:
        again = find_faces([img for img, _ in clean], 20)
        if [len(f) for f in again] == [len(f) for f in found]:  # the same faces in the same order
            feats = face_features([np.asarray(img, np.uint8) for img, _ in clean], again, recipe, embed)
            rows["clean"] = {f"reid_{k}": float(rank1(feats[k], gallery[k]).mean()) for k in gallery}
    for name, images in methods.items():
        feats = face_features(images, found, recipe, embed)
        rows[name] = {"kept": float(np.mean([kept_outside(o, im, b) for o, im, b in zip(originals, images, boxes)])),
                      "detected": float(np.mean([d for im, b in zip(images, boxes) for d in haar_finds(cascade, im, b)])),
                      **{f"reid_{k}": float(rank1(feats[k], gallery[k]).mean()) for k in gallery}}
    if check is not None:
        rows["ours+check"].update(rows_check)
    faces = sum(map(len, boxes))
    rows["faces"], rows["photos"], rows["missed"] = faces, len(photos), sum(len(b) for _, b in held) - faces
    return rows, {"photos": originals, **methods, "boxes": boxes}


def face_features(images: list, found: list, recipe, embed=None) -> dict[str, np.ndarray]:
    """{matcher: (N, D) unit features} of every detected face (`found`, per image) of the uint8 RGB images:
    hog and pixels of its box (matcher_features), and with `embed` the identity model's embedding of the
    face aligned as the detection's landmarks say."""
    from PIL import Image

    from dcgan_cli.generate.photo_faces import aligned

    feats = matcher_features(np.concatenate([box_crops(im, [f.box for f in fs]) for im, fs in zip(images, found)
                                             if fs]))
    if embed is not None:
        crops = np.stack([aligned(Image.fromarray(im), i, f, recipe).crop for i, (im, fs) in
                          enumerate(zip(images, found)) for f in fs])
        feats["identity"] = embed(crops.astype(np.float32))
    return feats


def restore_seed(models, truths: np.ndarray, seed: int, search: Search) -> tuple[dict, dict]:
    """({factor: {method: scores}}, arrays for the figure): bicubic, plain project, ours on the aligned truths."""
    from PIL import Image

    from dcgan_cli.generate.repair import project_arrays
    from dcgan_cli.generate.restore import Degradation, consistency, degrade_images, restore_arrays

    size = truths.shape[1]
    cascade, rows, arrays = haar(), {}, {}
    for factor in FACTORS:
        deg = Degradation(float(factor))
        lows = degrade_images(truths, deg, size // factor)
        bicubic = np.stack([np.asarray(Image.fromarray(lo[..., 0]).resize((size, size), Image.Resampling.BICUBIC))
                            for lo in lows])[..., None]
        plain, _, _ = project_arrays(models, bicubic, replace(search, seed=seed, sphere=False, fit_slack=0.0))
        ours, _, _ = restore_arrays(models, lows, deg, replace(search, seed=seed))
        sharp_truth = sharpness(truths).mean()
        rows[factor] = {}
        for name, images in (("bicubic", bicubic), ("project", plain), ("ours", ours), ("truth", truths)):
            psnr, ssim = image_scores(images, truths)
            big = [np.asarray(Image.fromarray(im[..., 0]).resize((128, 128), Image.Resampling.BICUBIC)) for im in images]
            rows[factor][name] = {"consistency": float(consistency(lows, images, deg).mean()), "psnr": psnr,
                                  "ssim": ssim, "detected": float(np.mean([haar_finds(cascade, b, [(16, 16, 96, 96)])[0]
                                                                          for b in big])),
                                  "sharpness": float(sharpness(images).mean() / sharp_truth)}
        arrays[factor] = {"low": lows, "bicubic": bicubic, "ours": ours, "truth": truths}
    return rows, arrays


def privacy_line(seed: int, r: dict) -> str:
    matchers = [k[5:] for k in r["ours"] if k.startswith("reid_")]
    parts = [f"{m} kept {r[m]['kept']:.0%} detected {r[m]['detected']:.0%} re-id "
             + " ".join(f"{k} {r[m]['reid_' + k]:.0%}" for k in matchers)
             + (f" searches {r[m]['searches']:.2f} still same {r[m]['still_same']:.0%}" if "searches" in r[m] else "")
             for m in METHODS if m in r]
    clean = (" | clean (other scenes) re-id " + " ".join(f"{k} {r['clean']['reid_' + k]:.0%}" for k in matchers)
             if "clean" in r else "")
    return (f"anonymize seed {seed} ({r['faces']} faces in {r['photos']} photos, {r['missed']} pasted faces not found; "
            f"Haar finds {r['original']['detected']:.0%} of the originals): " + " | ".join(parts) + clean)


def restore_line(seed: int, factor: int, r: dict) -> str:
    parts = [f"{m} consistency {r[m]['consistency']:.1f} PSNR {r[m]['psnr']:.2f} SSIM {r[m]['ssim']:.3f} detected "
             f"{r[m]['detected']:.0%} sharpness {r[m]['sharpness']:.2f}" for m in ("bicubic", "project", "ours")]
    ratio = (f"ours/bicubic: consistency {r['ours']['consistency'] / max(r['bicubic']['consistency'], 1e-9):.2f} "
             f"PSNR {r['ours']['psnr'] / r['bicubic']['psnr']:.2f} sharpness "
             f"{r['ours']['sharpness'] / max(r['bicubic']['sharpness'], 1e-9):.2f}")
    return f"restore x{factor} seed {seed} (truth detected {r['truth']['detected']:.0%}): " + " | ".join(parts) + \
        f" | {ratio}"


def bench_photos(seeds, workdir: Path, log: Callable[[str], None] = print, steps: int = 2000,
                 search: Search = SEARCH, figures: Path | None = None) -> dict:
    """Train the preset on the training scenes per seed; privacy and restore rows on the held-out ones."""
    from dcgan_cli.bench.quality import QualitySet, our_config
    from dcgan_cli.generate.anonymize import face_recipe
    from dcgan_cli.generate.photo_faces import aligned, find_faces
    from dcgan_cli.generate.repair import load_models
    from dcgan_cli.training.loop import train

    from dcgan_cli.identity.verification import Embedder, distance_check, load_model

    data = training_data(workdir, log)
    faces, _, held_idx = lfw_faces()
    held = scenes(faces, held_out_groups(held_idx), seed=2)
    clean = scenes(faces, held_out_groups(held_idx), seed=3)
    result = {"privacy": [], "restore": []}
    for seed in seeds:
        run_dir = workdir / "runs" / f"scenes-{seed}"
        if not (run_dir / "generator.keras").is_file():
            cfg = our_config(QualitySet("scenes", data, np.zeros((0,)), None), seed, steps, workdir / "runs",
                             batch_size=32)
            train(cfg, run_dir, quiet=True, log=lambda m: None)
        models = load_models(run_dir)
        recipe = face_recipe(models.config, None)
        photos = [img for img, _ in held]
        truths = np.stack([aligned(photos[i], i, f, recipe).crop for i, fs in enumerate(find_faces(photos, 20))
                           for f in fs])
        id_model, meta = load_model(identity_model(workdir, seed, log))
        v = meta.get("verification", {})
        log(f"identity model seed {seed}: held-out verification {v.get('accuracy', float('nan')):.1%} "
            f"({v.get('pairs', 0):,} pairs of the 10 training faces it left out)")
        check = distance_check(identity_model(workdir, seed + CHECKER_SEED, log), models.shape)
        privacy, p_arrays = privacy_seed(models, recipe, held, seed, search, Embedder(id_model), clean, check)
        log(privacy_line(seed, privacy))
        restored, r_arrays = restore_seed(models, truths, seed, search)
        for factor, r in restored.items():
            log(restore_line(seed, factor, r))
        result["privacy"].append({"seed": seed, **privacy})
        result["restore"].append({"seed": seed, **{f"x{k}": v for k, v in restored.items()}})
        if figures is not None and seed == seeds[0]:
            write_figures(Path(figures), p_arrays, r_arrays)
            log(f"figures: {figures}/anonymize.png, {figures}/restore.png")
    return result


def write_figures(folder: Path, privacy: dict, restored: dict, n: int = 3) -> None:
    """anonymize.png: rows of photo | anonymised | blurred; restore.png: low-res | bicubic | restored | truth."""
    write_privacy_figure(folder / "anonymize.png", privacy, n)
    write_restore_figure(folder / "restore.png", restored)


def write_privacy_figure(path: Path, privacy: dict, n: int = 3) -> None:
    from dcgan_cli.images import save_image

    rows = []
    for i in range(min(n, len(privacy["photos"]))):
        cells = [privacy[k][i] for k in ("photos", "ours", "blur")]
        h = max(c.shape[0] for c in cells)
        rows.append(np.concatenate([np.pad(c, ((0, h - c.shape[0]), (0, 4), (0, 0)), constant_values=255)
                                    for c in cells], 1))
    w = max(r.shape[1] for r in rows)
    save_image(path, np.concatenate(
        [np.pad(r, ((0, 4), (0, w - r.shape[1]), (0, 0)), constant_values=255) for r in rows], 0))


def write_restore_figure(path: Path, restored: dict) -> None:
    from PIL import Image

    from dcgan_cli.images import make_grid, save_image

    cells = []
    for factor, a in restored.items():
        for i in range(4):
            low = np.asarray(Image.fromarray(a["low"][i][..., 0]).resize((32, 32), Image.Resampling.NEAREST))[..., None]
            cells += [low, a["bicubic"][i], a["ours"][i], a["truth"][i]]
    grid = np.stack(cells).repeat(3, 1).repeat(3, 2)
    save_image(path, make_grid(grid, nrow=4))
