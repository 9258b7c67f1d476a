"""Vector arithmetic on latents, as in the DCGAN paper (Radford et al. 2015, section 6.3, Fig. 7):
`dcgan sample --latents "smiling_woman.npy - neutral_woman.npy + neutral_man.npy"`.

Each file's latents (N, latent_dim) are averaged into one concept vector (the paper averaged three
exemplars per concept), then added and subtracted left to right, optionally scaled: "0.5 * a.npy".
The operators + and - stand between spaces, so a file name may itself hold a "-". The images drawn
are each term's mean (as written, before its sign) and, last, the result.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_cli.errors import DcganError

_OPERATOR = re.compile(r"(?:^|\s+)([+-])(?:\s+|$)")
_SCALED = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*\*\s*(.+?)\s*$")


def is_expression(text: str) -> bool:
    """Whether --latents is arithmetic (an operator between spaces) rather than one file name."""
    return any(token in ("+", "-") for token in text.split())


def parse(text: str) -> list[tuple[float, Path]]:
    """"a.npy - 0.5 * b.npy" -> [(1.0, a.npy), (-0.5, b.npy)]; a one-line error for anything else."""
    hint = 'write FILE.npy - FILE.npy + FILE.npy, with spaces around + and - (e.g. "a.npy - b.npy + c.npy")'
    text = text.strip()
    parts = _OPERATOR.split(" " + text if text[:1] in "+-" else text)
    signs, terms = (["+"] + parts[1::2], parts[0::2]) if parts[0].strip() else (parts[1::2], parts[2::2])
    out = []
    for sign, term in zip(signs, terms):
        term = term.strip()
        weight = 1.0
        if m := _SCALED.match(term):
            weight, term = float(m.group(1)), m.group(2)
        if not term or re.search(r"\s[+*-]|[+*]\s|^[+*-]|[+*-]$", term) or not term.endswith(".npy"):
            raise DcganError(f"--latents {text!r}: {repr(term) if term else 'a term'} is not a .npy file; {hint}")
        out.append((weight if sign == "+" else -weight, Path(term)))
    if len(out) < 2 or len(signs) != len(terms):
        raise DcganError(f"--latents {text!r} is not an expression over files; {hint}")
    return out


def evaluate(text: str, read_latents: Callable[[Path], np.ndarray]) -> np.ndarray:
    """float32 (terms + 1, D): each term's mean latent, then the sum of the signed, scaled means.
    `read_latents(path)` reads one file (sampling.read_latents: its one-line errors)."""
    terms = parse(text)
    means = []
    for _, path in terms:
        z = read_latents(path)  # a missing or unreadable file: its own one-line error
        if means and z.shape[1] != means[0].shape[0]:
            raise DcganError(f"{path} holds {z.shape[1]}-dim latents but {terms[0][1]} holds "
                             f"{means[0].shape[0]}-dim ones; use latents of one generator (project with the same run)")
        means.append(z.mean(axis=0))
    result = sum(w * m for (w, _), m in zip(terms, means))
    return np.stack(means + [result]).astype(np.float32)
