"""The one exception type for expected, user-facing failures.

Anything raised as `IsrfError` is a problem with the user's input (a file, a config,
a request) and is reported as one line naming the problem, without a traceback.
Everything else is a bug and keeps its traceback.
"""

from collections.abc import Iterator
from contextlib import contextmanager


class IsrfError(Exception):
    """A problem with the user's input: the message names the file/key and the problem."""


class Cancelled(IsrfError):
    """A long operation was cancelled by the user; what was saved before stays valid."""


@contextmanager
def where(place: str) -> Iterator[None]:
    """Prefix an IsrfError raised inside with `place` (e.g. which stroke of which file), so
    a message from deep inside names the input it came from. Cancelling keeps its own."""
    try:
        yield
    except Cancelled:
        raise
    except IsrfError as error:
        raise IsrfError(f"{place}: {error}") from None
