"""Errors that the CLI shows as one line, without a traceback."""


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
