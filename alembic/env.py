"""Alembic environment for the headspec SQL store.

The database URL comes from the caller (``headspec db upgrade --database-url``, which puts
it in ``config.attributes["database_url"]``), or ``alembic -x database_url=...``, or else
the settings (``HEADSPEC_DATABASE_URL``). It is never hard-coded in alembic.ini.
"""

from __future__ import annotations

from logging.config import fileConfig

from sqlalchemy import Connection

from alembic import context
from service.store.db import make_engine
from service.store.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    url = context.get_x_argument(as_dictionary=True).get("database_url")
    if url:
        return url
    from service.settings import get_settings

    return get_settings().database_url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        # SQLAlchemy emits BEGIN on SQLite (service.store.db), so a failed migration
        # rolls back there too.
        transactional_ddl=True,
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_database_url(), pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
