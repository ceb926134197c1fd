"""The one settings class: every knob headspec reads from the environment.

Each field is read from ``HEADSPEC_<FIELD>`` (e.g. ``HEADSPEC_DATABASE_URL``); the README's
settings table lists them all. Defaults are the embedded ones: SQLite and a local MLflow
store in the working directory, a local Ray started in-process.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEADSPEC_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///headspec.db",
        description="SQLAlchemy URL of the SQL store, e.g. "
        "postgresql+psycopg://user@host:5432/headspec",
    )
    database_pool_size: int = Field(
        default=5,
        description="Connections kept open per process to a PostgreSQL store (SQLAlchemy pool)",
    )
    database_max_overflow: int = Field(
        default=10,
        description="Extra PostgreSQL connections a process may open beyond the pool size",
    )
    mlflow_tracking_uri: str = Field(
        default="sqlite:///mlflow.db",
        description="MLflow tracking URI: a local store or http(s)://host:port of an mlflow server",
    )
    ray_address: str | None = Field(
        default=None,
        description="Address of an existing Ray cluster (ray://host:10001 or auto); "
        "unset starts a local Ray in-process",
    )
    artifact_dir: str = Field(
        default="headspec-artifacts",
        description="Where checkpoints and reports are written (a path every worker can reach)",
    )
    writers: int = Field(
        default=2,
        ge=1,
        description="Store writer actors of a Ray sweep: its database connections (plus the "
        "driver's one), however many packs run",
    )
    checkpoint_every: int = Field(
        default=100,
        ge=0,
        description="Training steps between a pack's checkpoints on Ray (0: none); a retried "
        "pack resumes from its last one",
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
