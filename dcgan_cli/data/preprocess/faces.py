"""Faces in any photo, aligned the way CelebA's aligned images are (`dcgan preprocess --crop face`).

  detect(photos)               every face in each photo: box, confidence, five landmarks (MTCNN)
  align(image, landmarks, size)  one face -> a size x size crop, eyes level at CelebA's positions
  process_chunk(job)           the worker entry for `--crop face`: photos in, zero or more examples each

The detector is the `mtcnn` package (TensorFlow, MIT; its P/R/O-Net weights ship
inside the wheel), an optional extra: `pip install 'dcgan-cli[faces]'`.
`dcgan verify` / `identify` reuse `detect` and `align` for arbitrary photos.

CelebA's aligned images (img_align_celeba, 178x218) put the eyes level at fixed
places; `align` maps a face's two eye centres onto those places with a
similarity transform (rotation, uniform scale, shift), so the face lands in the
178x218 frame as a CelebA face would, then takes the same 108-pixel box the
`celeba` crop takes there, (35, 55)-(143, 163), resized to `size`. The warp and
the crop are one resampling step at about the photo's own resolution, followed
by one antialiased (Lanczos) resize, so large photos do not alias.

Nothing here imports TensorFlow or mtcnn at module level: `dcgan --help` and the
non-face crops never load them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

from dcgan_cli.errors import DcganError
from dcgan_cli.data.preprocess.decoding import CELEBA_CROP, Skip, open_item, open_oriented, skip_reason, to_mode
from dcgan_cli.data.shards import example_prefix

# The aligned CelebA frame and where its eyes sit (pixel centres, x right, y down): the typical
# positions in CelebA's list_landmarks_align_celeba.txt (eyes level, about 39 px apart, centred).
CELEBA_FRAME = (178, 218)
CELEBA_EYES = ((69.0, 111.0), (108.0, 111.0))
# Detection runs on a copy of each photo scaled so its longer side is at most DETECT_MAX_SIDE
# (a 12-Mpx photo costs seconds otherwise) and its shorter side at least DETECT_MIN_SIDE
# (MTCNN misses faces that fill a tiny image: lfw_subset's 25x25 crops are found 12 times
# in 100 as they are, 98 times when shown at 64x64). Landmarks are mapped back to the photo.
DETECT_MAX_SIDE = 1024
DETECT_MIN_SIDE = 64
MIN_CONFIDENCE = 0.9
# Photos detected together (one batch per shape: about 2x less CPU per photo at 32 than at 1),
# up to this many decoded pixels (about 150 MB of RGB): 32 CelebA-sized images, or 4 of 12 Mpx.
BATCH_PIXELS = 48_000_000
EXTRA = "pip install 'dcgan-cli[faces]'"
MISSING = f"--crop face needs the face detector, which is not installed; run: {EXTRA}"


def available() -> bool:
    """Whether the detector package is installed (without importing it, or TensorFlow)."""
    return importlib.util.find_spec("mtcnn") is not None


@dataclass(frozen=True)
class Face:
    """One detected face, in the photo's pixel coordinates (x right, y down; pixel centres at .5).

    Attributes:
        box: (left, top, width, height).
        confidence: the detector's score in [0, 1].
        landmarks: (5, 2) float array: left eye, right eye, nose, mouth left, mouth right,
            "left" meaning the image's left (the person's right eye).
    """

    box: tuple[float, float, float, float]
    confidence: float
    landmarks: np.ndarray

    @property
    def side(self) -> float:
        """The face box's shorter side in pixels (what --min-face compares)."""
        return min(self.box[2], self.box[3])


_KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


class Detector:
    """MTCNN, built once (a few MB of weights, about a second) and reused for every batch."""

    def __init__(self, threads: int = 0):
        if not available():
            raise DcganError(MISSING)
        import tensorflow as tf

        if threads:  # one worker per core: each keeps to its own core
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
            except RuntimeError:  # TensorFlow already started in this process; keep its setting
                pass
        from mtcnn import MTCNN

        self._mtcnn = MTCNN()

    def __call__(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Faces in each uint8 RGB array (all of one shape: one batch through the networks)."""
        if not images:
            return []
        found = self._mtcnn.detect_faces(list(images))
        out = []
        for faces in found:
            kept = []
            for f in faces:
                if f["confidence"] < MIN_CONFIDENCE:
                    continue
                points = np.array([f["keypoints"][k] for k in _KEYPOINTS], dtype=np.float64) + 0.5
                x, y, w, h = (float(v) for v in f["box"])
                kept.append(Face((x, y, w, h), float(f["confidence"]), points))
            out.append(sorted(kept, key=lambda f: (f.box[0], f.box[1])))  # left to right: a stable order
        return out


_detector: Detector | None = None


def detector() -> Detector:
    """This process's detector (one per preprocess worker), built on first use."""
    global _detector
    if _detector is None:
        import multiprocessing

        _detector = Detector(threads=1 if multiprocessing.parent_process() is not None else 0)
    return _detector


def detect(photos: list, min_face: int = 0, det: Detector | None = None) -> list[list[Face]]:
    """Every face in each photo (PIL images, any size), largest photos scaled for the detector.

    Faces whose box is under `min_face` pixels (in the photo) are left out. Photos
    whose detection copies share a shape go through the detector as one batch.
    """
    from PIL import Image

    det = det or detector()
    scaled, scales = [], []
    for im in photos:
        w, h = im.size
        s = min(1.0, DETECT_MAX_SIDE / max(w, h))
        if min(w, h) * s < DETECT_MIN_SIDE:
            s = DETECT_MIN_SIDE / min(w, h)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        rgb = im if im.mode == "RGB" else im.convert("RGB")
        small = rgb if size == rgb.size else rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
        scaled.append(np.asarray(small))
        scales.append((size[0] / w, size[1] / h))
    groups: dict[tuple, list[int]] = {}
    for i, a in enumerate(scaled):
        groups.setdefault(a.shape, []).append(i)
    results: list[list[Face]] = [[] for _ in photos]
    for idx in groups.values():
        # MTCNN's own min_face_size is left at its default: raised, it misses faces well above
        # it (mtcnn 1.0.0), so --min-face filters the boxes afterwards instead.
        for i, faces in zip(idx, det([scaled[i] for i in idx])):
            sx, sy = scales[i]
            for f in faces:
                x, y, w, h = f.box
                face = Face((x / sx, y / sy, w / sx, h / sy), f.confidence, f.landmarks / (sx, sy))
                if face.side >= min_face:
                    results[i].append(face)
    return results


def _eyes(landmarks) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) eye centres, by image x, from a keypoint dict or an (N>=2, 2) array."""
    if isinstance(landmarks, dict):
        pts = np.array([landmarks["left_eye"], landmarks["right_eye"]], dtype=np.float64)
    else:
        pts = np.asarray(landmarks, dtype=np.float64)[:2]
    a, b = pts
    return (a, b) if a[0] <= b[0] else (b, a)


def alignment(landmarks, size: int, crop: int = CELEBA_CROP) -> tuple[np.ndarray, float]:
    """The 2x3 affine matrix from photo to output pixels, and photo pixels per output pixel.

    Output = the `crop` x `crop` box centred in CelebA's 178x218 frame (the
    `celeba` crop), scaled to `size`; the photo's eyes go to CELEBA_EYES in the frame.
    Coordinates are continuous, pixel centres at .5 (as Pillow's transforms use).
    """
    (l_src, r_src), (l_dst, r_dst) = _eyes(landmarks), np.array(CELEBA_EYES)
    src, dst = complex(*(r_src - l_src)), complex(*(r_dst - l_dst))
    if abs(src) < 1e-6:
        raise ValueError("the two eyes are at the same place")
    a = dst / src  # rotation and scale, photo -> frame
    b = complex(*l_dst) - a * complex(*l_src)
    fw, fh = CELEBA_FRAME
    left, top = round((fw - crop) / 2), round((fh - crop) / 2)  # the celeba crop's box, as crop_box rounds it
    k = size / crop  # frame -> output
    m = np.array([[a.real * k, -a.imag * k, (b.real - left) * k],
                  [a.imag * k, a.real * k, (b.imag - top) * k]])
    return m, 1.0 / (abs(a) * k)


def align(image, landmarks, size: int, crop: int = CELEBA_CROP):
    """One face of `image` (a PIL image) aligned like CelebA and cropped: a `size` x `size` PIL image.

    `landmarks`: the eye centres first, as an (N, 2) array of (x, y) (a `Face`'s
    landmarks) or MTCNN's keypoint dict. Parts of the box outside the photo are black.
    """
    from PIL import Image

    m, photo_px = alignment(landmarks, size, crop)
    # Warp at about the photo's own resolution (at least `size`, at most 4x it), then one
    # Lanczos resize: a direct warp to a small size would alias on a large face.
    work = int(min(4 * size, max(size, round(size * photo_px))))
    mw = m * (work / size)
    inv = np.linalg.inv(np.vstack([mw, [0, 0, 1]]))[:2]  # Pillow wants output -> photo
    warped = image.transform((work, work), Image.Transform.AFFINE, tuple(inv.ravel()), Image.Resampling.BICUBIC)
    return warped if work == size else warped.resize((size, size), Image.Resampling.LANCZOS)


def face_notes(image, landmarks, size: int, crop: int = CELEBA_CROP) -> list[str]:
    """What is unusual about one aligned face: upscaled, or partly outside the photo."""
    m, photo_px = alignment(landmarks, size, crop)
    notes = []
    if photo_px < 1:
        notes.append(f"face upscaled from {round(size * photo_px)}x{round(size * photo_px)} to {size}x{size}")
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
    corners = inv @ np.array([[0, size, 0, size], [0, 0, size, size], [1, 1, 1, 1]])
    w, h = image.size
    if corners[0].min() < 0 or corners[1].min() < 0 or corners[0].max() > w or corners[1].max() > h:
        notes.append("face box partly outside the photo (filled with black)")
    return notes


def load_photo(fp):
    """A photo as an upright RGB PIL image (EXIF rotation applied, odd modes converted)."""
    im = open_oriented(fp)
    return to_mode(im, 3)


def process_chunk(job: tuple) -> list[tuple[int, list[bytes], str]]:
    """Worker entry for --crop face: (kind, root, names, cfg) -> [(status, records, text)] per photo.

    status 0: `records` holds one serialised Example per face found (left to right),
    text a note ("" if none); status 1: no example from this photo, text says why.
    Photos are detected in batches of up to BATCH_PIXELS decoded pixels, so
    memory stays bounded however large the photos are.
    """
    kind, root, names, cfg = job
    prefix = example_prefix(cfg.image_bytes)
    out: list = [None] * len(names)
    batch: list[tuple[int, object]] = []
    for i, name in enumerate(names):
        try:
            batch.append((i, load_photo(open_item(kind, root, name))))
        except Skip as e:
            out[i] = (1, [], str(e))
        except MemoryError:
            out[i] = (1, [], "out of memory while decoding")
        except Exception as e:  # one bad file never aborts the run
            out[i] = (1, [], skip_reason(e))
        if batch and (i == len(names) - 1 or sum(p.width * p.height for _, p in batch) >= BATCH_PIXELS):
            for j, result in _faces_to_examples(batch, cfg, prefix):
                out[j] = result
            batch = []
    return out


def _faces_to_examples(batch: list[tuple[int, object]], cfg, prefix: bytes):
    """(index, photo) pairs -> (index, (status, records, text)) pairs."""
    det = detector()
    photos = [p for _, p in batch]
    try:
        found = detect(photos, cfg.min_face, det)
    except DcganError:
        raise
    except Exception:  # find the photo at fault: one at a time
        found = []
        for p in photos:
            try:
                found.append(detect([p], cfg.min_face, det)[0])
            except Exception as e:
                found.append(e)
    for (i, photo), faces in zip(batch, found):
        if isinstance(faces, BaseException):
            yield i, (1, [], f"face detection failed: {skip_reason(faces)}")
            continue
        if not faces:
            at_least = f" of at least {cfg.min_face} px" if cfg.min_face else ""
            yield i, (1, [], f"no face{at_least} found")
            continue
        records, notes = [], []
        for n, face in enumerate(faces, 1):
            aligned = align(photo, face.landmarks, cfg.size, cfg.box_side)
            if cfg.channels == 1:
                aligned = aligned.convert("L")
            records.append(prefix + aligned.tobytes())
            notes += [f"face {n}: {note}" for note in face_notes(photo, face.landmarks, cfg.size, cfg.box_side)]
        yield i, (0, records, "; ".join(notes))
