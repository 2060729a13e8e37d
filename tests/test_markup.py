"""YAML, TOML and JSON parsed within limits (core/markup.py): nesting depth, documents that contain
themselves, aliases that expand to millions of values; each one line naming the file."""

import json

import pytest

from ptrag.core.config import parse_set, read_yaml
from ptrag.core.data.split import read_split_spec
from ptrag.core.errors import ConfigError, DataError
from ptrag.core.files import read_json
from ptrag.core.markup import MAX_DEPTH, MAX_VALUES, load_json, load_toml, load_yaml, measure


def nested(depth):
    return "[" * depth + "]" * depth


def test_measure_counts_depth_and_expanded_values():
    shared = [1, 2, 3]
    assert measure(5) == (0, 1)
    assert measure({"a": [1, {"b": 2}]}) == (3, 5)
    assert measure([shared, shared]) == (2, 9)  # a shared part counts where it appears, as a walker sees it
    loop: list = [1]
    loop.append(loop)
    assert measure({"x": loop}) is None


def test_depth_at_the_limit_is_read_and_one_more_is_refused():
    assert load_json(nested(MAX_DEPTH), "f.json") is not None
    with pytest.raises(ConfigError, match=rf"^f.json: nested {MAX_DEPTH + 1} levels deep .*more than the {MAX_DEPTH}"):
        load_json(nested(MAX_DEPTH + 1), "f.json")


@pytest.mark.parametrize("load, text", [
    (load_yaml, f"a: {nested(5000)}"), (load_toml, f"a = {nested(5000)}"), (load_json, nested(5000)),
    (load_yaml, "a:\n" + "".join(" " * i + "- \n" for i in range(1, 3000))),
])
def test_a_parser_recursing_too_deep_is_one_line(load, text):
    with pytest.raises(DataError, match="^x: nested too deeply to parse"):
        load(text, "x", DataError)


def test_a_billion_laughs_is_refused_without_expanding_it():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]  # 10**10 values
    with pytest.raises(ConfigError, match=rf"holds [\d,]{{14,}} values once its YAML aliases.*than the {MAX_VALUES:,}"):
        load_yaml("\n".join(lines), "bomb.yaml")  # counted over its 10 distinct lists: walking them would not end


def test_every_reader_of_user_files_applies_the_limits(tmp_path):
    (tmp_path / "c.yaml").write_text(f"preset: x\nextra: {nested(5000)}\n")
    with pytest.raises(ConfigError, match="c.yaml: nested too deeply"):
        read_yaml(tmp_path / "c.yaml")
    for suffix, text in ((".toml", f"[training]\nx = {nested(5000)}\n"), (".yaml", "training: &t [1, *t]\n")):
        (tmp_path / f"s{suffix}").write_text(text)
        with pytest.raises(DataError, match=f"s{suffix}: (nested too deeply|contains itself)"):
            read_split_spec(tmp_path / f"s{suffix}")
    with pytest.raises(ConfigError, match="--set train.steps: nested too deeply"):
        parse_set(f"train.steps={nested(5000)}")
    (tmp_path / "r.json").write_text(json.dumps({"a": 1})[:-1] + f', "b": {nested(5000)}}}')
    assert read_json(tmp_path / "r.json") is None  # a run folder's record that cannot be read: as if absent


def test_ordinary_files_are_unchanged():
    assert load_yaml("a: [1, {b: 2}]\nc: &x [1]\nd: *x\n", "f") == {"a": [1, {"b": 2}], "c": [1], "d": [1]}
    assert load_toml('[x]\ny = [[1, 2], ["a"]]\n', "f") == {"x": {"y": [[1, 2], ["a"]]}}
    assert parse_set("train.steps=12") == (["train", "steps"], 12)
