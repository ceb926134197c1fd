"""`headspec serve` (the REST API on uvicorn) and `headspec token ...` (API tokens).

    headspec token create alice          # prints the token once; the store keeps its sha256
    HEADSPEC_API_TOKEN=hs_... headspec serve --host 0.0.0.0 --port 8600

Token commands talk to the store directly (``--database-url`` / HEADSPEC_DATABASE_URL), so
only someone who can reach the store can make tokens. Register with ``register(app)``.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from service.cli_db import DatabaseUrl
from service.settings import get_settings

token_app = typer.Typer(help="REST API tokens (stored as hashes; a token is shown once).",
                        no_args_is_help=True)
NO_AUTH_WARNING = ("WARNING: no tokens: anyone who can reach this port can submit sweeps "
                   "(--no-auth / HEADSPEC_API_AUTH=false; loopback only).")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name may resolve to any interface
        return False


def serve_command(host: str, port: int, *, no_auth: bool, database_url: str | None, log_level: str) -> int:
    import uvicorn

    from service.api.app import create_app
    from service.store import Store, StoreError

    err = Console(stderr=True, soft_wrap=True)
    update: dict[str, object] = {"api_host": host, "api_port": port}
    if no_auth:
        update["api_auth"] = False
    if database_url:
        update["database_url"] = database_url
    settings = get_settings().model_copy(update=update)
    if not settings.api_auth:
        if not is_loopback(host):
            err.print(f"[red]refusing to serve on {host} without tokens[/red]: anyone on the network "
                      "could submit sweeps. Bind 127.0.0.1, or turn tokens on (drop --no-auth / "
                      "HEADSPEC_API_AUTH=false) and create one with `headspec token create NAME`.")
            return 2
        err.print(f"[yellow]{NO_AUTH_WARNING}[/yellow]")
    try:  # refuse an unreachable or out-of-date store before uvicorn starts
        with Store.open(settings.database_url, pool_size=1, max_overflow=0) as store:
            live = [t for t in store.list_tokens() if t.revoked_at is None]
    except StoreError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 1
    if settings.api_auth and not live:
        err.print("[yellow]no API tokens yet: every request will be refused until you create one "
                  "with `headspec token create NAME`[/yellow]")
    _log_to_stderr(log_level)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)
    return 0


def _log_to_stderr(level: str) -> None:
    """Show headspec's own INFO logs (reconcile, scheduler) next to uvicorn's."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    for name in ("service", "headspec"):
        logger = logging.getLogger(name)
        logger.setLevel(level.upper())
        logger.addHandler(handler)
        logger.propagate = False


def _open_store(database_url: str | None):  # type: ignore[no-untyped-def]
    from service.store import Store

    return Store.open(database_url or get_settings().database_url, pool_size=1, max_overflow=0)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="A name to recognise the token by (who or what uses it)")],
    database_url: DatabaseUrl = None,
) -> None:
    """Create a token and print it once (stdout); the store keeps only its sha256."""
    from service.api.auth import issue_token
    from service.store import StoreError

    err = Console(stderr=True, soft_wrap=True)
    try:
        with _open_store(database_url) as store:
            token, record = issue_token(store, name)
    except StoreError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    sys.stdout.write(token + "\n")
    err.print(f"token {record.name!r} created (prefix {record.prefix}). It is shown only now: "
              "keep it, e.g. export HEADSPEC_API_TOKEN=<the token above>")


@token_app.command("list")
def token_list(database_url: DatabaseUrl = None) -> None:
    """The tokens: name, prefix, when made, last used, revoked."""
    from service.store import StoreError

    try:
        with _open_store(database_url) as store:
            tokens = store.list_tokens()
    except StoreError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    out = Console() if sys.stdout.isatty() else Console(width=140)
    table = Table(title=f"{len(tokens)} API tokens")
    for column in ("name", "prefix", "created", "last used", "revoked"):
        table.add_column(column)
    for t in tokens:
        table.add_row(t.name, t.prefix + "…", _when(t.created_at), _when(t.last_used_at), _when(t.revoked_at))
    out.print(table)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="The token's name")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a token: the service refuses it from the next request on."""
    from service.store import StoreError

    try:
        with _open_store(database_url) as store:
            record = store.revoke_token(name)
    except StoreError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    typer.echo(f"token {record.name!r} ({record.prefix}…) revoked")


def _when(value: object) -> str:
    return "—" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")

    @app.command()
    def serve(
        host: Annotated[str | None, typer.Option(
            help="Interface to bind (default: HEADSPEC_API_HOST, else 127.0.0.1)",
            show_default=False)] = None,
        port: Annotated[int | None, typer.Option(
            help="Port (default: HEADSPEC_API_PORT, else 8600)", show_default=False)] = None,
        no_auth: Annotated[bool, typer.Option(
            "--no-auth", help="No tokens (loopback only): anyone who can reach the port may submit")] = False,
        database_url: DatabaseUrl = None,
        log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    ) -> None:
        """Serve the REST API: submit sweeps, read results and comparisons (see /docs)."""
        settings = get_settings()
        code = serve_command(host or settings.api_host, port or settings.api_port, no_auth=no_auth,
                             database_url=database_url, log_level=log_level)
        if code:
            raise typer.Exit(code)
