"""The `ptrag` console script."""

from __future__ import annotations

import signal

import typer

from ptrag.core.api import __version__

from . import ablate_cmd, data_cmd, genes_cmd, plugins_cmd, predict_cmd, report_cmd, run_cmd
from .common import OneLineErrors

app = typer.Typer(
    name="ptrag",
    cls=OneLineErrors,
    help="Predict single-cell perturbation responses with retrieval-augmented generation (PT-RAG).\n\n"
    "Quick start: `ptrag run` trains and evaluates the default preset on built-in data;"
    " `ptrag plugins --all` lists every retriever, selector, generator and metric.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("run")(run_cmd.run)
app.command("plugins")(plugins_cmd.plugins)
app.command("predict")(predict_cmd.predict)
app.command("ablate")(ablate_cmd.ablate)
app.command("report")(report_cmd.report)
app.add_typer(data_cmd.app, name="data")
app.add_typer(genes_cmd.app, name="genes")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ptrag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """Predict single-cell perturbation responses with retrieval-augmented generation (PT-RAG)."""


def main() -> None:
    if hasattr(signal, "SIGXFSZ"):  # past a file-size limit (ulimit -f) a write fails, one error line, never a kill
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    app()


if __name__ == "__main__":
    main()
