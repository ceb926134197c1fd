"""Alembic glue: where the migrations live, which revision the code needs, which one a
database is at, and the check that refuses to open an out-of-date store."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

import service
from alembic import command
from service.store.db import parse_url, safe_url
from service.store.errors import SchemaOutOfDate, StoreError, StoreUnavailable


def alembic_dir() -> Path:
    """``<repo>/alembic``: env.py and versions/ (the only way the schema changes)."""
    path = Path(service.__file__).resolve().parents[1] / "alembic"
    if not (path / "env.py").is_file() or not (path / "versions").is_dir():
        raise StoreError(
            f"Alembic migrations not found at {path} (expected env.py and versions/); "
            "run headspec from a checkout of the repository (pip install -e .)"
        )
    return path


def alembic_config(url: str | URL) -> Config:
    """An Alembic config for ``url`` (read by ``alembic/env.py`` from ``attributes``)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(alembic_dir()))
    cfg.attributes["database_url"] = parse_url(url).render_as_string(hide_password=False)
    return cfg


def head_revision() -> str:
    script = ScriptDirectory(str(alembic_dir()))
    heads = script.get_heads()
    if len(heads) != 1:
        raise StoreError(f"alembic/versions has {len(heads)} heads {heads}; merge them first")
    return heads[0]


def known_revisions() -> set[str]:
    script = ScriptDirectory(str(alembic_dir()))
    return {rev.revision for rev in script.walk_revisions()}


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            heads = MigrationContext.configure(conn).get_current_heads()
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise StoreUnavailable(
            f"cannot reach the store at {safe_url(engine.url)}: {reason}; check that the "
            "database server is running and the URL (HEADSPEC_DATABASE_URL / --database-url)"
        ) from None
    if len(heads) > 1:
        raise StoreError(f"the store at {safe_url(engine.url)} has several revisions {heads}")
    return heads[0] if heads else None


def upgrade_command(url: str | URL) -> str:
    return f"headspec db upgrade --database-url '{safe_url(url)}'"


def check_schema(engine: Engine) -> None:
    """Raise :class:`SchemaOutOfDate` unless the database is at the code's head revision."""
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return
    url = safe_url(engine.url)
    if current is not None and current not in known_revisions():
        hint = (
            f"revision {current} is newer than this headspec knows; "
            "run a headspec version that includes it (upgrade headspec, not the database)"
        )
    else:
        hint = f"run: {upgrade_command(engine.url)}"
    raise SchemaOutOfDate(url, current, head, hint)


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (an empty database gets the whole schema)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | URL, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)
