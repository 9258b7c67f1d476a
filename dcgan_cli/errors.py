"""The exceptions a user sees, and the one place Ctrl-C becomes a message.

Library code raises `DcganError` with a message that says what went wrong and
what to do about it; `cli.py` prints it as a single `Error: ...` line and exits 1.
`UsageError` (a contradiction between options) exits 2, `Interrupted` (Ctrl-C,
with what was kept and how to go on) exits 130. All three are turned into output
in one place, `cli._App`. Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class DcganError(Exception):
    """A problem the user can fix; the message names the fix."""


class UsageError(DcganError):
    """Options that contradict each other or are malformed: `cli.py` reports it as a usage error (exit 2).

    `option` names the command-line option at fault (e.g. "--seeds"), for the message.
    """

    def __init__(self, message: str, option: str):
        super().__init__(message)
        self.option = option


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped the work; the message says what was kept and how to resume (exit 130).

    Not a DcganError: nothing went wrong, and the CLI prints it without "Error:".
    """


class TrainingInterrupted(Interrupted):
    """A trainer stopped after a checkpoint; the message names the `--resume` command."""


@contextmanager
def resume_hint(message: str) -> Iterator[None]:
    """Turn a KeyboardInterrupt inside the block into `Interrupted(message)`.

    The one conversion of Ctrl-C: long operations wrap themselves in it with what
    they keep on disk ("run the same command again to resume"), and the CLI wraps
    every command in it with a plain "Interrupted." for the rest.
    """
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(message) from None


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM takes Ctrl-C's path inside the block: a KeyboardInterrupt, so temp files are removed by the
    `finally`s that remove them on Ctrl-C, and the command says "Interrupted." (the trainers' own StopSignals
    take both signals over while they train). Only the main thread can set a handler; elsewhere a no-op.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
