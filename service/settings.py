"""The one settings class: every knob headspec reads from the environment.

Each field is read from ``HEADSPEC_<FIELD>`` (e.g. ``HEADSPEC_DATABASE_URL``); the README's
settings table lists them all. Defaults are the embedded ones: SQLite and a local MLflow
store in the working directory, a local Ray started in-process.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

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
    node_name: str | None = Field(
        default=None,
        description="Name a Ray node's packs record on their variants (set it in the environment "
        "of `ray start` on that node); unset: the hostname",
    )
    checkpoint_every: int = Field(
        default=100,
        ge=0,
        description="Training steps between a pack's checkpoints on Ray (0: none); a retried "
        "pack resumes from its last one",
    )

    # -- the service (`headspec serve`) and its clients ------------------------------------
    api_host: str = Field(
        default="127.0.0.1",
        description="Interface `headspec serve` binds (0.0.0.0: every interface; needs tokens)",
    )
    api_port: int = Field(default=8600, ge=1, le=65535, description="Port `headspec serve` listens on")
    service_url: str = Field(
        default="http://127.0.0.1:8600",
        description="Where the CLI's sweep/study commands find `headspec serve`",
    )
    api_token: str | None = Field(
        default=None,
        description="Bearer token the CLI sends to the service (create one: `headspec token create`)",
    )
    api_auth: bool = Field(
        default=True,
        description="Require bearer tokens; false only for local embedded use (serve refuses a "
        "non-loopback host without tokens)",
    )
    api_read_open: bool = Field(
        default=False,
        description="Let read endpoints (GET) through without a token; writes always need one",
    )
    launcher: Literal["embedded", "ray-jobs"] = Field(
        default="embedded",
        description="Who runs a submitted sweep's driver: a child process of `headspec serve` "
        "(embedded) or a Ray Job on the cluster at ray_dashboard_address",
    )
    ray_dashboard_address: str | None = Field(
        default=None,
        description="Ray Jobs API of the cluster (http://head:8265), for launcher=ray-jobs",
    )
    driver_local: bool = Field(
        default=False,
        description="Embedded drivers train packs in their own process instead of a local Ray",
    )
    scheduler_enabled: bool = Field(
        default=True,
        description="Run the study scheduler inside `headspec serve` (any number of replicas)",
    )
    mirror_every_seconds: float = Field(
        default=30.0, ge=0,
        description="How often `headspec serve` drains the MLflow outbox (what drivers could not "
        "send); 0: never (then run `headspec mirror drain`)",
    )
    scheduler_poll_seconds: float = Field(
        default=5.0, gt=0, description="How often the scheduler looks for due studies"
    )
    scheduler_lease_seconds: float = Field(
        default=300.0, gt=0,
        description="How long a replica holds a study's firing without renewing it before "
        "another replica may take the firing over",
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
