"""`headspec db ...`: schema management of the SQL store."""

from __future__ import annotations

from typing import Annotated

import typer

db_app = typer.Typer(help="Manage the SQL store's schema.", no_args_is_help=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL of the store (default: HEADSPEC_DATABASE_URL, else sqlite:///headspec.db)",
        show_default=False,
    ),
]


def _url(database_url: str | None) -> str:
    if database_url:
        return database_url
    from service.settings import get_settings

    return get_settings().database_url


@db_app.command()
def upgrade(
    database_url: DatabaseUrl = None,
    revision: Annotated[str, typer.Option(help="Target revision")] = "head",
) -> None:
    """Apply migrations (creates the whole schema in an empty database)."""
    from service.store import schema
    from service.store.db import make_engine, safe_url
    from service.store.errors import StoreError

    url = _url(database_url)
    try:
        engine = make_engine(url, pool_size=1, max_overflow=0)
        try:
            before = schema.current_revision(engine)
            schema.upgrade(url, revision)
            after = schema.current_revision(engine)
        finally:
            engine.dispose()
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if before == after:
        typer.echo(f"{safe_url(url)} is already at revision {after}")
    else:
        typer.echo(f"upgraded {safe_url(url)} from revision {before} to {after}")


@db_app.command()
def current(database_url: DatabaseUrl = None) -> None:
    """Show the store's revision and whether it is up to date (exit 1 when it is not)."""
    from service.store import schema
    from service.store.db import make_engine, safe_url
    from service.store.errors import StoreError

    url = _url(database_url)
    try:
        engine = make_engine(url, pool_size=1, max_overflow=0)
        try:
            rev = schema.current_revision(engine)
        finally:
            engine.dispose()
        head = schema.head_revision()
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"store:    {safe_url(url)}\nrevision: {rev}\nhead:     {head}")
    if rev == head:
        typer.echo("up to date")
        return
    typer.echo(f"out of date; run: {schema.upgrade_command(url)}")
    raise typer.Exit(1)
