"""Render the command-line reference (docs/cli.md) from the typer app itself.

`python -m ptrag.cli.docgen > docs/cli.md` regenerates it; tests/test_docs.py fails when the
committed file and the app disagree, so the reference cannot drift from `--help`.
"""

from __future__ import annotations

import inspect
from typing import Any

import typer

from ptrag.core import api

from .app import app as ptrag_app

HEADER = (
    "# Command-line reference\n\n"
    "Generated from the typer app by `python -m ptrag.cli.docgen > docs/cli.md`; a test keeps it in\n"
    "sync with `ptrag --help`. Every command also answers `--help`.\n"
)


def _param_row(param: Any) -> str:
    if param.param_type_name == "argument":
        name = f"`{param.name.upper()}`"
        kind = "argument"
    else:
        name = ", ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
        kind = "flag" if getattr(param, "is_flag", False) else "option"
    help_text = " ".join((getattr(param, "help", None) or "").split())
    default = param.default
    shown = ""
    if kind == "option" and default not in (None, (), [], False) and not callable(default):
        shown = f" (default: `{default}`)"
    if getattr(param, "multiple", False) and "repeatable" not in help_text:
        shown += " (repeatable)"
    cell = f"{help_text}{shown}".replace("|", "\\|")
    return f"| {name} | {kind} | {cell} |"


def _command_doc(path: list[str], command: Any) -> list[str]:
    lines = [f"## `{' '.join(path)}`", ""]
    doc = inspect.cleandoc(command.help or "")
    if doc:
        lines += [doc, ""]
    params = [p for p in command.params if p.name not in {"help"} and not getattr(p, "hidden", False)]
    if params:
        lines += ["| parameter | kind | meaning |", "|---|---|---|"]
        lines += [_param_row(p) for p in params]
        lines.append("")
    return lines


def _walk(path: list[str], command: Any) -> list[str]:
    lines: list[str] = []
    if hasattr(command, "commands"):  # a group (typer vendors its own click)
        if len(path) > 1:
            lines += _command_doc(path, command)
        for name in sorted(command.commands):
            lines += _walk([*path, name], command.commands[name])
    else:
        lines += _command_doc(path, command)
    return lines


def render(app: typer.Typer | None = None) -> str:
    group = typer.main.get_command(app or ptrag_app)
    root_help = inspect.cleandoc(group.help or "")
    lines = [HEADER, "## `ptrag`", "", root_help, ""]
    lines += _walk(["ptrag"], group)
    return "\n".join(lines).rstrip() + "\n"


def components_table() -> str:
    """The README's table of built-in components, from registry.yaml (tests/test_registry.py checks it
    against the hooks), so optional built-ins are listed whether or not their extra is installed."""
    rows = ["| kind | name | what it does |", "|---|---|---|"]
    for entry in api.builtin_components():
        summary = entry.summary.replace("|", "\\|")
        if entry.extra:
            summary += f' (extra: `ptrag[{entry.extra}]`)'
        rows.append(f"| {entry.kind} | `{entry.name}` | {summary} |")
    return "\n".join(rows)


def presets_table() -> str:
    presets, default_preset = api.presets()
    rows = ["| preset | what it runs |", "|---|---|"]
    for name, preset in presets.items():
        default = " (default)" if name == default_preset else ""
        rows.append(f"| `{name}`{default} | {preset.summary} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(render(), end="")
