"""Pydantic models of every request and response body of the REST API.

Response models read the store's frozen entities directly (``from_attributes``), so a route
returns ``SweepOut.model_validate(sweep)`` and nothing is copied by hand.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.sweeps.spec import SweepSpec


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- errors ----------------------------------------------------------------------------------


class ErrorOut(BaseModel):
    """Every non-validation error: what went wrong, and how to fix it where there is a fix."""

    detail: str = Field(description="What went wrong and how to fix it")
    error: str = Field(description="Machine-readable kind: not_found, conflict, unauthorized, "
                       "store_unavailable, launch_failed, ...")


class FieldErrorOut(BaseModel):
    loc: list[str | int] = Field(
        description="Where: e.g. [body, spec, base, model, d_model] or [query, limit]; [] when unknown")
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """422: the request names something that does not exist or is not valid; field by field."""

    detail: list[FieldErrorOut]


# -- sweeps and variants ---------------------------------------------------------------------


class SweepSubmit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: SweepSpec = Field(description="A sweep spec, as in a spec file (see service/sweeps/spec.py)")


class SweepOut(Out):
    id: int
    name: str
    spec: dict[str, Any]
    status: str = Field(description="pending, running, succeeded, failed or cancelled")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    mlflow_run_id: str | None


class SweepDetailOut(SweepOut):
    variants: dict[str, int] = Field(description="Number of variants per status (statuses with none omitted)")
    n_variants: int


class SweepSubmitted(SweepDetailOut):
    launched: str = Field(description="Where the sweep's driver runs (a pid on a host, or a Ray job)")


class SweepPage(BaseModel):
    items: list[SweepOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page")


class VariantOut(Out):
    id: int
    sweep_id: int
    index: int = Field(description="Position within the sweep, 0-based")
    factors: dict[str, Any]
    config: dict[str, Any]
    pack_key: str
    status: str
    attempts: int = Field(description="How many times the variant's pack was started")
    last_error: str | None
    node: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    mlflow_run_id: str | None


class VariantPage(BaseModel):
    items: list[VariantOut]
    next_cursor: str | None


# -- head metrics ----------------------------------------------------------------------------


class HeadMetricOut(Out):
    variant_id: int
    step: int
    layer: int
    head: int
    metric: str
    value: float


class HeadMetricPage(BaseModel):
    items: list[HeadMetricOut]
    next_cursor: str | None


# -- comparisons -----------------------------------------------------------------------------


class LevelOut(BaseModel):
    factor: str
    level: Any = Field(description="The factor's value (JSON text for list or dict values)")
    n_units: int = Field(description="Units (seeds) averaged into the level's mean")
    mean: float | None
    ci_low: float | None = Field(description="95% bootstrap interval; null with fewer than 2 units")
    ci_high: float | None


class EffectOut(BaseModel):
    factor: str
    level_a: Any
    level_b: Any
    diff: float | None = Field(description="mean(b) - mean(a)")
    ci_low: float | None
    ci_high: float | None
    cohens_d: float | None


class ComparisonOut(BaseModel):
    sweep_id: int
    factor: str
    metric: str
    n_boot: int
    levels: list[LevelOut]
    effects: list[EffectOut]


# -- reports ---------------------------------------------------------------------------------


class ReportSummaryOut(Out):
    id: int
    kind: str
    sweep_id: int | None
    firing_id: int | None
    title: str | None
    path: str | None = Field(description="Where the report's artifact lies, if it has one")
    created_at: datetime


class ReportOut(ReportSummaryOut):
    content: str | None = Field(description="The report itself (HTML), if the store holds it")


class ReportPage(BaseModel):
    items: list[ReportSummaryOut]
    next_cursor: str | None


# -- health ----------------------------------------------------------------------------------


class StoreHealth(BaseModel):
    reachable: bool
    url: str = Field(description="The store's URL, password masked")
    revision: str | None = Field(description="The schema revision the database is at")
    head: str = Field(description="The revision this headspec needs")
    error: str | None = None


class HealthOut(BaseModel):
    status: str = Field(description="ok, or unavailable when the store cannot be reached")
    store: StoreHealth
    launcher: str = Field(description="embedded or ray-jobs")
    scheduler: str = Field(description="on or off (HEADSPEC_SCHEDULER_ENABLED)")
    auth: bool = Field(description="Whether tokens are required")
