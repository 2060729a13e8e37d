"""Errors that the CLI shows as one line, without a traceback, and the Python API raises as
:class:`PtragError` (docs/api.md)."""

import os
import re


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


class TrainingError(PtragError):
    """Training gave no usable weights (it diverged before any finite validation improved on the start)."""


def os_error_message(exc: OSError, *, with_path: bool = True) -> str:
    """``PATH: what went wrong`` for a filesystem error (libraries such as h5py give no path:
    then the system's words for the error number, else the library's own first line);
    ``with_path=False`` for a caller whose message names the file already."""
    where = exc.filename if exc.filename is not None and with_path else ""
    other = f" -> {exc.filename2}" if getattr(exc, "filename2", None) and with_path else ""
    reason = _reason(exc)
    return f"{where}{other}: {reason}" if where else reason


def _reason(exc: OSError) -> str:
    """The system's words for the error; HDF5 buries them in its message (``errno = 28``)."""
    if isinstance(exc.errno, int) and exc.errno > 0:  # h5py puts its long message where strerror goes
        return os.strerror(exc.errno)
    if exc.strerror:
        return exc.strerror
    text = " ".join(str(exc.args[0] if len(exc.args) == 1 else exc).split())  # the library's words, not "[Errno None]"
    buried = re.search(r"errno = (\d+)", text)
    if buried and int(buried.group(1)) > 0:
        return os.strerror(int(buried.group(1)))
    return text or type(exc).__name__
