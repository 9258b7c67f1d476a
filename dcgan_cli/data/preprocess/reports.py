"""The list files of a preprocessed output (skipped.txt, small.txt): one file per line, escaped.

Each line is `NAME<TAB>WHY`. A file name can hold anything but "/" and NUL:
tabs, newlines, bytes that are not UTF-8. So both fields are escaped, one way
for every list file, and a line is always one file:

  - backslash, tab, newline and carriage return are written `\\\\`, `\\t`, `\\n`, `\\r`;
  - every other character Python does not call printable (control and format
    characters, line and paragraph separators, spaces other than " ") and
    every byte that is not valid UTF-8 is written as its bytes, `\\xNN` each;
  - everything else (accents, CJK, spaces) is itself, in UTF-8.

`unescape` turns a field back into the name as Python's `os` functions give
it (undecodable bytes as surrogates), so `os.fsencode(unescape(f))` is the
file's name in bytes.
"""

from __future__ import annotations

import re

_NAMED = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNNAMED = {v: k for k, v in _NAMED.items()}


def _bytes_of(ch: str) -> bytes:
    try:  # an undecodable byte os.listdir gave as a surrogate -> that byte
        return ch.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate of another origin (Windows names)
        return ch.encode("utf-8", "surrogatepass")


def escape(text: str) -> str:
    """`text` on one line, in valid UTF-8, reversible (see the module docstring)."""
    if text.isprintable() and "\\" not in text:
        return text  # the common case, at once
    out = []
    for ch in text:
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in _bytes_of(ch))
    return "".join(out)


def unescape(text: str) -> str:
    """The inverse of `escape`: a field of a list file -> the name as `os` spells it."""
    out = bytearray()
    for m in re.finditer(r"\\x([0-9a-fA-F]{2})|\\[\\tnr]|[^\\]+|\\", text):
        token = m.group(0)
        if m.group(1):
            out.append(int(m.group(1), 16))
        elif token in _UNNAMED:
            out += _UNNAMED[token].encode()
        else:
            out += token.encode("utf-8", "surrogateescape")
    return out.decode("utf-8", "surrogateescape")


def line(name: str, why: str) -> str:
    """One line of a list file (without its newline)."""
    return f"{escape(name)}\t{escape(why)}"


def parse_line(text: str) -> tuple[str, str]:
    """(name, why) of one line of a list file."""
    name, _, why = text.rstrip("\n").partition("\t")
    return unescape(name), unescape(why)
