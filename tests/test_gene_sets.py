"""GMT gene sets: reading, errors, and the co-annotation rates of the retrieval summary."""

import pandas as pd
import pytest

from ptrag.core.data.gene_sets import GeneSets, load_gene_sets, read_gmt, write_gmt
from ptrag.core.errors import DataError
from ptrag.core.runs.trace import retrieval_summary


def test_gmt_round_trip_and_case_insensitive_membership(tmp_path):
    path = write_gmt(tmp_path / "s.gmt", {"ribo": ["RPL4", "RPL3"], "med": {"MED1", "MED14", "rpl3"}},
                     {"ribo": "large\tsubunit"})
    assert path.read_text().splitlines()[0] == "ribo\tlarge subunit\tRPL3\tRPL4"
    sets = read_gmt(path)
    assert len(sets) == 2 and sets.genes == 4  # RPL3 and rpl3 are one gene
    assert sets.shared("rpl3", "RPL4") == {"ribo"} and sets.shared("RPL3", "MED1") == {"med"}
    assert sets.shared("RPL4", "MED1") == frozenset() and not sets.annotated("OR4F5")


@pytest.mark.parametrize("text, message", [
    ("ribo RPL3 RPL4\n", ":1: not a GMT line"),  # spaces, not tabs
    ("ribo\tdesc\n", ":1: not a GMT line"),  # no genes
    ("# comment\n\nribo\t\tRPL3\nribo\t\tRPL4\n", ":4: gene set 'ribo' appears twice"),
    ("# only a comment\n", "no gene sets in the file"),
])
def test_bad_gmt_files_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.gmt"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as err:
        read_gmt(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(DataError, match="not found.*ptrag genes sets"):
        read_gmt(tmp_path / "nope.gmt")


def test_coverage_is_logged_with_the_unannotated_genes(tmp_path):
    path = write_gmt(tmp_path / "s.gmt", {"ribo": ["RPL3", "RPL4"]})
    lines = []
    assert load_gene_sets(None, ["RPL3"], lines.append) is None and not lines
    load_gene_sets(path, ["RPL3", "OR4F5", "RPL4"], lines.append)
    assert "2 of 3 perturbed genes annotated (not: OR4F5)" in lines[0]


def test_summary_rates_of_shared_gene_sets():
    sets = GeneSets.from_mapping({"ribo": ["RPL3", "RPL4", "RPL5"], "mix": ["RPL3", "MED1"], "other": ["PSMA1"]})
    rows = []
    for query in ("RPL3", "OR4F5"):  # OR4F5 is in no set: left out of the rates
        for rank, (cand, w) in enumerate([("RPL4", 1.0), ("PSMA1", 0.0), ("MED1", 1.0), ("PSMA2", 1.0)]):
            rows.append({"pert": query, "context": "rpe1", "rank": rank, "candidate_pert": cand,
                         "candidate_context": "k562", "stage1_score": 0.5, "keep_weight": w})
    s = retrieval_summary(pd.DataFrame(rows), gene_sets=sets)["rpe1"]
    assert s["gene_set_queries"] == 1
    assert s["kept_shared_gene_set"] == pytest.approx(2 / 3)  # RPL4 (ribo), MED1 (mix); not PSMA2
    assert s["candidates_shared_gene_set"] == pytest.approx(2 / 4)
    assert s["weighted_shared_gene_set"] == pytest.approx(2 / 3)
    assert "kept_shared_gene_set" not in retrieval_summary(pd.DataFrame(rows))["rpe1"]


def test_write_gmt_leaves_the_old_file_whole_when_writing_fails(tmp_path):
    path = write_gmt(tmp_path / "s.gmt", {"ribo": ["RPL3", "RPL4"]})
    before = path.read_text()

    def broken():
        yield "MED1"
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_gmt(path, {"ribo": ["RPL3"], "med": broken()})
    assert path.read_text() == before and not list(tmp_path.glob(".*partial*"))
