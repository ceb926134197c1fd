"""Schema management: models vs migrations, the out-of-date check, `headspec db`."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from service.cli import app
from service.store import SchemaOutOfDate, Store, StoreUnavailable
from service.store.db import make_engine
from service.store.models import Base
from service.store.schema import alembic_config, alembic_dir, downgrade, head_revision, upgrade

runner = CliRunner()


def test_alembic_folder_does_not_shadow_the_library() -> None:
    folder = alembic_dir()
    assert not (folder / "__init__.py").exists()
    assert not (folder / "versions" / "__init__.py").exists()
    assert (Path(folder).parent / "alembic.ini").is_file()


def test_models_match_the_migrated_schema(database_url: str) -> None:
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_open_refuses_a_database_without_schema(empty_database_url: str) -> None:
    with pytest.raises(SchemaOutOfDate) as info:
        Store.open(empty_database_url)
    message = str(info.value)
    assert f"is at revision None, headspec needs {head_revision()}" in message
    assert "run: headspec db upgrade --database-url '" in message
    assert info.value.current is None


def test_open_refuses_a_stale_schema_and_upgrade_fixes_it(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    downgrade(empty_database_url, "base")  # alembic_version exists, at no revision
    with pytest.raises(SchemaOutOfDate, match="headspec db upgrade --database-url"):
        Store.open(empty_database_url)
    upgrade(empty_database_url)
    Store.open(empty_database_url).close()


def test_open_refuses_a_revision_newer_than_the_code(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    engine = create_engine(empty_database_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeedf00d'"))
    engine.dispose()
    with pytest.raises(SchemaOutOfDate, match="newer than this headspec knows"):
        Store.open(empty_database_url)


def test_cli_upgrade_creates_the_schema_and_current_reports_it(empty_database_url: str) -> None:
    result = runner.invoke(app, ["db", "current", "--database-url", empty_database_url])
    assert result.exit_code == 1
    assert "revision: None" in result.output
    assert "out of date; run: headspec db upgrade --database-url" in result.output

    result = runner.invoke(app, ["db", "upgrade", "--database-url", empty_database_url])
    assert result.exit_code == 0, result.output
    assert f"from revision None to {head_revision()}" in result.output
    engine = create_engine(empty_database_url, poolclass=NullPool)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {t.name for t in Base.metadata.sorted_tables} <= tables

    result = runner.invoke(app, ["db", "upgrade", "--database-url", empty_database_url])
    assert result.exit_code == 0
    assert "already at revision" in result.output
    result = runner.invoke(app, ["db", "current", "--database-url", empty_database_url])
    assert result.exit_code == 0
    assert "up to date" in result.output
    Store.open(empty_database_url).close()


def test_cli_reports_an_unreachable_database() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"
    result = runner.invoke(app, ["db", "current", "--database-url", url])
    assert result.exit_code == 1
    assert "cannot reach the store at postgresql+psycopg://postgres@127.0.0.1:1/nothing" in (result.output)
    with pytest.raises(StoreUnavailable):
        Store.open(url)


def test_alembic_config_carries_the_url_not_the_ini(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    cfg = alembic_config(url)
    assert cfg.attributes["database_url"] == url
    assert cfg.get_main_option("sqlalchemy.url") is None


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    engine.dispose()


def test_sqlite_write_transactions_take_the_write_lock_up_front(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE: a deferred read-then-write transaction cannot wait for a concurrent
    writer in WAL mode and fails with "database is locked" instead."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    upgrade(url)
    store = Store.open(url)
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda _c, _cur, stmt, *_: statements.append(stmt))
    store.create_sweep("s", {})
    store.list_sweeps()
    store.close()
    begins = [s for s in statements if s.startswith("BEGIN")]
    assert begins == ["BEGIN IMMEDIATE", "BEGIN"]
