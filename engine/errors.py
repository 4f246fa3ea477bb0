"""The one exception type for expected, user-facing failures.

Anything raised as `IsrfError` is a problem with the user's input (a file, a config,
a request) and is reported as one line naming the problem, without a traceback.
Everything else is a bug and keeps its traceback.
"""


class IsrfError(Exception):
    """A problem with the user's input: the message names the file/key and the problem."""


class Cancelled(IsrfError):
    """A long operation was cancelled by the user; what was saved before stays valid."""
