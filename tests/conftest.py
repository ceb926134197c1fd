"""Shared database fixtures: real SQLite files and real PostgreSQL databases.

* ``store``: a migrated, empty :class:`Store`, parametrized over ``sqlite`` and ``postgres``.
* ``database_url``: the URL of a migrated, empty database (same parameters).
* ``empty_database_url``: the URL of a database with no schema at all (same parameters).
* ``new_postgres_database``: a factory of fresh, uniquely named PostgreSQL databases.

PostgreSQL comes from ``HEADSPEC_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Each test session creates its own
``headspec_test_<random>`` databases through the server's ``postgres`` database and drops
them at the end, so concurrent sessions never collide. When the server is unreachable the
postgres cases are skipped, or fail when ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from service.store import Store
from service.store.models import Base
from service.store.schema import upgrade

DEFAULT_TEST_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _postgres_unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL is required)", pytrace=False)
    pytest.skip(reason)


class PostgresDatabases:
    """Creates uniquely named databases on one server and drops them all at the end."""

    def __init__(self, server_url: URL) -> None:
        self.server_url = server_url
        self.admin = create_engine(
            server_url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool
        )
        self.created: list[str] = []

    def create(self) -> str:
        name = f"headspec_test_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return self.server_url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    raw = os.environ.get("HEADSPEC_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL)
    url = make_url(raw)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    databases = PostgresDatabases(url)
    try:
        with databases.admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        databases.admin.dispose()
        reason = str(exc.orig or exc).strip().splitlines()[0]
        _postgres_unavailable(
            f"PostgreSQL at {url.render_as_string(hide_password=True)} is unreachable "
            f"({reason}); start it or set HEADSPEC_TEST_POSTGRES_URL"
        )
    yield databases
    databases.drop_all()


@pytest.fixture
def new_postgres_database(postgres_databases: PostgresDatabases) -> Callable[[], str]:
    """``new_postgres_database()`` → URL of a fresh empty database (dropped at session end)."""
    return postgres_databases.create


@pytest.fixture(scope="session")
def _migrated_postgres_url(postgres_databases: PostgresDatabases) -> str:
    url = postgres_databases.create()
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def _migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def _truncate_all(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a migrated database with no rows."""
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        shutil.copyfile(request.getfixturevalue("_migrated_sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("_migrated_postgres_url")
    _truncate_all(url)
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A :class:`Store` on a migrated, empty database (SQLite file or PostgreSQL)."""
    opened = Store.open(database_url, pool_size=4, max_overflow=4)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def _empty_postgres_url(postgres_databases: PostgresDatabases) -> str:
    return postgres_databases.create()


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a database without any schema: a new SQLite path, or a PostgreSQL database
    whose public schema was just recreated (cheaper than a new database per test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    url: str = request.getfixturevalue("_empty_postgres_url")
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url
