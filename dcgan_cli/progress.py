"""The one progress bar of every command (rich, on a console of the caller's choice).

`Bars` is a rich `Progress` with one layout: description, bar, done/total,
a free text field (losses, img/s) and the time left; `unit="bytes"` shows bytes,
rate and ETA instead (downloads). Disabled, it draws nothing and every call is a
no-op, so callers never branch on "quiet".
"""

from __future__ import annotations

from typing import Callable


class Bars:
    """Progress bars; use as a context manager or with start()/stop().

    console: where to draw (None: stdout; pass `Console(stderr=True)` to keep
    stdout clean). transient: bars vanish when stopped. only_on_terminal: draw
    nothing when the console is not a terminal.
    """

    def __init__(self, enabled: bool = True, *, console=None, transient: bool = False,
                 only_on_terminal: bool = False, unit: str = "items"):
        self._p = None
        if not enabled:
            return
        from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)

        if unit == "bytes":
            columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                       TimeRemainingColumn())
        else:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[info]}"), TimeRemainingColumn())
        self._p = Progress(*columns, console=console, transient=transient)
        if only_on_terminal and not self._p.console.is_terminal:
            self._p = None

    def start(self) -> "Bars":
        if self._p is not None:
            try:
                self._p.start()
            except Exception:  # rich < 14 cannot nest live displays: go without a bar
                self._p = None
        return self

    def stop(self) -> None:
        if self._p is not None:
            self._p.stop()

    def __enter__(self) -> "Bars":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def task(self, description: str, total: int | None, completed: int = 0) -> "Task":
        if self._p is None:
            return Task(None, None)
        return Task(self._p, self._p.add_task(description, total=total, completed=completed, info=""))

    def print(self, line: str, fallback: Callable[[str], None] = print) -> None:
        """A log line above the bars (or through `fallback` when there are none)."""
        if self._p is None:
            fallback(line)
        else:
            self._p.console.print(line, markup=False, highlight=False, soft_wrap=True)


class Task:
    """One bar: advance it, set its text, remove it."""

    def __init__(self, progress, task_id):
        self._p, self._id = progress, task_id

    def advance(self, n: int = 1, info: str | None = None) -> None:
        if self._p is not None:
            self._p.update(self._id, advance=n, **({"info": info} if info is not None else {}))

    def update(self, completed: int | None = None, total: int | None = None) -> None:
        """Move the bar (a restart, a resume, a total learnt late)."""
        if self._p is not None:
            kw = {"completed": completed} if completed is not None else {}
            if total is not None:
                kw["total"] = total
            self._p.update(self._id, **kw)

    def remove(self) -> None:
        if self._p is not None:
            self._p.remove_task(self._id)
