"""`headspec report --sweep ID --out report.html`: the HTML sweep report, recorded in the
store and logged with its PNGs to the sweep's MLflow parent run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from service.cli_db import DatabaseUrl
from service.settings import get_settings

console = Console(stderr=True)


def report_command(sweep: int, out: Path, database_url: str | None, mlflow: bool, n_boot: int) -> int:
    from analysis.report import build_sweep_report
    from service.store import NotFound, Store

    with Store.open(database_url or get_settings().database_url) as store:
        try:
            with console.status(f"analysing sweep {sweep} ..."):
                doc = build_sweep_report(store, sweep, n_boot=n_boot)
        except NotFound:
            console.print(f"[red]unknown sweep id {sweep}[/red]; list sweeps with `headspec sweep list`")
            return 2
        html = doc.render()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(html, encoding="utf-8")
        report = store.create_report("sweep", sweep_id=sweep, title=doc.title, content=html,
                                     path=str(out.resolve()))
        console.print(f"report {report.id}: {out} ({len(doc.images)} plots, {len(html) // 1024} KiB)")
        if mlflow:
            from service.mirror.report import log_report

            uri = get_settings().mlflow_tracking_uri
            try:
                run_id = log_report(store, sweep, html, doc.images, uri)
            except Exception as exc:  # the report exists; MLflow is a mirror
                console.print(f"[yellow]could not log the report to MLflow at {uri}: {exc}[/yellow]")
                return 1
            console.print(f"logged to MLflow {uri}: run {run_id}, artifacts report/")
    return 0


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        sweep: Annotated[int, typer.Option(help="sweep id")],
        out: Annotated[Path, typer.Option(help="where to write the HTML file")] = Path("report.html"),
        database_url: DatabaseUrl = None,
        mlflow: Annotated[bool, typer.Option(help="also log the report to the sweep's MLflow run")] = True,
        n_boot: Annotated[int, typer.Option(min=100, help="bootstrap resamples per interval")] = 1000,
    ) -> None:
        """Write a sweep's self-contained HTML report and log it to MLflow.

        Plots of specialization by factor, over training, role maps per level, head matching
        across runs and pruning curves; recorded in the store, logged with its PNGs to the
        sweep's MLflow parent run."""
        raise typer.Exit(report_command(sweep, out, database_url, mlflow, n_boot))
