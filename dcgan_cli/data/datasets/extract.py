"""Safe extraction of zip and tar archives, and counting what came out.

Every member is checked before anything is written: an absolute path, a `..`
component, or a link pointing outside the target refuses the whole archive
(zip-slip). The caller extracts into a temporary folder and renames it into
place, so a refused or interrupted extraction never looks like a data set.

The archive type is told from its content, not its name: Drive hands out
files called `uc` or `download`, and a web page saved as `.zip` must be
reported as a web page.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from dcgan_cli.data.datasets import IMAGE_EXTS
from dcgan_cli.data.datasets.drive import looks_like_html
from dcgan_cli.data.datasets.progress import Ui
from dcgan_cli.errors import DcganError
from dcgan_cli.fsutil import check_space

CHUNK = 1 << 20


def kind(path: Path) -> str:
    """'zip' or 'tar' (any compression), by content; else a DcganError that says what the file is."""
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError:
        pass
    with open(path, "rb") as f:
        head = f.read(512)
    if looks_like_html(head):
        raise DcganError(f"{path} is a web page, not an archive (a Google Drive quota or confirmation page saved "
                         f"as the file?); download the real file again")
    raise DcganError(f"{path} is neither a zip nor a tar archive (it starts with {head[:16]!r}); "
                     f"check that it is the right file")


def extract(archive: Path, dest: Path, ui: Ui | None = None) -> int:
    """Extract `archive` into the existing folder `dest`, safely; returns the number of members."""
    ui = ui or Ui(quiet=True)
    try:
        if kind(archive) == "zip":
            return _extract_zip(archive, dest, ui)
        return _extract_tar(archive, dest, ui)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zipfile.LargeZipFile) as e:
        if isinstance(e, tarfile.FilterError):  # unsafe, not corrupt: already worded by _unsafe
            raise
        raise DcganError(f"{archive} is damaged ({e}); delete it and download it again") from None


def _unsafe(archive: Path, member: str, why: str) -> DcganError:
    return DcganError(f"refusing to extract {archive.name}: member {member!r} {why}; the archive is corrupt or "
                      f"malicious, and nothing was extracted from it")


def _target(archive: Path, dest: Path, name: str) -> Path | None:
    """Where member `name` goes under `dest`; None for the archive's root entry itself."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise _unsafe(archive, name, "has an absolute path")
    parts = [p for p in PurePosixPath(posix).parts if p not in ("", ".")]
    if ".." in parts:
        raise _unsafe(archive, name, "climbs out with '..'")
    return dest.joinpath(*parts) if parts else None


def _inside(dest: Path, path: Path) -> bool:
    root = os.path.realpath(dest)
    return os.path.commonpath([root, os.path.realpath(path)]) == root


def _extract_zip(archive: Path, dest: Path, ui: Ui) -> int:
    with zipfile.ZipFile(archive) as zf:
        plan = []  # checked in full before a single byte is written
        for info in zf.infolist():
            target = _target(archive, dest, info.filename)
            if target is None:
                continue
            link = None
            if stat.S_ISLNK(info.external_attr >> 16):  # a symlink stored by Info-ZIP: its body is the target
                link = zf.read(info).decode("utf-8", "replace")
                if os.path.isabs(link) or not _inside(dest, target.parent / link):
                    raise _unsafe(archive, info.filename, f"is a link to {link!r}, outside the data set")
            plan.append((info, target, link))
        check_space(dest, sum(info.file_size for info, _, _ in plan), f"extracting {archive.name}")
        made = set()  # folders already created: 202,599 files share one

        def parent(path: Path) -> None:
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)

        with ui.bar(f"extracting {archive.name}", total=len(plan), unit="files") as bar:
            for info, target, link in plan:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                elif link is not None:
                    parent(target)
                    os.symlink(link, target)
                else:
                    parent(target)
                    with zf.open(info) as src, open(target, "wb") as out:  # zipfile checks each CRC
                        shutil.copyfileobj(src, out, CHUNK)
                bar.advance(1)
        return len(plan)


def _extract_tar(archive: Path, dest: Path, ui: Ui) -> int:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for m in members:
            _target(archive, dest, m.name)
            try:
                # The stdlib's 'data' filter knows the link and special-file cases; ask it up front.
                tarfile.data_filter(m, str(dest))
            except tarfile.FilterError as e:
                raise _unsafe(archive, m.name, _filter_reason(e)) from None
        check_space(dest, sum(m.size for m in members if m.isfile()), f"extracting {archive.name}")
        with ui.bar(f"extracting {archive.name}", total=len(members), unit="files") as bar:
            for m in members:
                tf.extract(m, dest, filter="data")
                bar.advance(1)
        return len(members)


def _filter_reason(e: tarfile.FilterError) -> str:
    if isinstance(e, (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError)):
        return "is a link pointing outside the data set"
    if isinstance(e, tarfile.SpecialFileError):
        return "is a device or pipe, not a file"
    if isinstance(e, tarfile.AbsolutePathError):
        return "has an absolute path"
    return "would be written outside the data set"


def count_images(folder: Path) -> int:
    """Image files anywhere under `folder` (the extensions `dcgan preprocess` reads)."""
    if not folder.is_dir():
        return 0
    return sum(1 for _, _, files in os.walk(folder) for f in files if os.path.splitext(f)[1].lower() in IMAGE_EXTS)
