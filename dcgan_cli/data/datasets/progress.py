"""Progress bars and notes for downloads and extraction, on stderr (rich).

The download machinery only calls `Ui.bar(...)` and `Ui.note(...)`, so it runs
the same with bars (a terminal), plain lines (a log file: rich prints the final
state of each bar) or no bars at all (`quiet=True`; notes such as retries still show).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from dcgan_cli.progress import Bars, Task


class Ui:
    def __init__(self, quiet: bool = False):
        from rich.console import Console

        self.quiet = quiet
        self.console = Console(stderr=True, highlight=False)

    @contextmanager
    def bar(self, label: str, total: int | None, unit: str = "bytes") -> Iterator[Task]:
        """A progress bar: `unit="bytes"` shows bytes, rate and ETA; `"files"` shows N/M and ETA."""
        with Bars(not self.quiet, console=self.console, unit=unit) as bars:
            yield bars.task(label, total)

    def note(self, message: str) -> None:
        """A line for the user (a retry, a mirror that failed), printed above any live bar, even when quiet."""
        self.console.print(message, markup=False, soft_wrap=True)
