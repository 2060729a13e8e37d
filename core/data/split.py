"""Train / validation / test splits over (perturbation, context) groups.

Split files follow STATE's TOML layout so Arc's and PT-RAG's files work unchanged::

    [datasets]
    replogle = "/data/replogle/"
    [training]
    replogle = "train"
    [zeroshot]
    "replogle.jurkat" = "test"        # the whole cell line is held out (as "val" or "test")
    [fewshot."replogle.k562"]
    val = ["AARS"]
    test = ["AARS", "NUP107"]         # these perturbations of k562 are held out

Everything not held out trains. YAML files with the same keys work too, and a cell line may be
named without the ``dataset.`` prefix. Names match the data's whatever their case and surrounding
spaces (``cct7`` names the data's ``CCT7``: a screen never holds both, data/validation.py). Names
that the data lacks are reported, never skipped silently; a perturbation listed under both val
and test is in both (as in STATE's files).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import DataError
from ..markup import load_toml, load_yaml
from .dataset import PerturbationData
from .validation import spelling

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Group = tuple[str, str]
log = logging.getLogger("ptrag.data")


@dataclass
class Split:
    train: list[Group]
    val: list[Group] = field(default_factory=list)
    test: list[Group] = field(default_factory=list)
    description: str = ""
    #: what resolving the split reported (unknown names, dropped groups); for the run log
    notes: list[str] = field(default_factory=list)
    #: what was left out, one record per reason: {reason, groups per role, perturbations, first};
    #: metrics.json carries these under run.dropped
    drops: list[dict] = field(default_factory=list)

    def without_perts(self, perts: set[str], reason: str) -> Split:
        """The same split minus every group of ``perts``, with a note and a drop record saying why."""

        def keep(groups):
            return [g for g in groups if g[0] not in perts]

        roles = {role: len(gs) - len(keep(gs)) for role, gs in (("train", self.train), ("val", self.val),
                                                                ("test", self.test))}
        if not perts or not any(roles.values()):
            return self
        named = sorted({p for gs in (self.train, self.val, self.test) for p, _ in gs} & set(perts))
        note = (f"dropped {sum(roles.values())} group(s) of {len(named)} perturbation(s) {reason} "
                f"(first: {_first(named)})")
        drop = {"reason": reason, "groups": roles, "perturbations": len(named), "first": named[:5]}
        return Split(keep(self.train), keep(self.val), keep(self.test), self.description, [*self.notes, note],
                     [*self.drops, drop])

    @property
    def fitting_val(self) -> list[Group]:
        """The validation groups a model may be fitted or selected on: never one that is also a
        test group (a STATE split may list a perturbation under both)."""
        test = set(self.test)
        return [g for g in self.val if g not in test]

    def summary(self) -> str:
        """The description, and after any drop the counts that remain (what is really evaluated)."""
        if not self.drops:
            return self.description
        dropped = "; ".join(f"{sum(d['groups'].values())} group(s) {d['reason']} ({d['groups'].get('test', 0)} test; "
                            f"first: {_first(d['first'])})" for d in self.drops)
        return (f"{self.description}; dropped {dropped}; left: {len(self.train)} train / {len(self.val)} val / "
                f"{len(self.test)} test groups")


def _first(names, k: int = 5) -> str:
    names = list(names)
    return ", ".join(map(str, names[:k])) + (", ..." if len(names) > k else "")


def default_holdout_context(data: PerturbationData) -> str:
    """The cell line a random few-shot split holds out when none is named: the one with the most
    perturbations (ties: the last name in sorted order). The one rule for `ptrag run` and
    `ptrag data split`, both of which reach it through :func:`resolve_split`."""
    counts = {c: sum(1 for _, gc in data.groups if gc == c) for c in data.contexts}
    return max(data.contexts, key=lambda c: (counts[c], c))


def random_fewshot_split(
    data: PerturbationData,
    *,
    seed: int,
    holdout_context: str | None = None,
    test_fraction: float = 0.3,
    val_fraction: float = 0.1,
) -> Split:
    """Hold out a fraction of one context's perturbations; everything else trains (few-shot)."""
    contexts = data.contexts
    if holdout_context is None:
        holdout_context = default_holdout_context(data)
    elif holdout_context not in contexts:
        raise DataError(f"{data.source}: no cell line {holdout_context!r} to hold out; cell lines: "
                        f"{', '.join(contexts)} (set data.holdout_context)")
    perts = sorted(p for p, c in data.groups if c == holdout_context)
    rng = np.random.default_rng(seed)
    order = [perts[i] for i in rng.permutation(len(perts))]
    n_test = max(1, int(round(test_fraction * len(perts))))
    n_val = int(round(val_fraction * len(perts)))
    test = {(p, holdout_context) for p in order[:n_test]}
    val = {(p, holdout_context) for p in order[n_test : n_test + n_val]}
    train = [g for g in data.groups if g not in test and g not in val]
    return Split(
        train=train,
        val=sorted(val),
        test=sorted(test),
        description=f"random few-shot: {len(test)} test / {len(val)} val perturbations of {holdout_context} "
                    f"(seed {seed})",
    )


# --------------------------------------------------------------------------- split files


def read_split_spec(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a TOML or YAML split file (one clear error when it cannot be parsed)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file; a split is STATE's TOML or YAML") from None
    try:
        if path.suffix.lower() == ".toml":
            spec = load_toml(text, str(path), DataError)
        elif path.suffix.lower() in (".yaml", ".yml"):
            spec = load_yaml(text, str(path), DataError) or {}
        else:
            raise DataError(f"{path}: unknown split format {path.suffix or '(no suffix)'!r}; "
                            "use .toml (STATE) or .yaml")
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{path}: not valid TOML: {exc}") from None
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(spec, dict):
        raise DataError(f"{path}: expected a mapping at the top level, got {type(spec).__name__}")
    unknown = sorted(set(spec) - {"datasets", "training", "zeroshot", "fewshot"})
    if unknown:
        raise DataError(f"{path}: unknown section(s) {', '.join(unknown)}; a split has "
                        "[datasets], [training], [zeroshot] and [fewshot.\"dataset.cell_line\"]")
    for section, value in spec.items():
        if section == "training" and isinstance(value, list):
            gene_list(path, "training", value, "dataset name")  # YAML's list of the datasets that train
        elif value is not None and not isinstance(value, dict):
            raise DataError(f"{path}: [{section}] must be a table (e.g. {SECTION_EXAMPLES[section]}), got "
                            f"{_what(value)}")
    return spec


SECTION_EXAMPLES = {"datasets": '[datasets] replogle = "/data/replogle/"', "training": '[training] replogle = "train"',
                    "zeroshot": '[zeroshot] "replogle.jurkat" = "test"',
                    "fewshot": '[fewshot."replogle.k562"] test = ["AARS"]'}


def _what(value: Any) -> str:
    """A value from a split file as a reader would describe it."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "nothing (null)"
    return f"a {'list' if isinstance(value, list) else 'table' if isinstance(value, dict) else type(value).__name__}"


def gene_list(path: Path, key: str, value: Any, what: str = "gene name") -> list[str]:
    """A val/test entry of ``[fewshot]``: a list of gene names (strings). A bare string is refused,
    not read as one gene: ``test = "AARS, NUP107"`` would otherwise hold out a gene that does not exist."""
    where = f"{path}: {key}"
    name = key.rpartition(".")[2] + (": " if path.suffix.lower() in (".yaml", ".yml") else " = ")
    if isinstance(value, str):
        items = ", ".join(json.dumps(v.strip()) for v in value.split(",") if v.strip())
        raise DataError(f"{where} is the string {value!r}; write a list of {what}s, e.g. {name}[{items}]")
    if not isinstance(value, list):
        raise DataError(f"{where} is {_what(value)}; write a list of {what}s, e.g. {name}[\"AARS\", \"NUP107\"]")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            number = isinstance(item, (int, float)) and not isinstance(item, bool)
            hint = f"; write {what}s in quotes, e.g. \"{item}\"" if number else ""
            raise DataError(f"{where}[{i}] is {_what(item)}, not a {what}{hint} (each entry is a string)")
    return value


def read_split(path: str | Path, data: PerturbationData, dataset: str | None = None) -> Split:
    """Resolve a STATE TOML / YAML split against the data; unknown names become notes."""
    path = Path(path)
    spec = read_split_spec(path)
    names = _dataset_names(spec)
    dataset = _pick_dataset(names, dataset, data, path)
    contexts = {spelling(c): c for c in data.contexts}  # case and surrounding spaces do not count
    notes: list[str] = []
    drops: list[dict] = []

    def context_of(key: str, section: str) -> str | None:
        if spelling(key) in contexts:  # a bare cell line name (YAML convenience)
            return contexts[spelling(key)]
        ds, _, line = key.partition(".")
        if not line:
            ds, line = "", key
        if ds and dataset and ds != dataset:
            return None  # another dataset's entry
        hit = contexts.get(spelling(line))
        if hit is None:
            notes.append(f"{path}: [{section}] names cell line {line!r}, which the data lacks "
                         f"(cell lines: {', '.join(data.contexts)})")
        return hit

    held_val: set[Group] = set()
    held_test: set[Group] = set()
    zeroshot = spec.get("zeroshot") or {}
    for key, role in zeroshot.items():
        context = context_of(str(key), "zeroshot")
        if context is None:
            continue
        if role not in ("val", "test"):
            raise DataError(f"{path}: [zeroshot] {key!r} = {role!r}; expected \"val\" or \"test\" (a whole cell line "
                            "is held out as one or the other)")
        groups = {g for g in data.groups if g[1] == context}
        (held_val if role == "val" else held_test).update(groups)

    fewshot = spec.get("fewshot") or {}
    for key, roles in fewshot.items():
        context = context_of(str(key), f"fewshot.{key}")
        if context is None:
            continue
        if not isinstance(roles, dict):
            raise DataError(f"{path}: [fewshot.{key!r}] must hold val = [...] and/or test = [...], got {_what(roles)}")
        available = {spelling(p): p for p, c in data.groups if c == context}
        for role, perts in roles.items():
            if role not in ("val", "test"):
                raise DataError(f"{path}: [fewshot.{key!r}] has {role!r}; expected val and/or test")
            perts = gene_list(path, f"fewshot.{json.dumps(str(key))}.{role}", perts)
            absent = [p for p in perts if spelling(p) not in available]
            if absent:
                notes.append(f"{path}: {len(absent)} of {len(perts)} {role} perturbation(s) of {context} are not in "
                             f"the data (first: {_first(absent)})")
                drops.append({"reason": f"named by the split but not in the data ({context})",
                              "groups": {role: len(absent)}, "perturbations": len(absent),
                              "first": [str(p) for p in absent[:5]]})
            groups = {(available[spelling(p)], context) for p in perts if spelling(p) in available}
            (held_val if role == "val" else held_test).update(groups)

    training = spec.get("training")
    trains = training is None or dataset is None or dataset in training
    if training is not None and dataset is not None and dataset not in training:
        notes.append(f"{path}: [training] does not list dataset {dataset!r}; nothing trains")
    held = held_val | held_test
    train = [g for g in data.groups if g not in held] if trains else []
    both = held_val & held_test
    if both:
        notes.append(f"{path}: {len(both)} group(s) are in both val and test (first: "
                     f"{_first(f'{p}/{c}' for p, c in sorted(both))})")
    for line in notes:
        log.warning(line)
    description = (f"{path.name}: {len(train)} train / {len(held_val)} val / {len(held_test)} test groups"
                   + (f" (dataset {dataset})" if dataset else ""))
    return Split(train=train, val=sorted(held_val), test=sorted(held_test), description=description, notes=notes,
                 drops=drops)


def _dataset_names(spec: dict[str, Any]) -> list[str]:
    names = list(spec.get("datasets") or {}) + list(spec.get("training") or {})
    for section in ("zeroshot", "fewshot"):
        names += [str(k).partition(".")[0] for k in (spec.get(section) or {}) if "." in str(k)]
    return list(dict.fromkeys(names))


def _pick_dataset(names: list[str], wanted: str | None, data: PerturbationData, path: Path) -> str | None:
    if wanted:
        if names and wanted not in names:
            raise DataError(f"{path}: no dataset {wanted!r}; the file names {', '.join(names)}")
        return wanted
    if len(names) <= 1:
        return names[0] if names else None
    stem = Path(data.source).stem.lower()
    match = [n for n in names if n.lower() == stem]
    if len(match) == 1:
        return match[0]
    raise DataError(f"{path}: the file names several datasets ({', '.join(names)}); "
                    f"say which one this data is with data.split_dataset")


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string: JSON's escapes are TOML's (``\\n``, ``\\"``, ``\\u00XX``), and
    DEL, which JSON leaves as it is, is escaped too; other characters stay themselves (UTF-8)."""
    return json.dumps(str(text), ensure_ascii=False).replace("\x7f", "\\u007f")


def split_to_toml(split: Split, dataset: str, data_path: str) -> str:
    """A STATE-format TOML for a few-shot/zero-shot split (what `ptrag data split` writes)."""
    q = toml_string
    comment = " ".join(split.description.split())  # a label's newline must not end the comment
    lines = [f"# {comment}", "[datasets]", f"{q(dataset)} = {q(str(data_path))}", "",
             "[training]", f"{q(dataset)} = \"train\"", "", "[zeroshot]", "", "[fewshot]"]
    contexts = sorted({c for _, c in split.val + split.test})
    for context in contexts:
        val = sorted(p for p, c in split.val if c == context)
        test = sorted(p for p, c in split.test if c == context)
        lines += ["", f"[fewshot.{q(f'{dataset}.{context}')}]",
                  f"val = [{', '.join(map(q, val))}]", f"test = [{', '.join(map(q, test))}]"]
    return "\n".join(lines) + "\n"


def resolve_split(cfg: Any, data: PerturbationData, seed: int) -> Split:
    """``data.split`` read against the data, or a random few-shot split when it is empty."""
    if cfg.split:
        return read_split(cfg.split, data, getattr(cfg, "split_dataset", None))
    return random_fewshot_split(data, seed=seed, holdout_context=cfg.holdout_context,
                                test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction)
