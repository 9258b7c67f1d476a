"""The one exception type a user sees.

Library code raises `DcganError` with a message that says what went wrong and
what to do about it; `cli.py` prints it as a single `Error: ...` line and exits 1.
Anything else escaping is a bug and keeps its traceback.
"""


class DcganError(Exception):
    """A problem the user can fix; the message names the fix."""
