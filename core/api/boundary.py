"""The API's one error path: every user-facing problem leaves as a one-line :class:`PtragError`.

Filesystem errors become PtragError with the path and the system's words; a run interrupted by
Ctrl-C leaves as :class:`RunInterrupted` (a KeyboardInterrupt) that says how to resume it; a
``sys.exit`` from code ptrag calls is an error, never a quiet success.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

from ..errors import PtragError, os_error_message

F = TypeVar("F", bound=Callable[..., Any])
Log = Callable[[str], None]


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (or a simulated crash); its message says how to continue it."""


def one_error(func: F) -> F:
    """PtragError messages on one line; filesystem errors as PtragError, as the CLI shows them."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PtragError as exc:
            exc.args = (" ".join(str(exc).split()),)
            raise
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise
            raise PtragError(os_error_message(exc)) from None
        except SystemExit as exc:  # plugin calls are fenced (components/fence.py): this came from elsewhere
            raise PtragError(f"{func.__name__} was ended by sys.exit({exc.code!r}) from code outside ptrag (a "
                             "plugin's method ptrag does not fence, or a callback); nothing was finished") from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def threads_kept() -> Iterator[None]:
    """A run sets torch's CPU threads (``train.threads``); the caller's session keeps its own."""
    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_log(log: Log | None) -> Log:
    """Progress and notes go to ``log`` (e.g. ``print``); by default to the ``ptrag`` logger at INFO."""
    return log if log is not None else logging.getLogger("ptrag").info
