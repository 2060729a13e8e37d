"""`ptrag run`: resolve a config, run one experiment, print the results, name the run folder.

The command's options are built from ``ptrag.core.api``'s declarations (:data:`RUN_OPTIONS`), so
the flags, their help and the API keywords are one list.
"""

from __future__ import annotations

import inspect
from typing import Any

import typer

from ptrag.core import api

from .common import check_device, console, escape, friendly_errors
from .tables import comparison_tables, results_table


def _parameter(option: api.Option) -> inspect.Parameter:
    if option.type is bool:
        default, annotation = typer.Option(False, *option.flags, help=option.described), bool
    elif option.type == list[str]:
        default, annotation = typer.Option([], *option.flags, help=option.described), list[str]
    else:
        extra = {"min": option.min} if option.min is not None else {}
        default, annotation = typer.Option(None, *option.flags, help=option.described, **extra), option.type | None
    return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _with_options(func: Any) -> Any:
    """The command's signature: --config, every run option, --set, --overwrite."""
    params = [_parameter(o) for o in (api.CONFIG, *api.RUN_OPTIONS, api.SET, api.OVERWRITE)]
    func.__signature__ = inspect.Signature(params, return_annotation=None)
    func.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    return func


@friendly_errors
def run(**options: Any) -> None:
    """Train and evaluate one experiment; write the run folder and print its path last.

    With no arguments: the default preset on the built-in dataset. Precedence: preset < --budget <
    --config YAML < --retriever/--selector/--generator < --steps/--seed/--device/--data/--split/--out
    < --set. The run's report (table, figures, DE genes, report.html; its comparisons included) goes
    to <run>/report. With the preset's `compare:` runs, the last lines are the bottom line (the
    best run per headline metric, what the paired tests support) and whether each retrieval model
    beat the best simple baseline (paired test over perturbations).
    `--config RUN/config.yaml` reruns a run into a new folder; a run folder is never reused
    silently (see --resume and --overwrite).
    """
    config, sets, overwrite = options.pop("config"), options.pop("set"), options.pop("overwrite")
    if options.get("device") is not None:
        check_device(options["device"])
    manager = api.build_manager()
    cfg = api.configure(config, set=sets, manager=manager, **options)
    con = console()
    con.print("[bold]ptrag run[/] " + escape(f"preset={cfg.preset} retriever={cfg.retriever.name} "
                                             f"selector={cfg.selector.name} generator={cfg.generator.name} "
                                             f"seed={cfg.seed}"))

    def log(message: str) -> None:
        con.print(f"  {message}", markup=False)

    # the main run's table comes before its comparator runs start; no cells held in memory
    result = api.run(config=cfg, resume=options.get("resume"), overwrite=overwrite, comparisons=False,
                     keep_cells=False, log=log, manager=manager)
    con.print(results_table(result))
    if cfg.compare:
        api.run_comparisons(result, keep_cells=False, log=log, manager=manager)
        for table in comparison_tables(result, width=con.width):
            con.print(table)
    for run in [result, *(result.comparisons or [])]:  # what each ensemble fitted and kept, in words
        if run.members and run.fit_summary:
            con.print(run.fit_summary, markup=False)
    made = write_report(result, con) if api.is_main_process() else None
    for line in (made or {}).get("bottom_line", []):  # the bottom line, then the verdicts it rests on
        con.print(line, markup=False, style="bold")
    for verdict in result.verdicts or []:  # last, just before the folder: scripts read them there
        con.print(verdict.text, markup=False, style="bold green" if verdict.beat else "bold red")
    if api.is_main_process():
        typer.echo(str(result.run_dir))


def write_report(result: Any, con: Any) -> dict | None:
    """<run>/report: the run and its comparisons as `ptrag report` shows them; a report that cannot
    be written is a warning (the run itself is finished and whole)."""
    folder = result.run_dir / "report"
    try:
        made = api.reports.report([result.run_dir], folder)
    except api.PtragError as exc:
        con.print(f"[yellow]warning:[/] {escape(f'no report written ({exc}); try: ptrag report {result.run_dir}')}",
                  highlight=False)
        return None
    con.print(f"report: {made['html']} ({len(made['figures'])} figures; de_genes.csv, summary.csv)", markup=False,
              highlight=False)
    return made


_with_options(run)
