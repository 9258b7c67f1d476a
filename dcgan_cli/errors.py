"""The one exception type a user sees.

Library code raises `DcganError` with a message that says what went wrong and
what to do about it; `cli.py` prints it as a single `Error: ...` line and exits 1.
Anything else escaping is a bug and keeps its traceback.
"""


class DcganError(Exception):
    """A problem the user can fix; the message names the fix."""


class UsageError(DcganError):
    """Options that contradict each other or are malformed: `cli.py` reports it as a usage error (exit 2).

    `option` names the command-line option at fault (e.g. "--seeds"), for the message.
    """

    def __init__(self, message: str, option: str):
        super().__init__(message)
        self.option = option


class TrainingInterrupted(Exception):
    """Ctrl-C / SIGTERM stopped a trainer after a checkpoint; the message says how to resume (exit 130).

    Not a DcganError: nothing went wrong, and the CLI prints it without "Error:".
    """
