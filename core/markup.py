"""YAML, TOML and JSON that people write, parsed within limits: nesting depth and expanded size.

The parsers recurse once per level, so a file of a few thousand brackets inside each other ends in
a RecursionError deep inside them, and a document parsed at 900 levels fails later, in whatever
walks it. YAML aliases add two more: an alias inside its own anchor makes a document that contains
itself, and aliases of aliases (the "billion laughs") make a few lines expand to billions of
values. Every file a user hands ptrag (configs, split files, grid files, --set values, run-folder
records) is parsed here, and each of those is one line naming the file. Syntax errors are left to
the callers, whose messages name the line. Two more rules: a file that is not UTF-8 text (a
binary, a UTF-16 export) is one line naming it (:func:`read_text`), and a YAML mapping that gives
one key twice is a syntax error: PyYAML keeps the last silently, so a second ``train:`` section
would replace the first one whole.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, PtragError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: sections, lists and values inside each other; ptrag's own files need fewer than ten
MAX_DEPTH = 32
#: values once YAML aliases are expanded (a split file of a genome-wide screen has about 10,000)
MAX_VALUES = 1_000_000


def _children(value: Any) -> list[Any] | None:
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return None


def measure(root: Any) -> tuple[int, int] | None:
    """(depth, values) of a parsed document, shared parts counted each time they appear (as
    anything that walks it would), in time linear in its distinct parts; None when it contains
    itself."""
    if _children(root) is None:
        return 0, 1
    memo: dict[int, tuple[int, int]] = {}
    path: set[int] = set()  # containers being walked: the current one's ancestors
    todo: list[tuple[Any, bool]] = [(root, False)]
    while todo:
        node, ready = todo.pop()
        kids = _children(node)
        if kids is None or (not ready and id(node) in memo):
            continue
        if ready:
            path.discard(id(node))
            inner = [memo[id(k)] if _children(k) is not None else (0, 1) for k in kids]
            memo[id(node)] = (1 + max((d for d, _ in inner), default=0), 1 + sum(n for _, n in inner))
            continue
        if id(node) in path:
            return None
        path.add(id(node))
        todo.append((node, True))
        todo.extend((k, False) for k in kids)
    return memo[id(root)]


def check_limits(value: Any, where: str, error: type[PtragError] = ConfigError) -> Any:
    """``value`` if it is within :data:`MAX_DEPTH` and :data:`MAX_VALUES`, else one line naming ``where``."""
    size = measure(value)
    if size is None:
        raise error(f"{where}: contains itself (a YAML alias *name inside the &name it refers to); remove the alias")
    depth, values = size
    if depth > MAX_DEPTH:
        raise error(f"{where}: nested {depth} levels deep (sections, lists or brackets inside each other), more "
                    f"than the {MAX_DEPTH} ptrag reads; check its brackets and indentation")
    if values > MAX_VALUES:
        raise error(f"{where}: holds {values:,} values once its YAML aliases (*name) are expanded, more than the "
                    f"{MAX_VALUES:,} ptrag reads; write the values out or remove the aliases")
    return value


def read_text(path: str | Path, error: type[PtragError] = ConfigError, what: str = "a text file") -> str:
    """A file people write (a config, a split, a grid, a run's record) as text, or one line naming
    it when it is not UTF-8 (a binary file, a spreadsheet, a UTF-16 export)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); "
                    f"expected {what}; save it as UTF-8") from None


class _UniqueKeys(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping giving one key twice (merge keys ``<<`` may
    still be overridden, as YAML intends)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line)
            except TypeError:  # an unhashable key: the constructor words it
                continue
            if first != key_node.start_mark.line:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"the key {key!r} is given twice (first on line {first + 1}); the second would silently replace "
                    "the first: keep one", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _too_deep(where: str, error: type[PtragError]) -> PtragError:
    return error(f"{where}: nested too deeply to parse (sections, lists or brackets inside each other, more than "
                 f"the {MAX_DEPTH} levels ptrag reads); check its brackets and indentation")


def _parsed(parse: Callable[[str], Any], text: str, where: str, error: type[PtragError]) -> Any:
    """``parse(text)`` within the limits: too deep for the parser's recursion is one line too."""
    try:
        value = parse(text)
    except RecursionError:
        raise _too_deep(where, error) from None
    return check_limits(value, where, error)


def load_yaml(text: str, where: str, error: type[PtragError] = ConfigError) -> Any:
    """``yaml.safe_load`` within the limits, each key once (``yaml.YAMLError`` is the caller's to word)."""
    return _parsed(lambda t: yaml.load(t, Loader=_UniqueKeys), text, where, error)  # noqa: S506 (a SafeLoader)


def load_toml(text: str, where: str, error: type[PtragError] = ConfigError) -> Any:
    """``tomllib.loads`` within the limits (``TOMLDecodeError`` is the caller's to word)."""
    return _parsed(tomllib.loads, text, where, error)


def load_json(text: str, where: str, error: type[PtragError] = ConfigError) -> Any:
    """``json.loads`` within the limits (``ValueError`` is the caller's to word)."""
    return _parsed(json.loads, text, where, error)


def read_json_file(path: str | Path, error: type[PtragError] = ConfigError) -> Any:
    """A JSON file (a run folder's record), within the limits; invalid JSON is one line naming it."""
    return _json_or_error(read_text(path, error, "JSON"), str(path), error)


def read_json_lines(path: str | Path, error: type[PtragError] = ConfigError) -> list[Any]:
    """The records of a JSON-lines file (log.jsonl), each within the limits; blank lines skipped."""
    lines = read_text(path, error, "JSON lines").splitlines()
    return [_json_or_error(line, f"{path} line {i}", error) for i, line in enumerate(lines, 1) if line.strip()]


def _json_or_error(text: str, where: str, error: type[PtragError]) -> Any:
    try:
        return load_json(text, where, error)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno}); it was not "
                    "written by ptrag, or was cut short: restore it or run again") from None
