"""ptrag's engine: interfaces, plugin manager, configuration, data, training and evaluation.

`ptrag.core` never imports `ptrag.plugins`; built-in components reach it through the same
pluggy hooks as third-party packages.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ptrag")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
