"""Real filesystem faults for tests: a tiny disk that fills up, a folder that cannot be written.

Both need no mocks: a `tmpfs` of a few hundred KB mounted on a folder under
tmp_path (root only: the test is skipped cleanly elsewhere), and a read-only
folder (a read-only bind mount as root, whom permission bits do not stop;
`chmod a-w` for everyone else). Each undoes itself when the test ends.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


def _need_root(what: str) -> None:
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip(f"{what} needs root (to mount a tmpfs)")


@contextmanager
def small_disk(path: Path, kilobytes: int) -> Iterator[Path]:
    """A fresh tmpfs of `kilobytes` mounted at `path` (created); unmounted afterwards."""
    _need_root("a small disk")
    path.mkdir(parents=True, exist_ok=True)
    r = _mount("-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs", str(path))
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """`path` (an existing folder, contents kept) made read-only until the block ends."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")] if not p.is_symlink()}
        for p, mode in modes.items():
            p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield path
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    if _mount("--bind", str(path), str(path)).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        if _mount("-o", "remount,bind,ro", str(path)).returncode:
            pytest.skip("cannot remount read-only here")
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
