"""Atomic file writes: temp file in the same directory, fsync, then rename.

A reader (or a process killed half-way) therefore sees either the old file or
the new one, never a truncated mix.
"""

from __future__ import annotations

import errno
import hashlib
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


def os_error(e: OSError, path: str | os.PathLike | None = None, *, elsewhere: str,
             again: str = "run the same command again") -> DcganError:
    """One line for a filesystem error: the path, what the system said, and the fix.

    `elsewhere` is the option that picks another place (e.g. "--data-dir");
    `again` what to do once fixed.
    """
    where = path if path is not None else e.filename
    kind = os_error_kind(e)
    if kind == "space":
        fix = f"free some space there (or use {elsewhere} on another disk) and {again}"
    elif kind == "read-only":
        fix = f"use {elsewhere} on a writable disk"
    elif kind == "permission":
        fix = f"check its permissions (or use {elsewhere}) and {again}"
    else:
        fix = f"fix that and {again}"
    return DcganError(f"{os.fsdecode(where) if where is not None else 'a file'}: {e.strerror or str(e)}; {fix}")


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


# ----------------------------------------------------------------------------
# locking a directory that one process writes (a run, a preprocess output)

LOCK_FILE = ".dcgan.lock"


class DirLock:
    """An exclusive lock on a local directory, held by one process at a time.

    `DIR/.dcgan.lock` is flock'ed and holds the holder's PID and command, so a
    second writer is refused with a message naming that PID. The kernel drops a
    flock when its process dies, however it dies, so a lock file left by a dead
    process is simply taken over (its PID rewritten). Where flock does not
    exist (Windows) the file is created exclusively instead, and one whose PID
    is no longer running is taken over.

    `what` names the writer in the refusal ("`dcgan train`"); use it as a
    context manager or call `release()`.
    """

    def __init__(self, directory: str | os.PathLike, what: str = "dcgan"):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.what = what
        self.fd: int | None = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            self._acquire_exclusive()
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
            except OSError as e:
                raise _os_error(e, f"cannot lock {self.directory}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                self._refuse()
            # The holder before us may have unlinked the file between our open and flock: retry on the new one.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {_command()}\n".encode())

    def _holder(self) -> str:
        try:
            return self.path.read_text(errors="replace").split()[0]
        except (OSError, IndexError):
            return "unknown"

    def _refuse(self):
        pid = self._holder()
        raise DcganError(f"{self.directory} is in use by another {self.what} (PID {pid}); wait for it to finish "
                         f"or stop it (kill {pid}), then run this again")

    def _acquire_exclusive(self):  # pragma: no cover - Windows
        for _ in range(2):
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
                os.write(self.fd, f"{os.getpid()} {_command()}\n".encode())
                return
            except FileExistsError:
                holder = self._holder()
                if holder.isdigit() and _alive(int(holder)):
                    self._refuse()
                self.path.unlink(missing_ok=True)  # a dead holder's lock: take it over
        self._refuse()

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: the next one starts clean
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "DirLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _command() -> str:
    import sys

    return " ".join(Path(sys.argv[0]).name if i == 0 else a for i, a in enumerate(sys.argv))[:200]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------
# OSError -> one line naming the path and the fix


def _os_error(e: OSError, doing: str) -> DcganError:
    return DcganError(describe_os_error(e, doing))


def os_error_kind(e: BaseException) -> str | None:
    """What a failed file operation ran into, by errno: "space" (disk full, quota, file too big), "read-only",
    "permission", or None (something else). The one errno table: every message's fix is chosen from it."""
    code = getattr(e, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "space"
    if code == errno.EROFS:
        return "read-only"
    if code in (errno.EACCES, errno.EPERM):
        return "permission"
    return None


def os_error_reason(e: BaseException) -> str:
    """What the system said, in one line: an OSError's strerror, a TensorFlow OpError's message, else str(e)."""
    reason = getattr(e, "strerror", None) or getattr(e, "message", None) or str(e) or type(e).__name__
    return reason.splitlines()[0]


def describe_os_error(e: OSError, doing: str) -> str:
    """'doing: PATH: no space left on device; free some space ...' - one line for a failed write."""
    where = e.filename or ""
    kind = os_error_kind(e)
    if kind == "space" and e.errno != errno.EFBIG:
        fix = "free some space there (or choose another location)"
    elif kind in ("read-only", "permission"):
        fix = "make it writable (or choose another location)"
    else:
        fix = "fix that and try again"
    return f"{doing}{f' ({where})' if where else ''}: {os_error_reason(e).lower()}; {fix}"


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of a local file, read a MiB at a time (model files, weights)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
