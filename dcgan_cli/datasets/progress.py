"""Progress bars and notes for downloads and extraction, on stderr (rich).

The download machinery only calls `Ui.bar(...)` and `Ui.note(...)`, so it runs
the same with bars (a terminal), plain lines (a log file: rich prints the final
state of each bar) or no bars at all (`quiet=True`; notes such as retries still show).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class Bar:
    """One task of a rich Progress: advance it, or move it (restart, resume, a size learnt late)."""

    def __init__(self, progress=None, task=None):
        self._p, self._task = progress, task

    def advance(self, n: int) -> None:
        if self._p is not None:
            self._p.update(self._task, advance=n)

    def update(self, completed: int | None = None, total: int | None = None) -> None:
        if self._p is not None:
            kw = {"completed": completed} if completed is not None else {}
            if total is not None:
                kw["total"] = total
            self._p.update(self._task, **kw)


class Ui:
    def __init__(self, quiet: bool = False):
        from rich.console import Console

        self.quiet = quiet
        self.console = Console(stderr=True, highlight=False)

    @contextmanager
    def bar(self, label: str, total: int | None, unit: str = "bytes") -> Iterator[Bar]:
        """A progress bar: `unit="bytes"` shows bytes, rate and ETA; `"files"` shows N/M and ETA."""
        if self.quiet:
            yield Bar()
            return
        from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)

        if unit == "bytes":
            columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                       TimeRemainingColumn())
        else:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=self.console, transient=False) as p:
            yield Bar(p, p.add_task(label, total=total))

    def note(self, message: str) -> None:
        """A line for the user (a retry, a mirror that failed), printed above any live bar, even when quiet."""
        self.console.print(message, markup=False, soft_wrap=True)
