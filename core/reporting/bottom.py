"""The bottom line of a report: finished runs read back as the verdicts and the bottom-line sentence
read them (evaluation/bottom_line.py), one sentence per setting (a run and its comparisons are one)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..evaluation.bottom_line import Scored, bottom_line
from ..evaluation.verdict import retrieval_verdicts
from ..files import read_json
from .folders import directions, per_perturbation
from .labels import RunKey


def scored(name: str, folders: Sequence[Path]) -> Scored:
    """The seeds of one configuration: per-perturbation scores averaged over them, and what the
    first says it is (trained, retrieving, an ensemble)."""
    run = (read_json(Path(folders[0]) / "metrics.json") or {}).get("run") or {}
    return Scored(name, per_perturbation(folders), directions(folders), training=run.get("training"),
                  uses_retrieval=bool(run.get("uses_retrieval")), members=list(run.get("members") or []))


def settings(folders: Sequence[Path], keys: Mapping[Path, RunKey]) -> dict[str, dict[str, list[Path]]]:
    """setting -> configuration name -> its folders (seeds), in report order."""
    out: dict[str, dict[str, list[Path]]] = {}
    for f in folders:
        out.setdefault(keys[f].setting, {}).setdefault(keys[f].name, []).append(f)
    return out


def bottom_lines(folders: Sequence[Path], keys: Mapping[Path, RunKey]) -> list[str]:
    """One sentence per setting with at least two runs; a report over several settings names each."""
    found = settings(folders, keys)
    lines = []
    for setting, runs in found.items():
        seeds = {keys[f].seed for fs in runs.values() for f in fs}
        where = (f"in {setting}" if setting else "on this split") if len(seeds) < 2 else \
            f"{f'in {setting} ' if setting else ''}over {len(seeds)} seeds (scores averaged per perturbation)"
        members = [scored(name, fs) for name, fs in runs.items()]
        said = bottom_line(members, retrieval_verdicts(members), where=where)
        if said:
            lines.append(said)
    return lines
