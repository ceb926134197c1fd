"""ORM models: the schema of the SQL store. Private to :mod:`service.store`.

Change the schema only together with a new Alembic revision under ``alembic/versions``
(``tests/integration/test_store_schema.py`` fails when the two disagree).

``head_metrics`` is the hot table and is built for ingest speed:

* narrow rows: integer metric ids (``metric_names``), smallint layer/head, no surrogate key;
* one index only, the primary key ``(variant_id, metric_id, step, layer, head)``. It serves
  "one metric across all variants of a sweep" (variant_id IN sweep, metric_id = m), "one head
  across steps" (variant, metric, then a step range filtered on layer/head), and "all heads of
  a variant at a step" as ``variant_id = v AND metric_id IN (all ids) AND step = s`` (the
  store adds the IN list: metric names are few). A second index would halve ingest speed;
* no foreign keys: PostgreSQL checks each one with a trigger per row, which cut bulk ingest
  threefold. The store validates variant ids before every write and deletes a sweep's metrics
  with the sweep; nothing else deletes variants.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# String limits; the store validates against them before writing (SQLite would not).
NAME_LEN = 200
STATUS_LEN = 20
KIND_LEN = 50
METRIC_NAME_LEN = 100
NODE_LEN = 255
OWNER_LEN = 200
CRON_LEN = 100
TIMEZONE_LEN = 64
PATH_LEN = 1024
RUN_ID_LEN = 64
DEDUPE_KEY_LEN = 200
BATCH_KEY_LEN = 64
TOKEN_HASH_LEN = 64  # hex sha256
TOKEN_PREFIX_LEN = 16


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as
    naive UTC (which keeps lexicographic comparison correct) and come back tagged UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; pass a timezone-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime}


class SweepRow(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN), index=True)
    spec: Mapped[Any] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(STATUS_LEN), index=True)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(RUN_ID_LEN))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class VariantRow(Base):
    __tablename__ = "variants"
    __table_args__ = (UniqueConstraint("sweep_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    factors: Mapped[Any] = mapped_column(JSONType)
    config: Mapped[Any] = mapped_column(JSONType)
    pack_key: Mapped[str] = mapped_column(String(NAME_LEN))
    status: Mapped[str] = mapped_column(String(STATUS_LEN))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    node: Mapped[str | None] = mapped_column(String(NODE_LEN))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(RUN_ID_LEN))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


Index("ix_variants_sweep_id_status", VariantRow.sweep_id, VariantRow.status)


class MetricNameRow(Base):
    """Lookup for head- and scalar-metric names; ids are < 32768 (smallint in the hot table)."""

    __tablename__ = "metric_names"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(METRIC_NAME_LEN), unique=True)


class HeadMetricRow(Base):
    __tablename__ = "head_metrics"

    # no foreign keys on purpose (see the module docstring)
    variant_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    metric_id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    layer: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    head: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    value: Mapped[float] = mapped_column(Double)


class ScalarMetricRow(Base):
    __tablename__ = "scalar_metrics"

    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id", ondelete="CASCADE"), primary_key=True)
    metric_id: Mapped[int] = mapped_column(SmallInteger, ForeignKey("metric_names.id"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[float] = mapped_column(Double)


class HeadPatternsRow(Base):
    """A variant's attention patterns at its last probe, on the first examples of its probe
    batch: what cross-run head matching compares (compressed float16, see patterns.py)."""

    __tablename__ = "head_patterns"

    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer)
    batch_key: Mapped[str] = mapped_column(String(BATCH_KEY_LEN), index=True)
    shape: Mapped[Any] = mapped_column(JSONType)  # [B, L, H, Q, K]
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiTokenRow(Base):
    """A bearer token of the REST API. Only its sha256 is stored, never the token."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN), unique=True)
    token_hash: Mapped[str] = mapped_column(String(TOKEN_HASH_LEN), unique=True)
    prefix: Mapped[str] = mapped_column(String(TOKEN_PREFIX_LEN))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class StudyRow(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN), unique=True)
    spec: Mapped[Any] = mapped_column(JSONType)
    cron: Mapped[str] = mapped_column(String(CRON_LEN))
    timezone: Mapped[str] = mapped_column(String(TIMEZONE_LEN))
    next_fire_at: Mapped[datetime | None] = mapped_column(index=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(OWNER_LEN))
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StudyFiringRow(Base):
    __tablename__ = "study_firings"
    __table_args__ = (UniqueConstraint("study_id", "scheduled_for"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    scheduled_for: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(STATUS_LEN))
    claimed_by: Mapped[str | None] = mapped_column(String(OWNER_LEN))
    sweep_id: Mapped[int | None] = mapped_column(ForeignKey("sweeps.id", ondelete="SET NULL"), index=True)
    report_id: Mapped[int | None] = mapped_column(
        ForeignKey("reports.id", ondelete="SET NULL", use_alter=True)
    )
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class ReportRow(Base):
    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(KIND_LEN))
    sweep_id: Mapped[int | None] = mapped_column(ForeignKey("sweeps.id", ondelete="SET NULL"), index=True)
    firing_id: Mapped[int | None] = mapped_column(
        ForeignKey("study_firings.id", ondelete="SET NULL"), index=True
    )
    title: Mapped[str | None] = mapped_column(String(NAME_LEN))
    content: Mapped[str | None] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(String(PATH_LEN))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxRow(Base):
    """Work still to be mirrored to MLflow (transactional outbox)."""

    __tablename__ = "mlflow_outbox"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(KIND_LEN))
    payload: Mapped[Any] = mapped_column(JSONType)
    # Same key = same work: enqueueing it again while it is still pending is a no-op.
    dedupe_key: Mapped[str | None] = mapped_column(String(DEDUPE_KEY_LEN), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(OWNER_LEN))
    claimed_until: Mapped[datetime | None]
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    done_at: Mapped[datetime | None]


Index("ix_mlflow_outbox_done_available_at", OutboxRow.done, OutboxRow.available_at)
