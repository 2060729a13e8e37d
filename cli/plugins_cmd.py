"""`ptrag plugins`: what components this environment offers, and which plugins failed."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from ptrag.core.hookspecs import KINDS
from ptrag.core.manager import build_manager

from .common import console, escape, fail, friendly_errors


@friendly_errors
def plugins(
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help=f"Only this kind: {', '.join(KINDS)}."),
    show_all: bool = typer.Option(False, "--all", "-a", help="Include ptrag's built-in plugins."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List installed plugins and the components they provide (retrievers, selectors, ...).

    Third-party plugins are packages with an entry point in the group "ptrag"; a plugin that
    fails to load is listed with its error and the others keep working. An optional built-in
    whose extra is not installed is listed as absent, with the pip command that adds it.
    """
    if kind is not None and kind not in KINDS:
        raise fail(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    manager = build_manager()
    records = [r for r in manager.records if show_all or not r.builtin or r.status == "absent"]
    rows = []
    for record in records:
        components = [(k, n) for k, n in record.components if kind is None or k == kind]
        if kind is not None and not components and record.status not in ("failed", "absent"):
            continue
        summaries = {(k, n): manager.summary(k, n, record) for k, n in components}
        rows.append((record, components, summaries))

    if as_json:
        out = []
        for record, components, summaries in rows:
            item = record.as_dict()
            item["components"] = [{"kind": k, "name": n, "summary": summaries[(k, n)]} for k, n in components]
            out.append(item)
        typer.echo(json.dumps(out, indent=2))
        return

    out = console()
    table = Table(title="ptrag plugins" + ("" if show_all else " (third-party; --all adds built-ins)"))
    for column in ("plugin", "version", "kind", "components", "status"):
        table.add_column(column)
    for record, components, _ in rows:
        kinds = sorted({k for k, _ in components}, key=KINDS.index)
        if not kinds:
            table.add_row(escape(record.name), escape(record.version), "-", "-", _status(record.status))
        for i, k in enumerate(kinds):
            names = escape(", ".join(n for kk, n in components if kk == k))
            first = i == 0
            table.add_row(escape(record.name) if first else "", escape(record.version) if first else "", k, names,
                          _status(record.status) if first else "")
    if rows:
        out.print(table)
    else:
        out.print("No third-party plugins installed. Built-ins: ptrag plugins --all")
    failed = [r for r, _, _ in rows if r.status != "ok"]
    for record in failed:
        out.print(f"{_status(record.status)}: {escape(record.name)} ({escape(record.package)} "
                  f"{escape(record.version)}): {escape(record.error)}")


def _status(status: str) -> str:
    return {"ok": "[green]ok[/]", "failed": "[red]failed[/]"}.get(status, f"[yellow]{status}[/]")
