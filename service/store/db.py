"""Engines and the one transactional session helper.

SQLite: WAL journal, foreign keys on, a busy timeout, and SQLAlchemy (not the sqlite3
module) emits BEGIN so that write transactions can take the write lock up front
(``BEGIN IMMEDIATE``): a deferred transaction that reads and then writes cannot wait for a
concurrent writer in WAL mode and fails with "database is locked" instead.

PostgreSQL: ``postgresql+psycopg://`` (psycopg 3), a QueuePool sized by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from service.store.errors import InvalidInput

SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITE_OPTION = "headspec_write"


def parse_url(url: str | URL) -> URL:
    """Parse a database URL; plain ``postgresql://`` is taken to mean psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidInput(
            f"cannot parse database URL {url!r}: {exc}; expected e.g. sqlite:///headspec.db "
            "or postgresql+psycopg://user@host:5432/headspec"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise InvalidInput(
            f"unsupported database {parsed.get_backend_name()!r} in {safe_url(parsed)}; "
            "use sqlite:///path.db or postgresql+psycopg://user@host:5432/db"
        )
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL as text with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return str(url)


def make_engine(
    url: str | URL,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_timeout: float = 30.0,
    echo: bool = False,
) -> Engine:
    """An engine configured for headspec on SQLite or PostgreSQL."""
    parsed = parse_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": True}
    if parsed.get_backend_name() == "postgresql":
        kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout)
        return create_engine(parsed, **kwargs)
    kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    engine = create_engine(parsed, **kwargs)
    _configure_sqlite(engine, in_memory=parsed.database in (None, "", ":memory:"))
    return engine


def _configure_sqlite(engine: Engine, *, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN, see _on_begin
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; fsync at checkpoint
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class SessionFactory:
    """Opens sessions: ``with factory.session(write=True) as s: ...`` commits on success,
    rolls back on any exception, and always closes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._read = sessionmaker(bind=engine, expire_on_commit=False)
        self._write = sessionmaker(
            bind=engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False
        )

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        session = (self._write if write else self._read)()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
