"""The checks on what components return (core/components/guards.py), one rule per test, and the
notes a run prints where a metric has no value or a baseline cannot be what its name says."""

from __future__ import annotations

import importlib
import logging
import math
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from ptrag.cli.common import warnings_as_lines
from ptrag.core.components.fence import FencedError
from ptrag.core.components.guards import (
    ContractError,
    calling,
    check_encoding,
    check_generation,
    check_metric_value,
    check_retrieval,
    check_selection,
    check_set_values,
)
from ptrag.core.errors import DataError
from ptrag.core.evaluation.aggregate import aggregate, undefined_notes
from ptrag.core.interfaces import CellEncoding, EvidenceWeights, Metric, RetrievalResult, SelectorOutput
from ptrag.core.progress import library_note, warning_line
from ptrag.core.runs.requests import warn_no_other_line

LABEL = "retriever 'x' (plugin p, package ptrag-p 1.0)"
INF = float("-inf")


def result(scores, ids) -> RetrievalResult:
    return RetrievalResult(torch.tensor(scores, dtype=torch.float32), torch.tensor(ids, dtype=torch.long))


GOOD = result([[0.9, 0.5, INF], [0.8, 0.8, 0.1]], [[2, 0, -1], [1, 3, 0]])


def fails(match: str):
    return pytest.raises(ContractError, match=match)


# --------------------------------------------------------------------------- retrievers


def test_a_result_that_keeps_the_contract_passes():
    check_retrieval(GOOD, 2, 3, 4, [[1], [2]], LABEL)
    check_retrieval(result(np.zeros((2, 0)), np.zeros((2, 0))), 2, 0, 4, None, LABEL)  # k=0: [Q, 0]
    check_retrieval(GOOD, 2, 3, 4, [[-1], []], LABEL)  # -1 in exclude means "no own entry"


@pytest.mark.parametrize("ids,match", [
    ([[2, 7, -1], [1, 3, 0]], r"search returned id 7 for 4 database entries \(query a\); ids must be in \[-1, 4\)"),
    ([[2, -2, -1], [1, 3, 0]], "returned id -2"),
    ([[2, 0, -1], [1, 3, 3]], "id 3 twice for query b"),
])
def test_ids_outside_the_database_or_twice(ids, match):
    with fails(match):
        check_retrieval(result(GOOD.scores.tolist(), ids), 2, 3, 4, None, LABEL, name="ab".__getitem__)


def test_another_number_of_columns_or_rows():
    with fails(r"search returned 2 columns for k=3 \(ids \[2, 2\]\)"):
        check_retrieval(RetrievalResult(GOOD.scores[:, :2], GOOD.ids[:, :2]), 2, 3, 4, None, LABEL)
    with fails(r"ids of shape \[1, 3\] for 2 queries and k=3"):
        check_retrieval(RetrievalResult(GOOD.scores[:1], GOOD.ids[:1]), 2, 3, 4, None, LABEL)


def test_types_and_dtypes():
    with fails("search returned tuple, not a RetrievalResult"):
        check_retrieval((GOOD.scores, GOOD.ids), 2, 3, 4, None, LABEL)
    with fails("scores as ndarray and ids as Tensor; both must be torch tensors"):
        check_retrieval(RetrievalResult(GOOD.scores.numpy(), GOOD.ids), 2, 3, 4, None, LABEL)
    with fails("ids of dtype torch.float32; ids must be integers"):
        check_retrieval(RetrievalResult(GOOD.scores, GOOD.ids.float()), 2, 3, 4, None, LABEL)
    with fails("scores of dtype torch.int64; scores must be floats"):
        check_retrieval(RetrievalResult(GOOD.ids.clone(), GOOD.ids), 2, 3, 4, None, LABEL)
    check_retrieval(RetrievalResult(GOOD.scores.double(), GOOD.ids.int()), 2, 3, 4, None, LABEL)  # any width


def test_padding_last_and_scored_minus_infinity():
    with fails("padding must come last"):
        check_retrieval(result([[0.9, INF, 0.5], [0.8, 0.8, 0.1]], [[2, -1, 0], [1, 3, 0]]), 2, 3, 4, None, LABEL)
    with fails(r"score 0.0 for padding \(query 0\); padding \(id -1\) must score -inf"):
        check_retrieval(result([[0.9, 0.5, 0.0], [0.8, 0.8, 0.1]], [[2, 0, -1], [1, 3, 0]]), 2, 3, 4, None, LABEL)


def test_candidate_scores_finite_and_sorted():
    with fails("score nan for candidate 0"):
        check_retrieval(result([[0.9, math.nan, INF], [0.8, 0.8, 0.1]], GOOD.ids.tolist()), 2, 3, 4, None, LABEL)
    with fails(r"out of order \(score 0.1 before 0.8\); rows must be sorted by score, highest first"):
        check_retrieval(result([[0.9, 0.5, INF], [0.8, 0.1, 0.8]], GOOD.ids.tolist()), 2, 3, 4, None, LABEL)
    # float rounding between two near-equal scores is not disorder
    check_retrieval(result([[0.9, 0.5, INF], [0.8, 0.80001, 0.1]], GOOD.ids.tolist()), 2, 3, 4, None, LABEL)


def test_an_excluded_entry_is_named_in_words():
    with fails(r"query 1 got id 3; an id in exclude\[q\] must never come back"):
        check_retrieval(GOOD, 2, 3, 4, [[1], [3]], LABEL)
    with fails("query G in L got its own entry"):
        check_retrieval(GOOD, 2, 3, 4, [[], [0, 3]], LABEL, explain=lambda row, entry: "query G in L got its own entry")


# --------------------------------------------------------------------------- selectors


def selection(weights, context=None, **more) -> SelectorOutput:
    return SelectorOutput(context=context, weights=weights, **more)


MASK = torch.tensor([[True, True, False]])  # B=1, K=3: the last candidate is padding


def test_a_selection_that_keeps_the_contract_passes():
    w = torch.tensor([[[0.5, 0.5, 0.0]] * 2])
    check_selection(selection(w, torch.zeros(1, 2, 4), aux_losses={"l": torch.tensor(0.1)}), 1, 2, 3, 4, MASK, "s")
    check_selection(selection(None), 1, 2, 3, 4, MASK, "s")  # a selector that weighs nothing


def test_weight_on_padding_and_shapes():
    with fails("a padding candidate"):
        check_selection(selection(torch.full((1, 2, 3), 0.3)), 1, 2, 3, 4, MASK, "s")
    check_selection(selection(torch.full((1, 2, 3), 0.3)), 1, 2, 3, 4, MASK, "s", values=False)  # training step
    with fails(r"weights have shape \(1, 3\); expected \[B,S,K\]"):
        check_selection(selection(torch.zeros(1, 3)), 1, 2, 3, 4, MASK, "s")
    with fails(r"context has shape \(1, 2, 5\)"):
        check_selection(selection(None, torch.zeros(1, 2, 5)), 1, 2, 3, 4, MASK, "s")
    with fails(r"evidence.deviation has shape \(3,\)"):
        check_selection(selection(None, evidence=EvidenceWeights(torch.zeros(1, 3), torch.zeros(3))),
                        1, 2, 3, 4, MASK, "s")
    with fails("forward returned tuple, not a SelectorOutput"):
        check_selection((None, None), 1, 2, 3, 4, MASK, "s")


def test_non_finite_selection_and_aux_losses():
    nan = torch.tensor([[[0.5, math.nan, 0.0]] * 2])
    with fails("forward returned weights with NaN or inf values"):
        check_selection(selection(nan), 1, 2, 3, 4, MASK, "s")
    # a trained model's NaN is a divergence, reported by the trainer: not a padding weight either
    check_selection(selection(nan), 1, 2, 3, 4, MASK, "s", values=True, finite=False)
    with fails("auxiliary loss 'l' with NaN"):
        check_selection(selection(None, aux_losses={"l": torch.tensor(math.inf)}), 1, 2, 3, 4, MASK, "s")
    with fails(r"auxiliary loss 'l' is \(2,\), not a scalar tensor"):
        check_selection(selection(None, aux_losses={"l": torch.ones(2)}), 1, 2, 3, 4, MASK, "s", values=False)
    with fails("context with NaN"):
        check_selection(selection(None, torch.full((1, 2, 4), math.nan).to(torch.bfloat16)), 1, 2, 3, 4, MASK, "s")


# --------------------------------------------------------------------------- generators


def test_encoding_and_cells():
    check_encoding(CellEncoding(torch.zeros(2, 3, 4), torch.zeros(2, 4)), 2, 3, 4, "g")
    with fails("encode returned NoneType, not a CellEncoding"):
        check_encoding(None, 2, 3, 4, "g")
    with fails(r"encode returned states \(2, 3, 5\)"):
        check_encoding(CellEncoding(torch.zeros(2, 3, 5), torch.zeros(2, 4)), 2, 3, 4, "g")
    cells = torch.zeros(2, 3, 4)
    check_generation(cells, (2, 3, 4), "g", finite=True)
    with fails(r"forward returned cells of shape \(2, 3, 5\); expected \[B,S,G\] = \(2, 3, 4\)"):
        check_generation(torch.zeros(2, 3, 5), (2, 3, 4), "g")
    with fails("forward returned ndarray"):
        check_generation(np.zeros((2, 3, 4)), (2, 3, 4), "g")
    cells[1, 2, 3] = math.inf
    check_generation(cells, (2, 3, 4), "g")  # values are looked at only where asked
    with fails("forward predicted NaN or inf cells for B in k562"):
        check_generation(cells, (2, 3, 4), "g", finite=True, groups=["A in k562", "B in k562"])


# --------------------------------------------------------------------------- metrics


def test_metric_values():
    assert check_metric_value(np.float32(0.25), "m") == 0.25
    assert check_metric_value(torch.tensor(0.5), "m") == 0.5
    assert check_metric_value(np.array([0.75]), "m") == 0.75
    assert math.isnan(check_metric_value(float("nan"), "m"))  # undefined for this group: allowed
    with fails("compute on G in L returned the text '0.5'"):
        check_metric_value("0.5", "m", "G in L")
    with fails(r"returned 2 values \(shape \(2,\)\)"):
        check_metric_value(np.array([0.1, 0.2]), "m")
    with fails("returned -inf"):
        check_metric_value(-math.inf, "m")
    with fails("returned dict, not a number"):
        check_metric_value({"v": 1}, "m")


def test_set_metric_values():
    assert check_set_values([0.1, math.nan], 2, "m").tolist()[0] == 0.1
    with fails(r"compute_set on cell line L returned 1 values \(shape \(1,\)\) for 2 groups"):
        check_set_values([0.1], 2, "m", "cell line L")
    with fails("for 2 groups"):
        check_set_values(np.zeros((2, 2)), 2, "m")
    with fails("returned inf"):
        check_set_values([0.1, math.inf], 2, "m")


# --------------------------------------------------------------------------- a component's own exception


def test_a_components_exception_becomes_one_line_and_keeps_its_cause():
    component = SimpleNamespace(_ptrag_label=LABEL)
    with pytest.raises(ContractError, match=r"\(plugin p, package ptrag-p 1.0\): search failed \(KeyError: 'q'\)"
                       ) as info:
        with calling(component, "search"):
            raise KeyError("q")
    assert isinstance(info.value.__cause__, KeyError)
    for passes in (DataError("ptrag's own words"), MemoryError()):
        with pytest.raises(type(passes)):
            with calling(component, "search"):
                raise passes


@pytest.fixture
def sigint(monkeypatch):
    """SIGINT set for the test as the test says (a suite started in the background inherits it
    ignored), ptrag's counting handler offered afresh, the process's own handler restored after."""
    import signal

    from ptrag.core.components import fence

    before = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(fence, "_watching", False)
    yield lambda handler: signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGINT, before)


def test_a_plugins_exit_or_own_interrupt_is_its_failure_a_users_ctrl_c_is_not(capsys, sigint):
    import os
    import signal

    sigint(signal.default_int_handler)  # as in a terminal
    component = SimpleNamespace(_ptrag_label=LABEL)
    with pytest.raises(FencedError, match=r"search failed \(it called sys.exit\(0\)"):
        with calling(component, "search"):
            sys.exit(0)
    with pytest.raises(FencedError, match="raised KeyboardInterrupt though nobody pressed Ctrl-C"):
        with calling(component, "search"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt) as info:  # the user's Ctrl-C (a real SIGINT) stops the run as before
        with calling(component, "search"):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
    assert not isinstance(info.value, FencedError)
    with calling(component, "search"):
        print("plugin chatter")
    out, err = capsys.readouterr()
    assert out == "" and err == "plugin chatter\n"  # a plugin's print never reaches stdout


def test_with_sigint_ignored_every_keyboard_interrupt_is_the_plugins(sigint):
    import signal

    sigint(signal.SIG_IGN)  # a background job, nohup, a scheduler: no Ctrl-C can raise
    component = SimpleNamespace(_ptrag_label=LABEL)
    with pytest.raises(FencedError, match="raised KeyboardInterrupt though nobody pressed Ctrl-C"):
        with calling(component, "search"):
            raise KeyboardInterrupt


# --------------------------------------------------------------------------- a third-party package


@pytest.fixture
def misbehaving(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "fixtures" / "misbehaving"))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("ptrag_misbehaving", None)


def test_messages_name_the_package_and_its_version(misbehaving):
    from ptrag.core.components.assembly import build
    from ptrag.core.components.manager import build_manager
    from ptrag.core.config import ComponentChoice
    from ptrag.core.hookspecs import BuildContext

    retriever = build("retriever", ComponentChoice(name="bad-ids"), build_manager(), BuildContext())
    retriever.build(np.eye(4, dtype=np.float32))
    with fails(r"^retriever 'bad-ids' \(plugin misbehaving, package ptrag-misbehaving 0.1.0\) broke its contract: "
               r"search returned id 53 .* \(a bug in the plugin: tell its authors\)$"):
        check_retrieval(retriever.search(np.eye(4, dtype=np.float32), 8), 4, 8, 4, None, retriever._ptrag_label)


# --------------------------------------------------------------------------- undefined metrics


def table(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = [{"pert": f"G{i}", "context": "L", "metric": m, "value": v} for m, vs in values.items()
            for i, v in enumerate(vs)]
    return pd.DataFrame(rows)


class Lower(Metric):
    def compute(self, pred, real, ctrl):
        return 0.0


def test_undefined_groups_are_counted_and_said():
    long = table({"a": [1.0, math.nan, 2.0], "b": [math.nan, math.nan, math.nan], "c": [1.0, 2.0, 3.0],
                  "d": [3.0, math.nan, 1.0]})
    summary = aggregate(long, {name: Lower() for name in "abcd"})
    assert [summary[m]["undefined"] for m in "abcd"] == [1, 3, 0, 1]
    assert [summary[m]["n"] for m in "abcd"] == [2, 0, 3, 2]
    notes = undefined_notes(long)
    assert len(notes) == 2  # a and d share their undefined group: one line
    assert notes[0].startswith("note: a, d are undefined for 1 of 3 group(s) (first: G1 in L;")
    assert notes[0].endswith("their means and intervals cover the other 2 (metrics.json: undefined)")
    assert notes[1].startswith("note: b is undefined for 3 of 3 group(s)") and "it has no mean in this run" in notes[1]
    assert undefined_notes(table({"c": [1.0]})) == []


def test_pearson_is_undefined_for_an_unchanging_real_group_not_for_a_flat_prediction():
    from ptrag.plugins.metrics.de import DEDirection, DEOverlap
    from ptrag.plugins.metrics.expression import PearsonDelta

    ctrl = np.tile(np.arange(6.0), (4, 1))
    changed = ctrl + np.array([1.0, -1.0, 0.5, 0.0, 2.0, 0.0])
    assert math.isnan(PearsonDelta().compute(changed, ctrl, ctrl))  # the real cells do not change
    assert PearsonDelta().compute(ctrl, changed, ctrl) == 0.0  # a prediction of no change
    assert math.isnan(DEOverlap(2).compute(changed, ctrl, ctrl)) and math.isnan(DEDirection(2).compute(changed, ctrl,
                                                                                                        ctrl))
    assert DEOverlap(2).compute(changed, changed, ctrl) == 1.0


# --------------------------------------------------------------------------- gene-other-lines


def test_gene_other_lines_says_when_it_is_pert_mean():
    config = SimpleNamespace(generator=SimpleNamespace(name="gene-other-lines"), preset="gene-other-lines")
    lines = []
    shared = SimpleNamespace(train=[("A", "k562"), ("B", "rpe1")], val=[], test=[("A", "rpe1"), ("C", "rpe1")])
    warn_no_other_line(config, shared, lines.append)
    assert lines == []  # A was measured in k562
    one = SimpleNamespace(train=[("B", "rpe1")], val=[], test=[("A", "rpe1")])
    warn_no_other_line(config, one, lines.append)
    assert "the screen has one cell line (rpe1)" in lines[-1] and "falls back to pert-mean" in lines[-1]
    disjoint = SimpleNamespace(train=[("A", "k562"), ("B", "rpe1")], val=[], test=[("C", "rpe1")])
    warn_no_other_line(SimpleNamespace(generator=config.generator, preset="mine"), disjoint, lines.append)
    assert lines[-1].startswith("warning: generator gene-other-lines (preset mine): none of the 1 held-out")
    warn_no_other_line(SimpleNamespace(generator=SimpleNamespace(name="pert-mean"), preset="x"), one, lines.append)
    assert len(lines) == 2


# --------------------------------------------------------------------------- library warnings


def test_known_library_warnings_in_ptrag_words():
    key, note = library_note(r"Glyph 36816 (\N{CJK UNIFIED IDEOGRAPH-8FD0}) missing from font(s) DejaVu Sans.")
    assert note.startswith("note: figures: the font DejaVu Sans has no glyph") and "(first: 运)" in note
    assert library_note(r"Glyph 20013 (\N{CJK UNIFIED IDEOGRAPH-4E2D}) missing from font(s) DejaVu Sans.")[0] == key
    assert library_note("Variable names are not unique. To make them unique, call `.var_names_make_unique`.") \
        == ("library-0", None)  # ptrag's data check says it itself
    assert library_note("something new") is None
    from ptrag.core.components.adapters import LegacyContractWarning
    assert warning_line("selector 'x' uses ptrag 0.1's contract", LegacyContractWarning, "/a/b.py", 1)[1] == \
        "warning: selector 'x' uses ptrag 0.1's contract"  # ptrag's own: no library file to point at
    line = warning_line("new\n  thing", UserWarning, "/x/site-packages/lib/mod.py", 7)
    assert line == ("UserWarning: new thing", "warning: UserWarning: new thing (lib/mod.py:7)")  # shown, one line


def test_a_command_shows_each_warning_once_and_the_next_command_again(capsys):
    for _ in range(2):
        with warnings_as_lines():
            for char in "中文":
                warnings.warn(f"Glyph 1 (\\N{{CJK UNIFIED IDEOGRAPH-{ord(char):X}}}) missing from font(s) F.",
                              UserWarning, stacklevel=1)
            warnings.warn("an odd thing", UserWarning, stacklevel=1)
            warnings.warn("an odd thing", UserWarning, stacklevel=1)
        err = capsys.readouterr().err.splitlines()
        assert err[0].startswith("note: figures: the font F has no glyph") and "(first: 中)" in err[0]
        assert len(err) == 2 and err[1].startswith("warning: UserWarning: an odd thing (")


def test_matplotlib_logged_warnings_become_notes(capsys):
    log = logging.getLogger("matplotlib")
    with warnings_as_lines():
        log.warning("/home/u/.config/matplotlib is not a writable directory")
        log.warning("Matplotlib created a temporary cache directory at /tmp/matplotlib-x because there was an issue "
                    "with the default path (/home/u/.config/matplotlib); it is highly recommended to set the "
                    "MPLCONFIGDIR environment variable to a writable directory")
        log.warning("findfont: Font family 'Nope' not found.")
    err = capsys.readouterr().err.splitlines()
    assert err == ["note: figures: matplotlib has no writable cache folder (/home/u/.config/matplotlib), so every "
                   "ptrag report rebuilds its font cache in a temporary folder (slow); set MPLCONFIGDIR to a writable "
                   "folder", "warning: matplotlib: findfont: Font family 'Nope' not found."]
    assert not any(type(h).__name__ == "_LibraryLog" for h in log.handlers)  # gone after the command
