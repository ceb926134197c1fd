"""The `headspec` command line. Each command group lives in its own module."""

from __future__ import annotations

import typer

from service import cli_analysis, cli_report, cli_run, cli_serve, cli_sweep
from service.cli_db import db_app
from service.cli_mirror import mirror_app, register_ui
from service.cli_study import study_app

app = typer.Typer(
    help="headspec: track how attention heads specialize across many training runs.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(db_app, name="db")


app.add_typer(mirror_app, name="mirror")
app.add_typer(study_app, name="study")
cli_run.register(app)
cli_analysis.register(app)
cli_report.register(app)
register_ui(app)
cli_serve.register(app)
cli_sweep.register(app)

if __name__ == "__main__":
    app()
