"""Shared CLI plumbing: consoles and turning ptrag errors into one clear line."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ptrag.core.errors import PtragError

F = TypeVar("F", bound=Callable[..., Any])


def console() -> Console:
    # created per call so test runners that swap sys.stdout capture the output
    return Console(file=sys.stdout, soft_wrap=True, highlight=False)


def error_console() -> Console:
    return Console(file=sys.stderr, soft_wrap=True, highlight=False)


def fail(message: str, code: int = 1) -> "typer.Exit":
    error_console().print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    return typer.Exit(code)


def friendly_errors(func: F) -> F:
    """A PtragError (bad config, data, plugin) exits 1 with its one-line message, no traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PtragError as exc:
            raise fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]
