"""Shared CLI plumbing: consoles and one error path that turns every user-facing problem into one
line (``error: ...``) without a traceback.

- ptrag's own errors (:class:`PtragError`: bad config, data, plugin, run folder) and filesystem
  errors (a file where a folder should be, no permission) exit 1;
- usage errors (an unknown option, a value out of range) exit 2 with click's message and a
  pointer to ``--help`` (:class:`OneLineErrors`);
- every message is escaped before rich renders it, so a path like ``screen[red].h5ad`` prints as
  it is and ``[/]`` cannot crash the output;
- warnings (a library's included) are one line each, once per command, in ptrag's words where
  ptrag knows what they mean (:func:`warnings_as_lines`); ptrag's logged notes are ``note:`` lines.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape as _escape
from typer.core import TyperGroup

from ptrag.core import api
from ptrag.core.api import DEVICES, PtragError, os_error_message

F = TypeVar("F", bound=Callable[..., Any])
#: click's base exception, whichever click typer uses (recent typer vendors its own copy)
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _other_rank() -> bool:
    """Under torchrun, only rank 0 talks (every rank raises the same one-line errors)."""
    return not api.is_main_process()


def console() -> Console:
    # created per call so test runners that swap sys.stdout capture the output
    return Console(file=sys.stdout, soft_wrap=True, highlight=False, emoji=False, quiet=_other_rank())


def error_console() -> Console:
    return Console(file=sys.stderr, soft_wrap=True, highlight=False, emoji=False, quiet=_other_rank())


def escape(text: Any) -> str:
    """User-supplied text (paths, names, messages) made safe inside rich markup."""
    return _escape(str(text))


def one_line(message: Any) -> str:
    return " ".join(str(message).split())


def check_device(device: str) -> str:
    """``--device`` must name a device kind (torch would raise deep inside otherwise)."""
    if device not in DEVICES:
        raise typer.BadParameter(f"{device!r} is not one of {', '.join(DEVICES)}", param_hint="'--device'")
    return device


def fail(message: str, code: int = 1) -> typer.Exit:
    error_console().print(f"[bold red]error:[/] {escape(one_line(message))}", markup=True, highlight=False)
    return typer.Exit(code)


def write_output(path: Path, write: Callable[[Path], Any], flag: str = "-o") -> Path:
    """Write a user-named output file whole or not at all (temporary name, then rename), with a
    filesystem failure as one line naming the option and the file (and the folders made for it gone).
    The file is new: ptrag never writes over a file, nor into a folder that ptrag marked."""
    api.require_new_file(path, flag)
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]  # leaf first
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return api.atomic_write(path, write)
    except OSError as exc:
        for folder in made:  # the folders made for it go too, if nothing else came into them
            with contextlib.suppress(OSError):
                folder.rmdir()
        reason = os_error_message(exc, with_path=False)  # the message names the file already
        raise api.DataError(f"{flag} {path}: cannot write the file ({reason})") from None


def friendly_errors(func: F) -> F:
    """A PtragError (bad config, data, plugin, run folder) or a filesystem error exits 1 with one
    line, no traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except api.RunInterrupted as exc:
            raise fail(str(exc), 130) from None
        except PtragError as exc:
            raise fail(str(exc)) from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # output piped into `head`: exit quietly, as click does
                raise
            raise fail(os_error_message(exc)) from None

    return wrapper  # type: ignore[return-value]


#: libraries that log warnings of their own (matplotlib: its cache folder, its font cache)
LIBRARY_LOGGERS = ("matplotlib",)


class _Shown:
    """A command's warnings, each once, one line on stderr in ptrag's words (``api.warning_line``):
    Python warnings and what :data:`LIBRARY_LOGGERS` log, never a library's raw two-line output."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def line(self, shown: tuple[str, str] | None) -> None:
        if shown is not None and shown[0] not in self.seen:
            self.seen.add(shown[0])
            error_console().print(one_line(shown[1]), markup=False, highlight=False)

    def warning(self, message: Any, category: type, filename: str, lineno: int, *rest: Any) -> None:
        self.line(api.warning_line(message, category, filename, lineno))


class _LibraryLog(logging.Handler):
    def __init__(self, shown: _Shown) -> None:
        super().__init__(logging.WARNING)
        self.shown = shown

    def emit(self, record: logging.LogRecord) -> None:
        text = one_line(record.getMessage())
        known = api.library_note(text)
        self.shown.line((f"warning: {record.name}: {text}",) * 2 if known is None else
                        None if known[1] is None else (known[0], known[1]))


@contextlib.contextmanager
def warnings_as_lines() -> Iterator[None]:
    """For one command: warnings shown by :class:`_Shown` (Python's filters stay as they are; each
    command starts afresh, so a warning shows again in the next command of the same process)."""
    shown = _Shown()
    handler = _LibraryLog(shown)
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    with warnings.catch_warnings():
        warnings.showwarning = shown.warning
        for logger in loggers:
            logger.addHandler(handler)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeHandler(handler)


class _NoteHandler(logging.Handler):
    """ptrag's logged notes (dropped groups, a missing batch column, split names the data lacks)
    as ``note: ...`` lines on the current stderr, once each, escaped like everything else."""

    def emit(self, record: logging.LogRecord) -> None:
        error_console().print(f"note: {one_line(record.getMessage())}", markup=False, highlight=False)


def show_notes() -> None:
    """Route the ``ptrag`` logger's warnings to :class:`_NoteHandler` (idempotent)."""
    logger = logging.getLogger("ptrag")
    if not any(isinstance(h, _NoteHandler) for h in logger.handlers):
        logger.addHandler(_NoteHandler(logging.WARNING))  # a handler: Python's last resort stays silent


class OneLineErrors(TyperGroup):
    """The root command: usage errors (unknown option, bad value) as one line, exit 2."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        show_notes()
        with warnings_as_lines():
            return self._main(*args, standalone_mode=standalone_mode, **kwargs)

    def _main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: show its help as usual
                return super().main(*args, standalone_mode=True, **kwargs)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            error_console().print(f"[bold red]error:[/] {escape(one_line(exc.format_message()))}{escape(hint)}",
                                  highlight=False)
            sys.exit(exc.exit_code)
        except typer.Abort:
            error_console().print("[bold red]error:[/] aborted", highlight=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)
