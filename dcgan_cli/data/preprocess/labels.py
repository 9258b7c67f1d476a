"""Per-image labels stored beside the pixels: identities and attributes (shards.py's optional features).

  celeba    identity_CelebA.txt ("000001.jpg 2880": 10,177 people) and
            list_attr_celeba.txt (a count line, the 40 attribute names, then
            "000001.jpg -1 1 ...") read from beside img_align_celeba/
  folders   the identity is the first sub-folder of the image's path
            (person/x.jpg); the manifest's "classes" lists the folder names, index = id
  auto      celeba when its files are there, else none
  none      pixels only

`Labeller.for_item(name)` gives one image's labels ({} when none);
`Labeller.specs` is what goes into the manifest's "labels" list, and
`Labeller.fingerprint` changes when the annotation files do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from dcgan_cli.errors import DcganError
from dcgan_cli.data.shards import MISSING_LABEL

LABEL_MODES = ("auto", "none", "celeba", "folders")
LabelMode = Enum("LabelMode", [(m.upper(), m) for m in LABEL_MODES], type=str)
IDENTITY_FILE = "identity_CelebA.txt"
ATTR_FILE = "list_attr_celeba.txt"
IDENTITY = "identity"
ATTRIBUTES = "attributes"


@dataclass
class Labeller:
    specs: list[dict] = field(default_factory=list)
    table: dict[str, dict] = field(default_factory=dict)  # key (basename or folder) -> labels
    by_folder: bool = False
    fingerprint: str = ""

    def for_item(self, name: str) -> dict:
        if not self.specs:
            return {}
        if self.by_folder:
            return self.table[name.split("/", 1)[0]]
        found = self.table.get(name.rsplit("/", 1)[-1])
        if found is None:
            return {s["name"]: [MISSING_LABEL] * s.get("length", 1) for s in self.specs}
        return found

    def finish(self, items: list[str]) -> None:
        """Count the images that have no annotation line (they read as -1), into the specs."""
        if self.specs and not self.by_folder:
            missing = sum(1 for n in items if n.rsplit("/", 1)[-1] not in self.table)
            for s in self.specs:
                s["missing"] = missing


def _annotation(root: Path, name: str) -> Path | None:
    for c in (root / name, root.parent / name):
        if c.is_file():
            return c
    return None


def _read_identities(path: Path) -> dict[str, int]:
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        f = line.split()
        if not f:
            continue
        if len(f) != 2 or not f[1].isdigit():
            raise DcganError(f"{path} line {n} is not `FILE IDENTITY` ({line.strip()[:60]!r}); "
                             f"fetch it again with `dcgan download celeba --force`")
        out[f[0]] = int(f[1])
    return out


def _read_attributes(path: Path) -> tuple[list[str], dict[str, list[int]]]:
    lines = [x for x in path.read_text(encoding="utf-8", errors="replace").splitlines() if x.strip()]
    bad = f"; fetch it again with `dcgan download celeba --force`"
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise DcganError(f"{path} does not start with the image count and the attribute names{bad}")
    names = lines[1].split()
    out = {}
    for n, line in enumerate(lines[2:], 3):
        f = line.split()
        if len(f) != len(names) + 1 or any(v not in ("1", "-1") for v in f[1:]):
            raise DcganError(f"{path} line {n} is not `FILE` and {len(names)} values of 1 or -1{bad}")
        out[f[0]] = [1 if v == "1" else 0 for v in f[1:]]
    return names, out


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def make_labeller(mode: str, kind: str, root: str | Path, items: list[str]) -> Labeller:
    """The labels of `items` (a listing's relative names) under `mode`; errors name the fix."""
    if mode not in LABEL_MODES:
        raise DcganError(f"--labels must be one of {', '.join(LABEL_MODES)}, got {mode!r}")
    root = Path(root)
    if mode == "none":
        return Labeller()
    if kind == "arrays":  # MNIST-like arrays carry their own "label" (preprocess/arrays.py)
        if mode != "auto":
            raise DcganError(f"--labels {mode} applies to image folders; {root} holds arrays with their own "
                             f"labels: leave --labels out")
        return Labeller()
    if mode == "folders":
        folders = sorted({n.split("/", 1)[0] for n in items if "/" in n})
        loose = [n for n in items if "/" not in n]
        if loose or not folders:
            raise DcganError(f"--labels folders needs every image in a sub-folder named by its person "
                             f"(person/x.jpg); {loose[0] if loose else root} is not. Move it, or use --labels none")
        index = {f: i for i, f in enumerate(folders)}
        spec = {"name": IDENTITY, "dtype": "int64", "length": 1, "source": "folders", "classes": folders}
        return Labeller([spec], {f: {IDENTITY: i} for f, i in index.items()}, by_folder=True,
                        fingerprint=hashlib.sha256("\0".join(folders).encode()).hexdigest())
    ident = _annotation(root, IDENTITY_FILE) if kind == "dir" else None
    attrs = _annotation(root, ATTR_FILE) if kind == "dir" else None
    if mode == "auto" and ident is None and attrs is None:
        return Labeller()
    if ident is None and attrs is None:
        raise DcganError(f"--labels celeba needs {IDENTITY_FILE} or {ATTR_FILE} beside {root} (or in it); "
                         f"`dcgan download celeba` fetches them, or use --labels none")
    specs, table = [], {}
    if ident is not None:
        ids = _read_identities(ident)
        specs.append({"name": IDENTITY, "dtype": "int64", "length": 1, "source": IDENTITY_FILE,
                      "identities": len(set(ids.values()))})
        for k, v in ids.items():
            table.setdefault(k, {})[IDENTITY] = v
    if attrs is not None:
        names, values = _read_attributes(attrs)
        specs.append({"name": ATTRIBUTES, "dtype": "int64", "length": len(names), "source": ATTR_FILE, "names": names,
                      "values": "1 = the attribute is present (the file's 1), 0 = absent (-1)"})
        for k, v in values.items():
            table.setdefault(k, {})[ATTRIBUTES] = v
    # An image named in one file but not the other reads -1 for what it lacks.
    for labels in table.values():
        for s in specs:
            labels.setdefault(s["name"], [MISSING_LABEL] * s["length"])
    return Labeller(specs, table, fingerprint=_digest(*[p for p in (ident, attrs) if p is not None]))
