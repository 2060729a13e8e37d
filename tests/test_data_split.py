"""STATE TOML and YAML split files, unknown names reported, and `ptrag data split`'s TOML."""

import logging

import pytest

from ptrag.core.config import DataConfig
from ptrag.core.data.loading import load_screen
from ptrag.core.data.split import random_fewshot_split, read_split, split_to_toml
from ptrag.core.errors import DataError


@pytest.fixture(scope="module")
def data():
    return load_screen(DataConfig(synth_preset="tiny"))


def test_state_toml_fewshot_as_published(tmp_path, data, caplog):
    k562 = sorted(p for p, c in data.groups if c == "k562")
    path = tmp_path / "split.toml"
    path.write_text(f'''
[datasets]
replogle = "/data/replogle/"

[training]
replogle = "train"

[zeroshot]

[fewshot]

[fewshot."replogle.k562"]
val = ["{k562[0]}"]
test = ["{k562[0]}", "{k562[1]}", "{k562[2].lower()}", "AARS"]
''')
    with caplog.at_level(logging.WARNING, logger="ptrag.data"):
        split = read_split(path, data)
    assert split.test == sorted((p, "k562") for p in k562[:3])
    assert split.val == [(k562[0], "k562")]
    assert not set(split.train) & set(split.test) and len(split.train) == len(data.groups) - 3
    assert any("1 of 4 test perturbation(s) of k562 are not in the data (first: AARS)" in n for n in split.notes)
    assert split.drops == [{"reason": "named by the split but not in the data (k562)", "groups": {"test": 1},
                            "perturbations": 1, "first": ["AARS"]}]
    assert any("in both val and test" in n for n in split.notes)
    assert any("AARS" in r.message for r in caplog.records)


def test_state_toml_zeroshot_holds_out_a_line(tmp_path, data):
    path = tmp_path / "z.toml"
    path.write_text('[datasets]\nreplogle = "/x"\n[training]\nreplogle = "train"\n'
                    '[zeroshot]\n"replogle.rpe1" = "test"\n"replogle.hepg2" = "val"\n')
    split = read_split(path, data)
    assert {c for _, c in split.test} == {"rpe1"} and all(c == "k562" for _, c in split.train)
    assert len(split.test) == sum(1 for _, c in data.groups if c == "rpe1")
    assert any("cell line 'hepg2', which the data lacks" in n for n in split.notes)


def test_yaml_split_same_layout_and_bare_cell_line(tmp_path, data):
    rpe1 = sorted(p for p, c in data.groups if c == "rpe1")
    path = tmp_path / "s.yaml"
    path.write_text(f"fewshot:\n  rpe1:\n    test: [{rpe1[0]}, {rpe1[1]}]\n")
    split = read_split(path, data)
    assert split.test == [(rpe1[0], "rpe1"), (rpe1[1], "rpe1")] and split.val == [] and split.notes == []


def test_bad_split_files(tmp_path, data):
    (tmp_path / "a.toml").write_text("[fewshot\n")
    with pytest.raises(DataError, match="not valid TOML"):
        read_split(tmp_path / "a.toml", data)
    (tmp_path / "b.toml").write_text('[zeroshot]\n"x.k562" = "train"\n')
    with pytest.raises(DataError, match=r"expected \"val\" or \"test\""):
        read_split(tmp_path / "b.toml", data)
    (tmp_path / "c.toml").write_text('[datasets]\na = "1"\nb = "2"\n')
    with pytest.raises(DataError, match="names several datasets"):
        read_split(tmp_path / "c.toml", data)
    with pytest.raises(DataError, match="split file not found"):
        read_split(tmp_path / "none.toml", data)


def test_written_toml_round_trips(tmp_path, data):
    split = random_fewshot_split(data, seed=3, holdout_context="rpe1")
    path = tmp_path / "w.toml"
    path.write_text(split_to_toml(split, "screen", "/data"))
    again = read_split(path, data)
    assert again.test == split.test and again.val == split.val and sorted(again.train) == sorted(split.train)
    assert random_fewshot_split(data, seed=3, holdout_context="rpe1").test == split.test
    with pytest.raises(DataError, match="no cell line 'nope' to hold out; cell lines: k562, rpe1"):
        random_fewshot_split(data, seed=3, holdout_context="nope")


def test_without_perts_reports():
    from ptrag.core.data.split import Split

    s = Split(train=[("A", "x"), ("B", "x")], test=[("A", "y"), ("B", "y")], description="two lines")
    s = s.without_perts({"A", "Q"}, "without a gene embedding")  # Q is in no group: not counted
    assert s.train == [("B", "x")] and s.test == [("B", "y")]
    assert s.notes == ["dropped 2 group(s) of 1 perturbation(s) without a gene embedding (first: A)"]
    assert s.drops == [{"reason": "without a gene embedding", "groups": {"train": 1, "val": 0, "test": 1},
                        "perturbations": 1, "first": ["A"]}]
    assert s.summary() == ("two lines; dropped 2 group(s) without a gene embedding (1 test; first: A); "
                           "left: 1 train / 0 val / 1 test groups")
    assert s.without_perts({"Q"}, "whatever") is s
