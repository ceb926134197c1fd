"""`headspec study ...`: scheduled comparative studies on a running `headspec serve`, over HTTP.

    headspec study create examples/study_nightly.yaml
    headspec study list
    headspec study run-now nightly-depth          # a name or an id
    headspec study reports nightly-depth --out latest.html
    headspec study pause nightly-depth; headspec study resume nightly-depth

The service is found at HEADSPEC_SERVICE_URL (or ``--url``) and the token read from
HEADSPEC_API_TOKEN. A study file may name its sweep by path (relative to the study file); it
is read here and sent inline. The service validates the spec: an invalid one is printed field
by field (exit code 2) and nothing is recorded.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from service.client import ServiceClient, ServiceError, exit_on_service_error
from service.studies.spec import read_study_data

study_app = typer.Typer(
    help="Scheduled comparative studies on a headspec service (HEADSPEC_SERVICE_URL; token in "
    "HEADSPEC_API_TOKEN).",
    no_args_is_help=True,
)
ServiceUrl = Annotated[str | None, typer.Option(
    "--url", help="The service (default: HEADSPEC_SERVICE_URL, else http://127.0.0.1:8600)",
    show_default=False)]
NameOrId = Annotated[str, typer.Argument(help="The study's name or id")]


def _console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=160)


def _when(value: str | None) -> str:
    return "—" if not value else value.replace("T", " ")[:16] + " UTC"


def find_study(client: ServiceClient, name_or_id: str) -> dict[str, Any]:
    """The study by id (digits) or by name; a ServiceError naming the fix when there is none."""
    if name_or_id.isdigit():
        study: dict[str, Any] = client.get(f"/studies/{name_or_id}")
        return study
    items = client.get("/studies", name=name_or_id)["items"]
    if not items:
        raise ServiceError(f"no study named {name_or_id!r}; `headspec study list` shows them")
    found: dict[str, Any] = items[0]
    return found


@study_app.command("create")
def create(
    spec: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="study spec (YAML/JSON)")],
    url: ServiceUrl = None,
) -> None:
    """Record a study on the service; its scheduler fires it on the cron schedule."""
    try:
        body = read_study_data(spec)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"error: cannot read study spec {spec}: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    with exit_on_service_error(), ServiceClient.from_settings(base_url=url) as client:
        study = client.post("/studies", body)
    typer.echo(f"created study {study['id']} ({study['name']}): {study['cron']} ({study['timezone']}); "
               f"first firing at {_when(study['next_fire_at'])}")


@study_app.command("list")
def list_studies(
    url: ServiceUrl = None,
    limit: Annotated[int, typer.Option(min=1, help="How many (oldest first)")] = 100,
) -> None:
    """The studies and when each fires next."""
    with exit_on_service_error(), ServiceClient.from_settings(base_url=url) as client:
        page = client.get("/studies", limit=limit)
    table = Table(title="studies")
    for column in ("id", "name", "schedule", "next firing", "state"):
        table.add_column(column, justify="right" if column == "id" else "left")
    for s in page["items"]:
        table.add_row(str(s["id"]), s["name"], f"{s['cron']} ({s['timezone']})", _when(s["next_fire_at"]),
                      "paused" if s["paused"] else "active")
    _console().print(table)
    if page["next_cursor"]:
        typer.echo(f"(more: raise --limit above {limit})")


def _study_action(name_or_id: str, url: str | None, action: str) -> dict:
    """POST /studies/{id}/{action} for the study named or numbered ``name_or_id``."""
    with exit_on_service_error(), ServiceClient.from_settings(base_url=url) as client:
        study: dict = client.post(f"/studies/{find_study(client, name_or_id)['id']}/{action}")
    return study


@study_app.command("run-now")
def run_now(name_or_id: NameOrId, url: ServiceUrl = None) -> None:
    """Make the study due now: the service's scheduler fires it at its next poll."""
    study = _study_action(name_or_id, url, "run-now")
    typer.echo(f"study {study['id']} ({study['name']}) is due now; follow it with "
               f"`headspec study reports {study['name']}`")


@study_app.command("pause")
def pause(name_or_id: NameOrId, url: ServiceUrl = None) -> None:
    """No new firings until resumed (a running firing finishes)."""
    study = _study_action(name_or_id, url, "pause")
    typer.echo(f"study {study['id']} ({study['name']}) paused")


@study_app.command("resume")
def resume(name_or_id: NameOrId, url: ServiceUrl = None) -> None:
    """Fire again from the schedule's next time."""
    study = _study_action(name_or_id, url, "resume")
    typer.echo(f"study {study['id']} ({study['name']}) resumed; next firing at "
               f"{_when(study['next_fire_at'])}")


@study_app.command("reports")
def reports(
    name_or_id: NameOrId,
    url: ServiceUrl = None,
    limit: Annotated[int, typer.Option(min=1, help="How many firings (newest first)")] = 10,
    out: Annotated[Path | None, typer.Option(
        help="Write the newest firing report's HTML to this file")] = None,
) -> None:
    """The study's firings, newest first: status, sweep, and each report's title (or the error)."""
    with exit_on_service_error(), ServiceClient.from_settings(base_url=url) as client:
        study = find_study(client, name_or_id)
        firings = client.get(f"/studies/{study['id']}/firings", limit=limit)["items"]
        titles = {f["id"]: client.get(f"/firings/{f['id']}/report") for f in firings if f["report_id"]}
    if not firings:
        typer.echo(f"study {study['id']} ({study['name']}) has not fired yet; next firing at "
                   f"{_when(study['next_fire_at'])} (or `headspec study run-now {study['name']}`)")
        return
    table = Table(title=f"firings of study {study['id']} ({study['name']}), newest first")
    for column in ("firing", "scheduled for", "status", "sweep", "report", "what it says"):
        table.add_column(column, justify="right" if column in ("firing", "sweep", "report") else "left")
    for f in firings:
        report = titles.get(f["id"])
        said = report["title"] if report else (f["error"] or "")
        table.add_row(str(f["id"]), _when(f["scheduled_for"]), f["status"], str(f["sweep_id"] or "—"),
                      str(f["report_id"] or "—"), said)
    _console().print(table)
    if out is not None:
        newest = next((titles[f["id"]] for f in firings if f["id"] in titles), None)
        if newest is None:
            print("error: no firing of this study has a report yet", file=sys.stderr)
            raise typer.Exit(1)
        out.write_text(newest["content"] or "")
        typer.echo(f"wrote report {newest['id']} ({newest['title']}) to {out}")
