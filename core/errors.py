"""Errors that the CLI shows as one line, without a traceback, and the Python API raises as
:class:`PtragError` (docs/api.md)."""

import os


class PtragError(Exception):
    """Base class: a user-facing problem with a message that says what to do."""


class ConfigError(PtragError):
    """The experiment configuration is invalid."""


class UnknownComponentError(ConfigError):
    """A component name that no plugin provides."""


class PluginError(PtragError):
    """A plugin could not be loaded or conflicts with another."""


class PluginConflictError(PluginError):
    """Two plugins offer the same (kind, name)."""


class DataError(PtragError):
    """Input data (a file, a column, a gene) is missing or malformed."""


class RunFolderError(PtragError):
    """A run or output folder that cannot be used as asked (it holds another run, a file, ...)."""


def os_error_message(exc: OSError) -> str:
    """``PATH: what went wrong`` for a filesystem error (libraries such as h5py give no path:
    then the system's words for the error number, else the library's own first line)."""
    where = exc.filename if exc.filename is not None else ""
    other = f" -> {exc.filename2}" if getattr(exc, "filename2", None) else ""
    if where:
        return f"{where}{other}: {exc.strerror or type(exc).__name__}"
    if isinstance(exc.errno, int) and exc.errno > 0:
        return os.strerror(exc.errno)
    return " ".join(str(exc).split()) or type(exc).__name__
