"""`headspec run SPEC` and `headspec demo`: run a sweep on this machine, then compare."""

from __future__ import annotations

import sys
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
from service.sweeps.spec import SweepSpec

# piped output is not squeezed to 80 columns: the summary table stays readable in logs
console = Console() if sys.stdout.isatty() else Console(width=140)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_spec(
    spec_path: Path,
    database_url: str | None,
    *,
    local: bool = False,
    device: str | None = None,
    ray_address: str | None = None,
) -> int:
    """Validate, run and summarise one sweep; returns the process exit code.

    Default: a local Ray started in-process (or ``ray_address``), one task per pack.
    ``local``: no Ray, packs one after another in this process on ``device``.
    """
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
    steps = planned[0].config["train"]["steps"]
    console.print(f"sweep [bold]{spec.name}[/bold]: {len(planned)} variants in {len(packs)} packs, "
                  f"{steps} steps each")
    return execute(spec, url, local=local, device=device, ray_address=ray_address)


def execute(
    spec: SweepSpec | int,
    url: str,
    *,
    local: bool = False,
    device: str | None = None,
    ray_address: str | None = None,
) -> int:
    """Run a new sweep (a spec) or a recorded one's unfinished packs (an id) with progress,
    then print the comparison and mirror to MLflow; returns the exit code."""
    from analysis.derived import per_variant_derived
    from analysis.load import load_variants
    from analysis.summary import factor_summary
    from service.store import Store
    from service.sweeps.distributed import run_sweep_ray
    from service.sweeps.local import run_sweep_local

    Store.open(url).close()  # refuse an out-of-date schema before anything runs
    where = "in this process" if local else f"on Ray ({ray_address or get_settings().ray_address or 'local'})"
    console.print(f"running {where}; store {url}")
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

        if local:
            with Store.open(url) as store:
                outcome = run_sweep_local(store, spec, device=device, progress=progress)
        else:
            outcome = run_sweep_ray(url, spec, ray_address=ray_address, progress=progress)
    elapsed = time.perf_counter() - started
    store = Store.open(url)
    variants = load_variants(store, outcome.sweep.id, outcome.variants)
    frame = per_variant_derived(store, outcome.sweep.id, variants)
    factors = list(SweepSpec.model_validate(outcome.sweep.spec).factors)
    _print_summary(factor_summary(frame, factors))
    console.print(f"sweep {outcome.sweep.id} [bold]{outcome.sweep.status}[/bold] in {elapsed:.0f} s; "
                  f"head metrics: {store.count_head_metrics(sweep_id=outcome.sweep.id)} rows in {url}")
    _mirror(store)
    for v in outcome.failed:
        last = (v.last_error or "").strip().splitlines()[-1:] or ["(no error recorded)"]
        console.print(f"[red]variant {v.id} {v.factors} failed:[/red] {last[0]}")
    store.close()
    return 1 if outcome.failed else 0


def _mirror(store) -> None:  # type: ignore[no-untyped-def]
    """Mirror what the sweep wrote to MLflow; what cannot be sent now stays in the outbox."""
    from service.mirror import drain_to_mlflow

    uri = get_settings().mlflow_tracking_uri
    with console.status(f"mirroring to MLflow at {uri} ..."):
        try:
            result = drain_to_mlflow(store, uri)
        except Exception as exc:  # the store holds everything; the mirror can catch up later
            console.print(f"[yellow]MLflow mirror failed ({exc}); run `headspec mirror drain` later[/yellow]")
            return
    pending = store.outbox_pending_count()
    note = f"; {pending} items still queued: run `headspec mirror drain`" if pending else ""
    console.print(f"MLflow: {result.metrics_logged} metrics mirrored to {uri}{note} "
                  f"(browse: headspec ui)")


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
        ray_address: Annotated[str | None, typer.Option(
            help="existing Ray cluster (default: HEADSPEC_RAY_ADDRESS, else a local Ray)")] = None,
        local: Annotated[bool, typer.Option(
            "--local", help="no Ray: train the packs one after another in this process")] = False,
        device: Annotated[str | None, typer.Option(
            help="with --local: cpu or cuda (default: cuda if any); on Ray, gpus in the spec")] = None,
    ) -> None:
        """Run a sweep (one Ray task per pack), write every head metric to the store, compare."""
        raise typer.Exit(run_spec(spec, database_url, local=local, device=device, ray_address=ray_address))

    @app.command(hidden=True)
    def driver(
        sweep_id: Annotated[int, typer.Argument(help="id of a recorded sweep")],
        database_url: DatabaseUrl = None,
        ray_address: Annotated[str | None, typer.Option(
            help="existing Ray cluster (default: HEADSPEC_RAY_ADDRESS, else a local Ray)")] = None,
        local: Annotated[bool, typer.Option("--local", help="no Ray: packs in this process")] = False,
    ) -> None:
        """Run a recorded sweep's unfinished packs: what `headspec serve` and Ray Jobs start."""
        url = database_url or get_settings().database_url
        raise typer.Exit(execute(sweep_id, url, local=local, ray_address=ray_address))

    @app.command()
    def demo(database_url: DatabaseUrl = None) -> None:
        """The main job on embedded defaults: run examples/quickstart.yaml, compare, report.

        Creates the store, runs the sweep on a local Ray, mirrors it to the local MLflow store
        and writes its HTML report to demo-report.html."""
        from service.cli_report import report_command
        from service.store import Store, schema

        url = database_url or get_settings().database_url
        schema.upgrade(url, "head")
        code = run_spec(EXAMPLES / "quickstart.yaml", url)
        with Store.open(url) as store:
            latest = store.list_sweeps(limit=1).items
        if latest:
            report_command(latest[0].id, Path("demo-report.html"), url, mlflow=True, n_boot=1000)
        console.print(
            "Where to look: the store above holds every head metric (variant, step, layer, head, "
            "metric, value); demo-report.html is the sweep's report (also under report/ in its MLflow "
            "parent run); `headspec ui` opens the MLflow mirror (a parent run per sweep, a child run "
            "per variant); `headspec serve` offers it all over HTTP."
        )
        raise typer.Exit(code)
