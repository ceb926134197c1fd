"""A scratch PostgreSQL database for a benchmark: created on entry, dropped on exit (even on
failure) unless ``keep``; ``None`` when the server is unreachable (the benchmark skips it)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextmanager
def scratch_postgres(server_url: str | None = None, keep: bool = False) -> Iterator[str | None]:
    server = make_url(server_url or os.environ.get("HEADSPEC_TEST_POSTGRES_URL", DEFAULT_PG))
    if server.drivername in ("postgresql", "postgres"):
        server = server.set(drivername="postgresql+psycopg")
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"headspec_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        print(f"PostgreSQL unreachable, skipped: {str(exc.orig).splitlines()[0]}")
        admin.dispose()
        yield None
        return
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        if keep:
            print(f"kept PostgreSQL database: {url}")
        else:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
