"""Plugin code is fenced off from the process that runs it.

Whatever a plugin does at import, in a hook, in its factory or in a method call, three things
stay ptrag's:

- stdout: what plugin code prints goes to stderr, so ``ptrag plugins --json`` and the run folder
  ``ptrag run`` prints last stay machine-readable (text written by C code straight to file
  descriptor 1 is beyond Python's reach);
- the exit: ``sys.exit`` (``SystemExit``) in plugin code is that plugin's failure, one line
  naming it, never a silent end of the run with exit status 0;
- other ``BaseException`` subclasses (``GeneratorExit``, a class of its own) are its failure too;
- Ctrl-C: a ``KeyboardInterrupt`` that plugin code raises itself is its failure too; one that
  comes from the user's Ctrl-C passes unchanged (a run stops and keeps its checkpoint). The two
  are told apart by counting SIGINTs: ptrag puts a handler in front of Python's default one that
  counts and then raises as before. Where SIGINT is ignored (a job started in the background,
  under nohup, by a scheduler) no Ctrl-C can raise, so a KeyboardInterrupt is always the plugin's;
  where another Python handler is in place it cannot be told, and every KeyboardInterrupt is
  taken for the user's, as before; in a thread other than the main one a KeyboardInterrupt never
  comes from a signal, so it is always the plugin's.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from ..errors import PluginError

_received = 0  # SIGINTs seen by :func:`_count_sigint` in this process
_watching = False  # the counting handler is in place (until then each call looks: signal.getsignal costs microseconds)


def _count_sigint(signum: int, frame: Any) -> None:
    global _received
    _received += 1
    signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt, as Python's own handler


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _watch_ctrl_c() -> None:
    """Count SIGINTs from now on (main thread, in front of Python's default handler only; while
    another handler or none is in place, look again next time)."""
    global _watching
    if not _watching and _in_main_thread():
        handler = signal.getsignal(signal.SIGINT)
        if handler is signal.default_int_handler:
            signal.signal(signal.SIGINT, _count_sigint)
        _watching = handler in (signal.default_int_handler, _count_sigint)


def from_the_user(mark: int) -> bool:
    """Whether a KeyboardInterrupt caught now came from a Ctrl-C since ``mark`` (:data:`_received`)."""
    if not _in_main_thread():
        return False
    handler = signal.getsignal(signal.SIGINT)
    if handler in (signal.SIG_IGN, signal.SIG_DFL, None):
        return False  # SIGINT ignored, or it ends the process without an exception: no Ctrl-C raised this
    if handler is not _count_sigint:
        return True  # someone else's handler: it cannot be told, so it is the user's (as before)
    return _received != mark


class FencedError(PluginError):
    """Plugin code tried to end the process (sys.exit, a KeyboardInterrupt of its own)."""


class fenced:  # noqa: N801 (used as a context manager, like contextlib's)
    """Run plugin code (``label``: who, ``what``: the call) with its stdout on stderr, its
    ``SystemExit`` and its own ``KeyboardInterrupt`` raised as :class:`FencedError`. A class, not a
    generator: it wraps every forward of a training step, so it costs about two microseconds."""

    __slots__ = ("label", "what", "mark", "saved")

    def __init__(self, label: str, what: str):
        self.label, self.what = label, what

    def __enter__(self) -> None:
        _watch_ctrl_c()
        self.mark, self.saved = _received, sys.stdout
        if sys.stderr is not None:
            sys.stdout = sys.stderr

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        sys.stdout = self.saved
        if kind is not None and issubclass(kind, SystemExit):
            raise FencedError(f"{self.label}: {self.what} failed (it called sys.exit({exc.code!r}); a plugin must "
                              "raise an exception, never end the process)") from None
        if kind is not None and issubclass(kind, KeyboardInterrupt) and not from_the_user(self.mark):
            raise FencedError(f"{self.label}: {self.what} failed (it raised KeyboardInterrupt though nobody pressed "
                              "Ctrl-C; a plugin must raise an exception, never stop the process)") from None
        if kind is not None and not issubclass(kind, (Exception, KeyboardInterrupt)):
            raise FencedError(f"{self.label}: {self.what} failed (it raised {kind.__name__}: {exc}, which is not an "
                              "Exception; a plugin must raise an exception, never stop the process)") from None
        return False
