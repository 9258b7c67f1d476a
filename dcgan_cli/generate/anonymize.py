"""`dcgan anonymize`: every face in a photo replaced by one the run's generator draws (DeepPrivacy's recipe).

    dcgan anonymize party.jpg street.png --run RUN -o OUT [--identity-model M] [--min-face N] [--seed S]

For each photo: every face the detector of `--crop face` finds (MTCNN, boxes of
at least `--min-face` px) is aligned as the run's data was; the detector's
whole box becomes the hole, and the inpainting search (Yeh et al.'s context
loss on the kept surroundings plus D's prior, z on the latent sphere) draws a
face that fits around it, Poisson-blended into the hole. Of the search's starts
that fit the surroundings within its tolerance (`Search.fit_slack`), the one
kept is the face least like the one it replaces inside the hole (`likeness`:
the correlation of their pixels and of their gradients), not the one D rates
most real: on tight crops the surroundings (hair, the head's outline, the
light) are the person's own, and the best fit to them inherits the face's
layout. The crop goes back
into the photo through the inverse of the alignment, feathered over the box's
outer 2% (photo_faces.paste_back); the part of the box past the run's framing
(the chin, below a CelebA crop) is filled smoothly from the drawn face and the
photo around the box, so no pixel of the box keeps the original face, and every
pixel outside the boxes keeps its bytes.

With `--identity-model`, each new face is compared with the one it replaces
(the embedding distance against the model's threshold); a face still verified
as the same person is searched again from other starts, up to `attempts`
times. Each face's distance is reported.

OUT/NAME.png the photo, OUT/NAME.json (boxes, scores, losses, identity),
OUT/NAME-faceK.npy the latent of face K (`dcgan sample --latents` draws it).
A photo with no face is copied as it is (OUT/NAME + its own suffix). The same
photos, options and seed give the same bytes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.errors import DcganError, UsageError
from dcgan_cli.generate.search import Search

DEFAULT_MIN_FACE = 20
ATTEMPTS = 4  # searches per face at most, with --identity-model
# The blend's width inside the box, as a share of its side: narrower than restore's (photo_faces.FEATHER),
# since the photo's own pixels in it are the original face's (the bench's pixel matcher found them).
FEATHER = 0.02
_ATTEMPT_STREAM = 0x414E4F4E  # keeps a retry's starts apart from the first search's


@dataclass(frozen=True)
class AnonymizeRequest:
    """One `dcgan anonymize`, checked as a whole before anything loads."""

    photos: tuple[Path, ...]
    out: Path
    run: Path | None = None
    crop: str | None = None
    identity_model: Path | None = None
    min_face: int = DEFAULT_MIN_FACE
    attempts: int = ATTEMPTS
    search: Search = field(default_factory=Search)
    force: bool = False
    runs_dir: Path = Path("runs")

    def __post_init__(self):
        check_photos_and_out(self.photos, self.out)
        self.search.check()
        if self.min_face < 1:
            raise UsageError(f"{self.min_face} is less than the minimum of 1", "--min-face")

    def outputs(self, stem: str) -> list[Path]:
        return [Path(self.out) / f"{stem}.png", Path(self.out) / f"{stem}.json"]


def check_photos_and_out(photos, out) -> None:
    """Photos named once each (their stems name the outputs); -o a folder, not a file."""
    if not photos:
        raise UsageError("name at least one photo", "PHOTO")
    stems = [Path(p).stem for p in photos]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise UsageError(f"two photos are named {twice[0]}: outputs are named by the photo; rename one", "PHOTO")
    if Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"{out} is a file; -o names a folder for the outputs", "-o")


def face_recipe(cfg, crop: str | None):
    """The run's crop recipe, which must align faces (its data's, or --crop face)."""
    from dcgan_cli.generate.repair import crop_recipe

    recipe = crop_recipe(cfg, crop)
    if recipe.crop not in ("face",):
        raise DcganError(f"the run's data was cropped '{recipe.crop}', not aligned on faces: its generator cannot "
                         f"be fitted to a face found in a photo; use a run trained on --crop face data, or pass "
                         f"--crop face")
    return recipe


def likeness(originals: np.ndarray, others: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """float (N,) in [-1, 1]: how alike two faces are inside the hole, model-free.

    originals, others: (N, S, S, C) on one scale (uint8 levels or [-1, 1]; each
    is normalised); holes: bool (N, S, S). The mean of two correlations over the
    hole's pixels: of the grey levels, and of the gradients (x and y together),
    each centred on its own mean (so a change of light alone does not count).
    """
    def corr(a, b):
        a = a - a.mean(1, keepdims=True)
        b = b - b.mean(1, keepdims=True)
        return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)

    out = np.zeros(len(originals))
    for k, (a, b, h) in enumerate(zip(originals, others, holes)):
        a = np.asarray(a, np.float64).mean(-1)
        b = np.asarray(b, np.float64).mean(-1)
        a, b = (a - a[h].mean()) / max(a[h].std(), 1e-12), (b - b[h].mean()) / max(b[h].std(), 1e-12)
        grads = [np.concatenate([g[h] for g in np.gradient(x)])[None] for x in (a, b)]
        out[k] = (corr(a[h][None], b[h][None])[0] + corr(*grads)[0]) / 2
    return out


def _unlike(models, crops: np.ndarray, holes: np.ndarray, restarts: int) -> Callable:
    """`prefer` for search_latents: each start's G(z) scored by minus its likeness to its face's original."""
    from dcgan_cli.generate.search import generate

    def prefer(z: np.ndarray) -> np.ndarray:
        return -likeness(np.repeat(crops, restarts, 0), generate(models, z), np.repeat(holes, restarts, 0))

    return prefer


def _redraw(models, faces: list, search: Search, todo: np.ndarray, attempt: int, on_step) -> tuple:
    """Inpaint the holes of faces[todo]: (uint8 crops, latents, terms); attempt > 0 starts elsewhere.

    Of the starts that fit the surroundings as well as the search's tolerance allows, the face least like the
    original inside the hole is kept (`likeness`); terms["likeness"] is the kept face's."""
    from dcgan_cli.generate.repair import context_weights, poisson_blend
    from dcgan_cli.generate.search import generate, search_latents, to_sphere
    from dcgan_cli.pixels import to_signed, to_uint8

    crops = np.stack([faces[i].crop for i in todo])
    holes = np.stack([faces[i].hole for i in todo])
    valid = np.stack([faces[i].valid for i in todo])
    known = (to_signed(crops.astype(np.float32)) * ~holes[..., None]).astype(np.float32)
    weights = context_weights(holes, search.window) * valid
    weights = np.broadcast_to(weights[..., None], crops.shape).astype(np.float32)
    nz = int(models.generator.input_shape[-1])
    first = None
    if attempt:  # a retry: other starts, from (seed, face, attempt)
        first = np.concatenate([np.random.default_rng([search.seed, int(i), attempt, _ATTEMPT_STREAM]).standard_normal(
            (search.restarts, nz)) for i in todo]).astype(np.float32)
        first = to_sphere(first, nz) if search.sphere else first
    z, terms = search_latents(models, known, weights, "inpaint", search, on_step, first=first,
                              prefer=_unlike(models, crops, holes, search.restarts))
    new = to_uint8(poisson_blend(generate(models, z), known, holes))
    return new, z, {**terms, "likeness": likeness(crops, new, holes)}


def anonymize_faces(models, faces: list, search: Search, check=None, attempts: int = ATTEMPTS,
                    on_step: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(uint8 new crops, latents, a record per face) for `faces` (AlignedFace), all searched together."""
    n = len(faces)
    out = np.stack([f.crop for f in faces])
    z = np.zeros((n, int(models.generator.input_shape[-1])), np.float32)
    records = [{} for _ in range(n)]
    todo = np.arange(n)
    for attempt in range(attempts if check else 1):
        crops, zs, terms = _redraw(models, faces, search, todo, attempt, on_step)
        out[todo], z[todo] = crops, zs
        for j, i in enumerate(todo):
            records[i] = {"loss": {k: float(v[j]) for k, v in terms.items() if k != "likeness"},
                          "likeness": round(float(terms["likeness"][j]), 6), "attempts": attempt + 1}
        if check is None:
            break
        d, t = check(np.stack([faces[i].crop for i in todo]), crops)
        for j, i in enumerate(todo):
            records[i]["identity"] = {"distance": round(float(d[j]), 6), "threshold": round(t, 6),
                                      "same_person": bool(d[j] < t)}
        todo = todo[d < t]
        if not len(todo):
            break
    return out, z, records


def anonymize_photos(models, photos: list, recipe, search: Search, min_face: int = DEFAULT_MIN_FACE, check=None,
                     attempts: int = ATTEMPTS, on_step=None, found: list | None = None) \
        -> tuple[list[np.ndarray], list, np.ndarray, list[dict]]:
    """(uint8 RGB photos with every face replaced, the AlignedFaces, their latents, a record per face).

    `found`: the faces of each photo when already detected (photo_faces.find_faces)."""
    from dcgan_cli.generate import photo_faces

    found = photo_faces.find_faces(photos, min_face) if found is None else found
    faces = [photo_faces.aligned(photos[i], i, f, recipe) for i, fs in enumerate(found) for f in fs]
    out = [np.asarray(p, np.uint8) for p in photos]
    if not faces:
        return out, faces, np.zeros((0, int(models.generator.input_shape[-1])), np.float32), []
    crops, z, records = anonymize_faces(models, faces, search, check, attempts, on_step)
    for k, face in enumerate(faces):
        out[face.photo] = photo_faces.paste_back(out[face.photo], crops[k], face, fill=True, feather=FEATHER)
    return out, faces, z, records


def fulfil(req: AnonymizeRequest, *, say: Callable[[str], None] = print,
           bar: Callable[[str, int], Callable[[int], None]] | None = None,
           make_checker: Callable | None = None) -> str:
    """Do what `req` asks; returns the one-line summary. Nothing is written until every check has passed.

    `make_checker(model_path, (S, S, C)) -> check(originals, news) -> (distances, threshold)`:
    with `req.identity_model`, how faces are compared (identity/verification.py's
    `distance_check`, given by the caller: generate/ does not import identity/).
    """
    from dcgan_cli.generate import photo_faces
    from dcgan_cli.generate.repair import load_models
    from dcgan_cli.generate.search import search_steps

    photos = photo_faces.load_photos(list(req.photos))
    _check_outputs(req, [None] * len(photos))
    models = load_models(req.run, req.runs_dir, warn=lambda m: say(f"Warning: {m}"))
    recipe = face_recipe(models.config, req.crop)
    check = None
    if req.identity_model is not None:
        if make_checker is None:
            raise DcganError("--identity-model needs a face comparer; call fulfil(make_checker=...)")
        check = make_checker(req.identity_model, models.shape)
    found = photo_faces.find_faces(photos, req.min_face)
    if not any(found):
        raise DcganError(f"no face of at least {req.min_face} px found in any photo; name photos with faces, "
                         f"or lower --min-face")
    n = sum(map(len, found))
    say(f"Anonymizing {n} face(s) in {sum(map(bool, found))} photo(s) with {models.source}")
    on_step = bar("anonymize", search_steps(n, req.search)) if bar else None
    pixels, faces, z, records = anonymize_photos(models, photos, recipe, req.search, req.min_face, check,
                                                 req.attempts, on_step, found)
    for i, p in enumerate(req.photos):
        if not found[i]:
            say(f"{p}: no face of at least {req.min_face} px; copied unchanged")
    _write(req, models, pixels, faces, z, records)
    same = sum(r.get("identity", {}).get("same_person", False) for r in records)
    warn = f"; {same} still verified as the same person after {req.attempts} searches" if same else ""
    return f"Anonymized {len(faces)} face(s) in {len(photos)} photo(s) into {req.out}{warn}"


def _check_outputs(req: AnonymizeRequest, _) -> None:
    if req.force:
        return
    for p in req.photos:
        for o in [*req.outputs(Path(p).stem), Path(req.out) / Path(p).name]:
            if o.exists():
                raise DcganError(f"{o} already exists; pass --force to replace it, or choose another -o folder")


def _write(req, models, pixels, faces, z, records) -> None:
    from dcgan_cli.fsutil import atomic_path, write_text
    from dcgan_cli.images import save_image

    out = Path(req.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(req.photos):
        stem, mine = Path(p).stem, [k for k, f in enumerate(faces) if f.photo == i]
        rows = []
        if not mine:
            with atomic_path(out / Path(p).name) as tmp:
                shutil.copyfile(p, tmp)
        else:
            for n, k in enumerate(mine, 1):
                with atomic_path(out / f"{stem}-face{n}.npy") as tmp:
                    with open(tmp, "wb") as f:
                        np.save(f, z[k:k + 1].astype(np.float32), allow_pickle=False)
                rows.append({**faces[k].report(), "latents": f"{stem}-face{n}.npy", **records[k]})
            save_image(out / f"{stem}.png", pixels[i])
        record = {**models.facts, "photo": str(p), "image": f"{stem}.png" if mine else Path(p).name,
                  "faces": rows, "min_face": req.min_face, "seed": req.search.seed,
                  "settings": {"steps": req.search.steps, "restarts": req.search.restarts, "lr": req.search.lr,
                               "prior_weight": req.search.prior_weight, "sphere": req.search.sphere}}
        write_text(out / f"{stem}.json", json.dumps(record, indent=2) + "\n")
