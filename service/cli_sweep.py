"""`headspec sweep ...`: sweeps on a running `headspec serve`, over HTTP.

    headspec sweep submit examples/quickstart.yaml --wait
    headspec sweep list --status running
    headspec sweep status 3
    headspec sweep cancel 3

The service is found at HEADSPEC_SERVICE_URL (or ``--url``) and the token read from
HEADSPEC_API_TOKEN. The spec is validated by the service: an invalid one is printed field
by field (exit code 2) and nothing is submitted.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from service.client import ServiceClient, exit_on_service_error

sweep_app = typer.Typer(
    help="Sweeps on a headspec service (HEADSPEC_SERVICE_URL; token in HEADSPEC_API_TOKEN).",
    no_args_is_help=True,
)
TERMINAL = ("succeeded", "failed", "cancelled")
ServiceUrl = Annotated[str | None, typer.Option(
    "--url", help="The service (default: HEADSPEC_SERVICE_URL, else http://127.0.0.1:8600)",
    show_default=False)]


def _console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=140)


def _read_spec(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"error: cannot read sweep spec {path}: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    if not isinstance(data, dict):
        print(f"error: {path}: a sweep spec is a mapping with name, base and factors", file=sys.stderr)
        raise typer.Exit(2)
    return data


def _progress(sweep: dict[str, Any]) -> str:
    counts = sweep.get("variants") or {}
    parts = [f"{n} {status}" for status, n in sorted(counts.items())]
    return f"{sweep['n_variants']} variants" + (f" ({', '.join(parts)})" if parts else "")


@sweep_app.command("submit")
def submit(
    spec: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="sweep spec (YAML/JSON)")],
    url: ServiceUrl = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Wait until the sweep ends; exit 1 unless it succeeded")] = False,
    poll: Annotated[float, typer.Option(help="Seconds between status checks with --wait")] = 2.0,
) -> None:
    """Submit a sweep spec to the service, which validates it and starts its driver."""
    body = _read_spec(spec)
    with exit_on_service_error(), ServiceClient.from_settings(base_url=url) as client:
        sweep = client.submit_sweep(body)
        typer.echo(f"submitted sweep {sweep['id']} ({sweep['name']}): {_progress(sweep)}; "
                   f"driver: {sweep['launched']}")
        if not wait:
            return
        while sweep["status"] not in TERMINAL:
            time.sleep(poll)
            sweep = client.get_sweep(sweep["id"])
        typer.echo(f"sweep {sweep['id']} {sweep['status']}: {_progress(sweep)}")
    if sweep["status"] != "succeeded":
        raise typer.Exit(1)


@sweep_app.command("list")
def list_sweeps(
    url: ServiceUrl = None,
    status: Annotated[str | None, typer.Option(
        help="pending, running, succeeded, failed or cancelled")] = None,
    name: Annotated[str | None, typer.Option(help="Exact sweep name")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many (newest first)")] = 20,
) -> None:
    """The newest sweeps."""
    with exit_on_service_error(), ServiceClient.from_settings(base_url=url) as client:
        page = client.list_sweeps(status=status, name=name, limit=limit)
    table = Table(title="sweeps (newest first)")
    for column in ("id", "name", "status", "created", "finished"):
        table.add_column(column, justify="right" if column == "id" else "left")
    for s in page["items"]:
        table.add_row(str(s["id"]), s["name"], s["status"], _when(s["created_at"]), _when(s["finished_at"]))
    _console().print(table)
    if page["next_cursor"]:
        typer.echo(f"(more: raise --limit above {limit})")


@sweep_app.command("status")
def status(sweep_id: Annotated[int, typer.Argument(help="Sweep id")], url: ServiceUrl = None) -> None:
    """A sweep's status and its variants' progress."""
    with exit_on_service_error(), ServiceClient.from_settings(base_url=url) as client:
        sweep = client.get_sweep(sweep_id)
    typer.echo(f"sweep {sweep['id']} ({sweep['name']}): {sweep['status']}\n"
               f"created {_when(sweep['created_at'])}, started {_when(sweep['started_at'])}, "
               f"finished {_when(sweep['finished_at'])}\n{_progress(sweep)}")


@sweep_app.command("cancel")
def cancel(sweep_id: Annotated[int, typer.Argument(help="Sweep id")], url: ServiceUrl = None) -> None:
    """Stop a sweep's driver; its unfinished variants are recorded cancelled."""
    with exit_on_service_error(), ServiceClient.from_settings(base_url=url) as client:
        sweep = client.cancel_sweep(sweep_id)
    typer.echo(f"sweep {sweep['id']} {sweep['status']}: {_progress(sweep)}")


def _when(value: str | None) -> str:
    return "—" if not value else value.replace("T", " ")[:19]


def register(app: typer.Typer) -> None:
    app.add_typer(sweep_app, name="sweep")
