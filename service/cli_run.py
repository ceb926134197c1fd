"""`headspec run SPEC` and `headspec demo`: run a sweep on this machine, then compare."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from service.cli_db import DatabaseUrl
from service.settings import get_settings

console = Console()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_spec(spec_path: Path, database_url: str | None, device: str | None) -> int:
    """Validate, run and summarise one sweep; returns the process exit code."""
    from analysis.summary import factor_summary, per_variant
    from service.store import Store
    from service.sweeps.local import run_sweep_local
    from service.sweeps.plan import SpecError, plan_packs, plan_variants
    from service.sweeps.spec import load_spec

    try:
        spec = load_spec(spec_path)
        planned = plan_variants(spec)
    except (ValidationError, SpecError, ValueError, OSError) as exc:
        console.print(f"[red]invalid sweep spec {spec_path}[/red]\n{exc}")
        return 2
    packs = plan_packs(planned, spec.resources.max_pack_size)
    url = database_url or get_settings().database_url
    store = Store.open(url)
    steps = planned[0].config["train"]["steps"]
    console.print(f"sweep [bold]{spec.name}[/bold]: {len(planned)} variants in {len(packs)} packs, "
                  f"{steps} steps each; store {url}")
    started = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bar:

        def progress(i: int, n: int, task):  # type: ignore[no-untyped-def]
            handle = bar.add_task(f"pack {i + 1}/{n} ({len(task.variants)} variants)",
                                  total=task.config["train"]["steps"], info="")

            def on_step(step: int, losses) -> None:  # type: ignore[no-untyped-def]
                if step % 10 == 0 or step == bar.tasks[handle].total:
                    bar.update(handle, completed=step, info=f"loss {losses.mean().item():.3f}")

            return on_step

        outcome = run_sweep_local(store, spec, device=device, progress=progress)
    elapsed = time.perf_counter() - started
    frame = per_variant(store, outcome.sweep.id, outcome.variants)
    _print_summary(factor_summary(frame, list(spec.factors)))
    console.print(f"sweep {outcome.sweep.id} [bold]{outcome.sweep.status}[/bold] in {elapsed:.0f} s; "
                  f"head metrics: {store.count_head_metrics(sweep_id=outcome.sweep.id)} rows in {url}")
    for v in outcome.failed:
        last = (v.last_error or "").strip().splitlines()[-1:] or ["(no error recorded)"]
        console.print(f"[red]variant {v.id} {v.factors} failed:[/red] {last[0]}")
    return 1 if outcome.failed else 0


def _print_summary(summary) -> None:  # type: ignore[no-untyped-def]
    if summary.empty:
        return
    table = Table(title="by factor level (means over variants; scores at the last probe step)")
    for col in summary.columns:
        table.add_column(str(col), justify="right" if col not in ("factor", "level") else "left")
    for row in summary.itertuples(index=False):
        table.add_row(*[f"{x:.3f}" if isinstance(x, float) else str(x) for x in row])
    console.print(table)


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        spec: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="sweep spec (YAML/JSON)")],
        database_url: DatabaseUrl = None,
        device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if any)")] = None,
    ) -> None:
        """Run a sweep on this machine, write every head metric to the store, compare levels."""
        raise typer.Exit(run_spec(spec, database_url, device))

    @app.command()
    def demo(database_url: DatabaseUrl = None) -> None:
        """The main job on embedded defaults: create the store, run examples/quickstart.yaml."""
        from service.store import schema

        url = database_url or get_settings().database_url
        schema.upgrade(url, "head")
        code = run_spec(EXAMPLES / "quickstart.yaml", url, None)
        console.print(
            "Where to look: the store above holds every head metric (variant, step, layer, head, "
            "metric, value). Not yet in this build: sweeps on Ray, the MLflow mirror, reports."
        )
        raise typer.Exit(code)
