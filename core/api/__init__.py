"""ptrag's Python API, in scverse style: AnnData in, AnnData out; parameters naming columns end in
``_col``/``_key``; results as AnnData and pandas. Reference: docs/api.md; tutorial: docs/tutorial.py.

The command line is a pure caller of this package (``ptrag run`` -> :func:`configure` + :func:`run`,
``ptrag predict`` -> :func:`predict`, ``ptrag plugins`` -> :func:`components`, ...), so both give
the same results from one code path. Every user-facing problem is raised as :class:`PtragError`
(or a subclass) with the CLI's one-line message, filesystem errors included.
"""

from .. import __version__
from ..components.manager import build_manager
from ..errors import ConfigError, DataError, PtragError, os_error_message
from ..evaluation.aggregate import fmt
from ..files import atomic_write, h5ad_bytes, with_room
from ..hookspecs import KINDS
from ..progress import library_note, warning_line
from ..runs.marker import require_new_file
from ..runs.results import RunResult
from . import data, genes, reports
from .boundary import RunInterrupted
from .knockdowns import Knockdowns, predict_knockdowns
from .options import BY_NAME, CONFIG, OVERWRITE, RUN_OPTIONS, SET, Option
from .plugins import builtin_components, components, preset_list, presets
from .predictions import DEVICES, Prediction, Scores, compare, predict, score
from .runs import configure, is_main_process, run, run_comparisons

__all__ = [
    # the Python API (re-exported by ``import ptrag``)
    "configure", "run", "run_comparisons", "predict", "predict_knockdowns", "score", "compare", "components",
    "RunResult", "Prediction", "Knockdowns", "Scores", "PtragError", "RunInterrupted",
    # what the command line needs beyond it
    "__version__", "ConfigError", "DataError", "os_error_message", "fmt", "atomic_write", "with_room", "h5ad_bytes",
    "KINDS", "DEVICES", "RUN_OPTIONS", "BY_NAME", "CONFIG", "SET", "OVERWRITE", "Option", "build_manager",
    "builtin_components", "presets", "preset_list", "is_main_process", "data", "genes", "reports", "warning_line",
    "library_note", "require_new_file",
]
