"""Plain frozen entities the store returns. ORM classes never leave the store.

JSON fields (``spec``, ``factors``, ``config``, ``payload``) are returned as the decoded
Python values; treat them as read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SweepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class VariantStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class FiringStatus(StrEnum):
    RUNNING = "running"  # claimed by a scheduler replica, sweep being submitted / awaited
    ANALYSING = "analysing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "skipped"})


@dataclass(frozen=True, slots=True)
class Sweep:
    id: int
    name: str
    spec: Any
    status: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    mlflow_run_id: str | None


@dataclass(frozen=True, slots=True)
class NewVariant:
    """What :meth:`Store.create_sweep` / :meth:`Store.add_variants` need per variant."""

    factors: dict[str, Any]
    config: dict[str, Any]
    pack_key: str


@dataclass(frozen=True, slots=True)
class Variant:
    id: int
    sweep_id: int
    index: int  # position within the sweep, 0-based, unique per sweep
    factors: Any
    config: Any
    pack_key: str
    status: str
    attempts: int
    last_error: str | None
    node: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    mlflow_run_id: str | None


@dataclass(frozen=True, slots=True)
class HeadMetric:
    variant_id: int
    step: int
    layer: int
    head: int
    metric: str
    value: float


@dataclass(frozen=True, slots=True)
class ScalarMetric:
    variant_id: int
    step: int
    name: str
    value: float


@dataclass(frozen=True, slots=True)
class WriteResult:
    """``rows``: records in the batch after collapsing duplicate keys (last one wins);
    ``changed``: rows inserted or whose value changed (0 for a retried batch)."""

    rows: int
    changed: int


@dataclass(frozen=True, slots=True)
class Study:
    id: int
    name: str
    spec: Any
    cron: str
    timezone: str
    next_fire_at: datetime | None
    paused: bool
    lease_owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StudyFiring:
    id: int
    study_id: int
    scheduled_for: datetime
    status: str
    claimed_by: str | None
    sweep_id: int | None
    report_id: int | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class Report:
    id: int
    kind: str
    sweep_id: int | None
    firing_id: int | None
    title: str | None
    content: str | None
    path: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    kind: str
    payload: Any
    dedupe_key: str | None
    attempts: int
    last_error: str | None
    created_at: datetime
    available_at: datetime
    claimed_by: str | None
    claimed_until: datetime | None
    done: bool
    done_at: datetime | None


@dataclass(frozen=True, slots=True)
class HeadPatterns:
    """A variant's attention patterns ``[B, L, H, Q, K]`` (float32) at probe ``step`` on the
    first B examples of its probe batch; runs with the same ``batch_key`` saw the same tokens."""

    variant_id: int
    step: int
    batch_key: str
    patterns: Any  # numpy.ndarray [B, L, H, Q, K]


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A REST API token's record; the token itself is never stored."""

    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a keyset-paged listing. Pass ``next_cursor`` back as ``cursor`` to get
    the following page; it is ``None`` on the last page. Cursors are opaque strings."""

    items: list[T]
    next_cursor: str | None
