"""Atomic file writes: temp file in the same directory, fsync, then rename.

A reader (or a process killed half-way) therefore sees either the old file or
the new one, never a truncated mix.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dcgan_cli.errors import DcganError


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it onto `path`.

    The temp name keeps the final suffix (so writers that infer a format from
    it, like Pillow or Keras, still work). On any exception the temp is removed
    and `path` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=suffix if suffix is not None else path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file 0600; give it the mode a plain open() would (umask applied).
    os.chmod(tmp_path, 0o666 & ~current_umask())
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux)."""
    try:  # thread-safe: setting and restoring it could race with another thread creating a file
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)  # elsewhere the only way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


def check_space(where: str | os.PathLike, needed: int, what: str) -> None:
    """A one-line error when the disk holding `where` has less than `needed` bytes free for `what`."""
    free = shutil.disk_usage(where).free
    if needed > free:
        raise DcganError(f"{what} needs {needed / 1e9:.2f} GB, only {free / 1e9:.2f} GB free on {where}; "
                         f"free some space or use --data-dir")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line and flush it to disk (logs such as metrics.jsonl)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
        f.flush()
        os.fsync(f.fileno())
