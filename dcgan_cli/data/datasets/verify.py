"""Size and checksums: computed while the bytes stream in, compared before a file gets its name."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dcgan_cli.data.datasets import RemoteFile

CHUNK = 1 << 20


@dataclass
class Digests:
    """MD5 and SHA-256 of a byte stream, fed chunk by chunk (both: registries publish either)."""

    size: int = 0
    _md5: "hashlib._Hash" = field(default_factory=lambda: hashlib.md5(usedforsecurity=False))
    _sha256: "hashlib._Hash" = field(default_factory=hashlib.sha256)

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._md5.update(chunk)
        self._sha256.update(chunk)

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def as_dict(self) -> dict:
        return {"size": self.size, "md5": self.md5, "sha256": self.sha256}


def hash_file(path: Path, advance: Callable[[int], None] | None = None) -> Digests:
    d = Digests()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            d.update(chunk)
            if advance:
                advance(len(chunk))
    return d


def mismatch(spec: RemoteFile, d: Digests) -> str | None:
    """None if `d` is the file `spec` describes, else what differs (one phrase)."""
    if spec.size is not None and d.size != spec.size:
        return f"{d.size:,} bytes, expected {spec.size:,}"
    if spec.sha256 and d.sha256 != spec.sha256:
        return f"SHA-256 {d.sha256}, expected {spec.sha256}"
    if spec.md5 and d.md5 != spec.md5:
        return f"MD5 {d.md5}, expected {spec.md5}"
    return None
