"""`ptrag plugins`: what components this environment offers, and which plugins failed."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from ptrag.core import api
from ptrag.core.api import KINDS

from .common import console, escape, friendly_errors


@friendly_errors
def plugins(
    kind: str | None = typer.Option(None, "--kind", "-k", help=f"Only this kind: {', '.join(KINDS)}."),
    show_all: bool = typer.Option(False, "--all", "-a", help="Include ptrag's built-in plugins."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    presets: bool = typer.Option(False, "--presets", help="List the presets instead (built-in and plugins'): what "
                                 "--preset, compare lists and ensemble members accept."),
) -> None:
    """List installed plugins and the components they provide (retrievers, selectors, ...).

    Third-party plugins are packages with an entry point in the group "ptrag"; a plugin that
    fails to load is listed with its error and the others keep working. An optional built-in
    whose extra is not installed is listed as absent, with the pip command that adds it.
    """
    if presets:
        return _presets(as_json)
    records = api.components(kind, include_builtin=show_all)
    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return

    out = console()
    table = Table(title="ptrag plugins" + ("" if show_all else " (third-party; --all adds built-ins)"))
    for column in ("plugin", "version", "kind", "components", "status"):
        table.add_column(column)
    for record in records:
        offered = [(c["kind"], c["name"]) for c in record["components"]]
        kinds = sorted({k for k, _ in offered}, key=KINDS.index)
        name, version, status = escape(record["plugin"]), escape(record["version"]), _status(record["status"])
        if not kinds:
            table.add_row(name, version, "-", "-", status)
        for i, k in enumerate(kinds):
            names = escape(", ".join(n for kk, n in offered if kk == k))
            first = i == 0
            table.add_row(name if first else "", version if first else "", k, names, status if first else "")
    if records:
        out.print(table)
    else:
        out.print("No third-party plugins installed. Built-ins: ptrag plugins --all")
    for record in (r for r in records if r["status"] != "ok"):
        out.print(f"{_status(record['status'])}: {escape(record['plugin'])} ({escape(record['package'])} "
                  f"{escape(record['version'])}): {escape(record['error'])}")


def _status(status: str) -> str:
    return {"ok": "[green]ok[/]", "failed": "[red]failed[/]"}.get(status, f"[yellow]{status}[/]")


def _presets(as_json: bool) -> None:
    listed = api.preset_list()
    if as_json:
        typer.echo(json.dumps(listed, indent=2))
        return
    table = Table(title="ptrag presets (ptrag run --preset NAME; * the default)")
    for column in ("preset", "from", "retriever", "selector", "generator", "what"):
        table.add_column(column)
    for p in listed:
        table.add_row(escape(p["name"] + (" *" if p["default"] else "")), escape(p["source"]),
                      *(escape(str(p[k] or "-")) for k in ("retriever", "selector", "generator")), escape(p["summary"]))
    console().print(table)
