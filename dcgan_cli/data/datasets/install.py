"""From a registry entry to a verified, extracted data set under the data dir.

    DATA_DIR/downloads/NAME/FILE       verified downloads (kept: --force re-checks them, not re-fetches)
    DATA_DIR/downloads/NAME/FILE.part  an interrupted download, resumed next time
    DATA_DIR/NAME/                     the data set: extracted archives, plain files beside them
    DATA_DIR/NAME/.complete.json       the marker: what was verified, from where, how many images

The data set folder is built as DATA_DIR/.NAME.partial.XXXX and renamed into
place with the marker already inside, so the folder exists only when complete.
A marker that matches the registry entry means there is nothing to do.
"""

from __future__ import annotations

import datetime
import json
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

from dcgan_cli import __version__
from dcgan_cli.data.datasets import Dataset, RemoteFile, drive, is_url
from dcgan_cli.data.datasets import extract as extractor
from dcgan_cli.data.datasets.http import HttpOptions, download
from dcgan_cli.data.datasets.progress import Ui
from dcgan_cli.data.datasets.verify import Digests, hash_file, mismatch
from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import write_json

MARKER = ".complete.json"
DOWNLOADS = "downloads"


@dataclass
class Result:
    dataset: str
    path: Path  # the data set's folder
    images: int | None
    downloaded: list[str] = field(default_factory=list)  # "FILE from URL", one per file fetched over the network
    already: bool = False  # complete before this call: nothing was done
    files: list[dict] = field(default_factory=list)  # what the marker records per file


def install(ds: Dataset, data_dir: Path, *, force: bool = False, urls: Sequence[str] = (),
                  archives: Sequence[Path] = (), no_checksum: bool = False, http: HttpOptions | None = None,
                  ui: Ui | None = None) -> Result:
    """Download (or take from `archives`), verify and extract `ds` into DATA_DIR/NAME.

    `urls` replace the mirrors of the data set's first file (its main archive).
    `no_checksum` accepts `archives` whose checksum differs from the published
    one (Kaggle re-packs CelebA); the image count is then the only check.
    """
    ui = ui or Ui(quiet=True)
    target = data_dir / ds.name
    marker = read_marker(target)
    if marker is not None and not force:
        if _matches(marker, ds):
            return Result(ds.name, target, marker.get("images"), already=True, files=marker.get("files", []))
        raise DcganError(f"{target} holds {ds.name} from {marker.get('source')}, not from {ds.source}; "
                         f"pass --force to replace it (or --name to keep both)")
    if marker is None and target.exists() and not force and any(target.iterdir()):
        raise DcganError(f"{target} exists but was not made by `dcgan download` (it has no {MARKER}); move it "
                         f"away, or pass --force to replace it")

    files = list(ds.files)
    if urls:
        files[0] = replace(files[0], mirrors=tuple(drive.normalise_url(u) for u in urls))
    given = _match_archives(ds, files, [Path(a) for a in archives])
    cache = data_dir / DOWNLOADS / ds.name
    cache.mkdir(parents=True, exist_ok=True)

    with _lock(cache / ".lock", ds.name):
        got, downloaded = [], []
        for spec in files:
            if spec.filename in given:
                path = given[spec.filename]
                digests, checked = _check_given(spec, path, no_checksum, ui)
                got.append((spec, path, digests, str(path.resolve()), checked))
                continue
            path, digests, origin, fresh = _cached_or_download(ds, spec, cache, force, http, ui)
            got.append((spec, path, digests, origin, _checked(spec)))
            if fresh:
                downloaded.append(f"{spec.filename} from {origin}")
        images, records = _install(ds, target, got, ui)
    return Result(ds.name, target, images, downloaded, files=records)


def read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _matches(marker: dict, ds: Dataset) -> bool:
    """Does the marker vouch for this very entry (same files, same checksums, same URL)?"""
    if marker.get("dataset") != ds.name or (is_url(ds.source) and marker.get("source") != ds.source):
        return False
    recorded = {f.get("filename"): f for f in marker.get("files", [])}
    for spec in ds.files:
        rec = recorded.get(spec.filename)
        if rec is None or any(getattr(spec, k) and rec.get(k) != getattr(spec, k) for k in ("size", "md5", "sha256")):
            return False
    return True


def _match_archives(ds: Dataset, files: list[RemoteFile], archives: list[Path]) -> dict[str, Path]:
    """Which registry file each --archive is: by its name, else the data set's main archive."""
    given: dict[str, Path] = {}
    names = {f.filename for f in files}
    for path in archives:
        if not path.is_file():
            raise DcganError(f"--archive {path}: no such file")
        name = path.name if path.name in names and path.name not in given else files[0].filename
        if name in given:
            raise DcganError(f"--archive {path}: cannot tell which of {ds.name}'s files it is (already have "
                             f"{given[name]} for {name}); name it like one of: {', '.join(sorted(names))}")
        given[name] = path
    return given


def _check_given(spec: RemoteFile, path: Path, no_checksum: bool, ui: Ui) -> tuple[Digests, str]:
    """Verify a file the user supplied exactly like a download; never touch it."""
    with ui.bar(f"verifying {path.name}", total=path.stat().st_size) as bar:
        digests = hash_file(path, bar.advance)
    if spec.extract:
        extractor.kind(path)  # a web page saved as .zip is caught here, checksum or not
    problem = mismatch(spec, digests)
    if problem and no_checksum and spec.extract:
        ui.note(f"--archive {path}: {problem}; accepted because of --no-checksum (the image count is still checked)")
        return digests, "image count only (--no-checksum)"
    if problem:
        raise DcganError(f"--archive {path} is not {spec.filename}: {problem}; it was left as it is. Download "
                         f"{spec.filename} again ({spec.manual or spec.mirrors[0]})"
                         + (", or pass --no-checksum for a re-packed copy such as Kaggle's" if spec.extract else ""))
    return digests, _checked(spec)


def _checked(spec: RemoteFile) -> str:
    return "sha256" if spec.sha256 else "md5" if spec.md5 else "size" if spec.size else "none published"


def _cached_or_download(ds, spec, cache, force, http, ui) -> tuple[Path, Digests, str, bool]:
    """A verified copy of `spec` in the cache: the one already there, or a new download."""
    dest = cache / spec.filename
    if dest.exists():
        with ui.bar(f"verifying the downloaded {spec.filename}", total=dest.stat().st_size) as bar:
            digests = hash_file(dest, bar.advance)
        try:
            record = json.loads(dest.with_name(dest.name + ".json").read_text())
        except (OSError, ValueError):
            record = {}
        if spec.checksum:
            ok = mismatch(spec, digests) is None
        else:  # nothing published to check against: trust our own record, unless told to redo
            ok = not force and record.get("sha256") == digests.sha256 and record.get("url") in spec.mirrors
        if ok:
            return dest, digests, record.get("url", str(dest)), False
        ui.note(f"{dest} is not the expected file any more; downloading it again")
    mirror, digests = download(spec, dest, spec.mirrors, http, ui, hint=_manual_route(ds, spec))
    return dest, digests, mirror, True


def _manual_route(ds: Dataset, spec: RemoteFile) -> str:
    """What to do by hand when no mirror serves `spec`: a browser download, then --archive."""
    command = f"dcgan download {ds.source} --name {ds.name}" if is_url(ds.source) else f"dcgan download {ds.name}"
    route = (f"Download {spec.filename} in a browser from {spec.manual or spec.mirrors[0]}, then run: "
             f"{command} --archive PATH/TO/{spec.filename}")
    if ds.kaggle and spec.extract:
        route += (f" (or, with Kaggle's re-packed copy from {ds.kaggle}: {command} --archive PATH/TO/archive.zip "
                  f"--no-checksum)")
    return route


def _install(ds: Dataset, target: Path, got, ui: Ui) -> tuple[int, list[dict]]:
    """Build the data set folder beside `target`, check it, write the marker, rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for pattern in (f".{ds.name}.partial.*", f".{ds.name}.old.*"):  # left by a run that was killed
        for stale in target.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{ds.name}.partial.", dir=target.parent))
    try:
        records = []
        for spec, path, digests, origin, checked in got:
            if spec.extract:
                extractor.extract(path, tmp, ui)
            else:
                shutil.copyfile(path, tmp / spec.filename)
            records.append({"filename": spec.filename, **digests.as_dict(), "checked": checked, "from": origin})
        if ds.image_dir not in ("", "."):
            _unnest(tmp / ds.image_dir)
        if ds.arrays:  # .npz / IDX: the images are counted in the arrays
            from dcgan_cli.data.datasets import arrays

            images = arrays.count(tmp / ds.image_dir)
            archives = ", ".join(spec.filename for spec, *_ in got)
        else:
            images = extractor.count_images(tmp / ds.image_dir)
            archives = ", ".join(spec.filename for spec, *_ in got if spec.extract)
        if ds.expected_images is not None and images != ds.expected_images:
            raise DcganError(f"{archives} holds {images:,} images under {ds.image_dir}/, expected "
                             f"{ds.expected_images:,}: an incomplete or different archive; nothing was installed")
        if images == 0:
            kinds = "arrays (.npz or IDX)" if ds.arrays else "images (jpg, jpeg, png, bmp, webp)"
            raise DcganError(f"{archives} holds no {kinds}; nothing was installed")
        write_json(tmp / MARKER, {
            "dataset": ds.name, "source": ds.source, "images": images, "image_dir": ds.image_dir,
            "files": records, "tool_version": __version__,
            "completed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        })
        _swap_in(tmp, target)
        return images, records
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _unnest(folder: Path) -> None:
    """img_align_celeba/img_align_celeba/*.jpg (Kaggle's layout) -> img_align_celeba/*.jpg."""
    inner = folder / folder.name
    if folder.name and inner.is_dir() and [p.name for p in folder.iterdir()] == [folder.name]:
        moved = inner.rename(folder.with_name(folder.name + ".unnest"))
        folder.rmdir()
        moved.rename(folder)


def _swap_in(new: Path, target: Path) -> None:
    """Put `new` at `target`; an old `target` (a --force redo) is moved aside first, then deleted."""
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        target.rename(old / target.name)
        new.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(target)


@contextmanager
def _lock(path: Path, name: str) -> Iterator[None]:
    """One `dcgan download NAME` at a time: two would write the same .part file."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; run one download at a time
        yield
        return
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DcganError(f"another `dcgan download {name}` is running (it holds {path}); wait for it to "
                             f"finish") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
