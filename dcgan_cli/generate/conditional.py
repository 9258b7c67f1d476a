"""What a conditional generator G(z, y) is asked to draw: `sample --class NAME`, `--attr A=1,B=0`, or a grid
with one row per class.

The labels of a run are its LabelTable (data/conditions.py, RUN/condition.json; an export carries it as
NAME.labels.json beside a .keras file, or labels.json inside a SavedModel). `--attr` fixes the attributes
it names; each image's other attributes are one training image's, drawn (by the image's seed) from the
training label rows that agree with the named ones, so they come together as they do in the data; when no
training image has that combination, each other attribute is drawn alone from its training frequency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.data.conditions import CONDITION_FILE, LabelTable, load_table
from dcgan_cli.errors import DcganError

LABELS_SUFFIX = ".labels.json"  # NAME.keras -> NAME.labels.json
SAVEDMODEL_LABELS = "labels.json"  # inside an exported SavedModel folder
_ATTR_STREAM = 0xA77  # seeds the unsaid attributes of image `seed`: default_rng([seed, _ATTR_STREAM])


def table_of(run_dir: Path | None, generator_file: Path | None) -> LabelTable | None:
    """The label table of a run, or of a generator file (beside it, else its run's); None when unconditional."""
    if generator_file is not None:
        beside = Path(generator_file).with_suffix(LABELS_SUFFIX)
        if beside.is_file():
            return load_table(beside)
    return load_table(Path(run_dir) / CONDITION_FILE) if run_dir is not None else None


def check_request(table: LabelTable | None, label_dim: int, where, class_: str | None, attr: str | None) -> None:
    """--class / --attr against what the generator was trained on; one line each, before anything is drawn."""
    if (class_ or attr) and not label_dim:
        option = "--class" if class_ else "--attr"
        raise DcganError(f"{option} needs a conditional run, and {where} was trained without --condition; drop "
                         f"{option}, or train with `dcgan train --condition classes` (or attributes)")
    if label_dim and table is None:
        raise DcganError(f"{where} is conditional but its label names are missing ({CONDITION_FILE} in the run, or "
                         f"NAME{LABELS_SUFFIX} beside an export); export it again with `dcgan export`")
    if table is None:
        return
    kind = table.condition.kind
    if class_ is not None and kind != "classes":
        raise DcganError(f"--class applies to a run conditioned on classes; {where} is conditioned on attributes: "
                         f"use --attr NAME=1 (one of {', '.join(table.condition.names)})")
    if attr is not None and kind != "attributes":
        raise DcganError(f"--attr applies to a run conditioned on attributes; {where} is conditioned on classes: "
                         f"use --class NAME (one of {', '.join(table.condition.names)})")
    if class_ is not None and class_ not in table.condition.names:
        raise DcganError(f"unknown class {class_!r}; {where} knows: {', '.join(table.condition.names)}")
    if attr is not None:
        parse_attr(attr, table)


def parse_attr(spec: str, table: LabelTable) -> dict[int, float]:
    """"Smiling=1,Eyeglasses=0" -> {column: +1 or -1}; errors list the known names and values."""
    names = table.condition.names
    out = {}
    for part in [p.strip() for p in spec.split(",")]:
        name, eq, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name:
            raise DcganError(f"--attr {spec!r}: write NAME=1 or NAME=0 pairs separated by commas "
                             f"(e.g. {names[0]}=1)")
        if name not in names:
            raise DcganError(f"unknown attribute {name!r} in --attr; this run knows: {', '.join(names)}")
        if value not in ("1", "0"):
            raise DcganError(f"--attr {name}={value}: the value must be 1 (present) or 0 (absent)")
        if names.index(name) in out:
            raise DcganError(f"--attr names {name} twice; name each attribute once")
        out[names.index(name)] = 1.0 if value == "1" else -1.0
    return out


def labeller(table: LabelTable, class_: str | None, attr: str | None) -> Callable[[list[int]], np.ndarray]:
    """seeds -> their images' y (N, dim): a fixed class, or the named attributes with the others drawn per seed."""
    if class_ is not None:
        row = np.eye(table.condition.dim, dtype=np.float32)[table.condition.names.index(class_)]
        return lambda seeds: np.tile(row, (len(seeds), 1))
    said = parse_attr(attr, table)
    cols, values = list(said), np.array(list(said.values()), np.float32)
    match = np.all(table.rows[:, cols] == values, axis=1)
    rows, counts = table.rows[match], table.counts[match]
    present = (table.counts @ (table.rows > 0)) / max(table.total, 1)  # each attribute's training frequency

    def one(seed: int) -> np.ndarray:
        rng = np.random.default_rng([seed, _ATTR_STREAM])
        if len(rows):  # a training image's other attributes, among those with the named ones
            y = rows[rng.choice(len(rows), p=counts / counts.sum())].copy()
        else:  # no such image: each other attribute by its own frequency
            y = np.where(rng.uniform(size=table.condition.dim) < present, 1.0, -1.0).astype(np.float32)
        y[cols] = values
        return y

    return lambda seeds: np.stack([one(s) for s in seeds]).astype(np.float32)


def class_grid(table: LabelTable, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One row per class (or per frequent attribute combination), the latents `z` in the columns:
    (z, y, the rows' names)."""
    rows = table.grid_rows(most=64)
    names = [table.condition.names[int(np.argmax(r))] if table.condition.kind == "classes" else
             ",".join(f"{n}={int(v > 0)}" for n, v in zip(table.condition.names, r)) for r in rows]
    return np.tile(z, (len(rows), 1)), np.repeat(rows, len(z), axis=0), names
