"""`headspec mirror drain` (the store's outbox into MLflow) and `headspec ui` (the MLflow UI on
the local store)."""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated

import typer

from service.cli_db import DatabaseUrl

mirror_app = typer.Typer(help="Mirror the SQL store to MLflow.", no_args_is_help=True)

TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default: HEADSPEC_MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
        show_default=False,
    ),
]


@mirror_app.command()
def drain(
    database_url: DatabaseUrl = None,
    tracking_uri: TrackingUri = None,
    max_items: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many outbox items (default: all due)")
    ] = None,
) -> None:
    """Mirror every pending outbox item to MLflow (exit 1 if any failed; they stay queued)."""
    from service.mirror import drain as drain_outbox
    from service.mirror import open_client
    from service.mirror.client import tracking_uri_or_default
    from service.store import Store, StoreError

    uri = tracking_uri_or_default(tracking_uri)
    try:
        client = open_client(uri)
        with Store.open(database_url) as store:
            result = drain_outbox(store, client, max_items=max_items)
            pending = store.outbox_pending_count()
    except (StoreError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"mirrored {result.items} outbox items ({result.metrics_logged} metrics, "
        f"{result.metrics_per_second:.0f}/s) to {uri} in {result.seconds:.1f} s; "
        f"{result.failed} failed, {pending} pending"
    )
    if result.failed:
        typer.echo("failed items stay queued and are retried by the next drain (see the log above)", err=True)
        raise typer.Exit(1)


def register_ui(app: typer.Typer) -> None:
    """Add `headspec ui` to ``app``."""

    @app.command()
    def ui(
        tracking_uri: TrackingUri = None,
        host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port of the UI")] = 5000,
    ) -> None:
        """Open the MLflow UI on the local MLflow store (runs `mlflow ui`)."""
        from service.mirror.client import tracking_uri_or_default

        uri = tracking_uri_or_default(tracking_uri)
        if uri.startswith(("http://", "https://")):
            typer.echo(f"MLflow is served at {uri}; open it in a browser")
            return
        command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                   "--host", host, "--port", str(port), "--workers", "1"]  # fmt: skip
        typer.echo(f"MLflow UI on {uri}: http://{host}:{port} (Ctrl+C stops it)")
        try:
            code = subprocess.call(command)
        except KeyboardInterrupt:
            code = 0
        raise typer.Exit(code)
