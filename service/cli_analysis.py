"""`headspec compare`: one metric of a sweep compared across the levels of a factor.

    headspec compare --sweep 3 --by model.n_layers --metric max_induction --format json

``table`` prints rich tables; ``json`` and ``csv`` write machine-readable output to stdout
(csv: one row per level, then one per pair of levels, told apart by the ``kind`` column).
Errors go to stderr with exit code 2. Register with ``cli_analysis.register(app)``.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from service.cli_db import DatabaseUrl
from service.settings import get_settings

CSV_FIELDS = ("kind", "factor", "level", "level_b", "n_units", "mean", "diff", "ci_low", "ci_high",
              "cohens_d")


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def compare_command(
    sweep: int, by: str, metric: str, fmt: Format, database_url: str | None, n_boot: int
) -> int:
    """Run the comparison and print it; returns the process exit code."""
    from analysis.comparison import compare_sweep
    from service.store import NotFound, Store

    err = Console(stderr=True, soft_wrap=True)
    with Store.open(database_url or get_settings().database_url) as store:
        try:
            result = compare_sweep(store, sweep, by, metric, n_boot=n_boot)
        except NotFound:
            err.print(f"[red]unknown sweep id {sweep}[/red]")
            return 2
        except ValueError as exc:  # unknown factor or metric: the message lists what exists
            err.print(f"[red]{escape(str(exc))}[/red]")
            return 2
    if fmt is Format.json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, default=_json_default) + "\n")
    elif fmt is Format.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in result.levels:
            writer.writerow({"kind": "level", **row})
        for row in result.effects:
            writer.writerow({"kind": "effect", **row, "level": row["level_a"]})
    else:
        _print_tables(sweep, by, metric, result.levels, result.effects)
    return 0


def _print_tables(sweep: int, by: str, metric: str, levels: list[dict], effects: list[dict]) -> None:
    out = Console() if sys.stdout.isatty() else Console(width=140)
    table = Table(title=f"sweep {sweep}: {metric} by {by} (95% bootstrap CI over seeds)")
    for name in ("level", "n", "mean", "CI"):
        table.add_column(name, justify="left" if name == "level" else "right")
    for r in levels:
        table.add_row(str(r["level"]), str(r["n_units"]), _num(r["mean"]), _ci(r["ci_low"], r["ci_high"]))
    out.print(table)
    if effects:
        diffs = Table(title="differences between levels (b − a)")
        for name in ("a", "b", "diff", "CI", "Cohen's d"):
            diffs.add_column(name, justify="left" if name in ("a", "b") else "right")
        for r in effects:
            diffs.add_row(str(r["level_a"]), str(r["level_b"]), _num(r["diff"]),
                          _ci(r["ci_low"], r["ci_high"]), _num(r["cohens_d"]))
        out.print(diffs)


def _json_default(value: Any) -> Any:
    return str(value)


def _num(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.4g}"


def _ci(low: float | None, high: float | None) -> str:
    return "—" if low is None or high is None or math.isnan(low) else f"[{low:.4g}, {high:.4g}]"


def register(app: typer.Typer) -> None:
    @app.command()
    def compare(
        sweep: Annotated[int, typer.Option("--sweep", help="Sweep id")],
        by: Annotated[str, typer.Option("--by", help="Factor to compare the levels of")],
        metric: Annotated[str, typer.Option(
            "--metric", help="Derived quantity (max_induction, mean_specialization, frac_<role>, "
            "n_distinct_roles, icl_score, train_loss) or a stored metric name")] = "max_induction",
        fmt: Annotated[Format, typer.Option("--format", help="table, json or csv")] = Format.table,
        n_boot: Annotated[int, typer.Option("--n-boot", min=100, help="Bootstrap resamples")] = 2000,
        database_url: DatabaseUrl = None,
    ) -> None:
        """Compare one metric of a sweep across the levels of a factor, with bootstrap CIs."""
        code = compare_command(sweep, by, metric, fmt, database_url, n_boot)
        if code:
            raise typer.Exit(code)
