"""Bad-input cases of plugins that reach beyond their call (issue 26, part 3): a metric that edits
its arrays in place, a retriever, selector or generator that edits its inputs, plugin code that
calls ``sys.exit`` or raises ``KeyboardInterrupt`` itself, a plugin that prints. Each is one line
naming the plugin and its package; a plugin's print goes to stderr (core/components/fence.py).

The components come from tests/fixtures/misbehaving and tests/fixtures/noisy (``ptrag-noisy``
prints at import, in its hook, factory and metric; ``ptrag-noisy-exit`` calls sys.exit(0) at import).
"""

from __future__ import annotations

from pathlib import Path

from .case import PM, TINY, Case

NM = ["--preset", "neighbour-mean", *TINY]
GEN = [*NM, "--selector", "uniform-ok"]
SEL = [*NM, "--generator", "uses-selection"]
MISBEHAVING = "(plugin misbehaving, package ptrag-misbehaving 0.1.0)"
EXITS = "a plugin must raise an exception, never end the process"


def _bad(id: str, args: list[str], expect: str, why: str = "") -> Case:
    return Case(id, args, expect, plugins="misbehaving", why=why)


CASES = [
    # ---------------------------------------------------------------- inputs changed in place
    _bad("plugin-metric-writes-into-pred", ["run", *PM, "--set", "metrics=[mse, writes-pred, pearson-delta]",
                                            "--out", "{new}"],
         f"metric 'writes-pred' {MISBEHAVING}: compute on CCT7 in rpe1 failed (ValueError: output array is "
         "read-only; a metric's pred, real and ctrl are read-only",
         why="changed pearson-delta by up to 1.03 and predictions.h5ad"),
    _bad("plugin-set-metric-writes-into-reals", ["run", *PM, "--set", "metrics=[mse, writes-set]", "--out",
                                                 "{new}"],
         "compute_set on cell line rpe1 failed (ValueError: assignment destination is read-only"),
    _bad("plugin-retriever-normalises-keys", ["run", *NM, "--retriever", "normalises-keys", "--out", "{new}"],
         f"retriever 'normalises-keys' {MISBEHAVING} broke its contract: build changed its input keys in place",
         why="the keys are the candidates' features"),
    _bad("plugin-retriever-clears-exclude", ["run", *NM, "--retriever", "clears-exclude", "--out", "{new}"],
         "search returned an excluded entry: query CCT7 in rpe1 got its gene's entry in k562",
         why="emptied its exclusion lists, then the check read the emptied lists"),
    _bad("plugin-selector-edits-scores", ["run", *SEL, "--selector", "edits-scores", "--out", "{new}"],
         "broke its contract: forward changed its input inputs.scores in place",
         why="the stage-1 scores of retrieval.csv"),
    _bad("plugin-generator-edits-cells", ["run", *GEN, "--generator", "edits-cells", "--out", "{new}"],
         "forward changed its input inputs.batch.ctrl in place"),
    _bad("plugin-generator-edits-database", ["run", *GEN, "--generator", "edits-database", "--out", "{new}"],
         "fit changed its input database.response in place", why="the responses are the candidates' features"),
    # ---------------------------------------------------------------- exits and interrupts
    _bad("plugin-factory-exits", ["run", *NM, "--retriever", "factory-exits", "--out", "{new}"],
         f"its factory failed (it called sys.exit(3); {EXITS})"),
    _bad("plugin-retriever-exits", ["run", *NM, "--retriever", "exits-in-search", "--out", "{new}"],
         f"search failed (it called sys.exit(0); {EXITS})", why="ended the run with exit 0 and no metrics.json"),
    _bad("plugin-generator-exits", ["run", *GEN, "--generator", "exits-in-forward", "--out", "{new}"],
         f"forward failed (it called sys.exit(0); {EXITS})"),
    _bad("plugin-metric-exits", ["run", *PM, "--set", "metrics=[mse, exits-metric]", "--out", "{new}"],
         f"compute on CCT7 in rpe1 failed (it called sys.exit(0); {EXITS})"),
    _bad("plugin-generator-raises-keyboardinterrupt", ["run", *GEN, "--generator", "interrupts", "--out", "{new}"],
         "forward failed (it raised KeyboardInterrupt though nobody pressed Ctrl-C",
         why="was taken for Ctrl-C: exit 130 and a resume hint"),
    Case("plugin-exits-at-import", ["plugins"], "noisy-exit (ptrag-noisy-exit 0.1.0): import failed (it called "
         "sys.exit(0)", code=0, plugins="noisy", why="ended ptrag plugins with exit 0 and no table"),
    # ---------------------------------------------------------------- prints
    Case("plugins-json-with-a-printing-plugin", ["plugins", "--json"], '"plugin": "noisy"', code=0, plugins="noisy",
         why="the plugin's prints made the JSON invalid (tests/test_fence.py parses it)"),
    Case("run-with-a-printing-metric", ["run", *PM, "--set", "metrics=[mse, chatty]", "--out", "{new}"],
         "pert-mean: 9 held-out perturbations", code=0, plugins="noisy",
         why="its prints go to stderr; the run folder is still the last line on stdout"),
]


def prepare(root: Path, env: dict[str, str]) -> None:
    """Nothing to prepare: the components are in tests/fixtures."""
