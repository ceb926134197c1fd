"""The study spec: a sweep that re-runs on a cron schedule, and the comparison each run makes.

```yaml
name: nightly-depth                 # unique among studies
description: Does the 2-layer induction head still form?
schedule: {cron: "0 3 * * *", timezone: Europe/Berlin}   # IANA zone; DST-correct
sweep: quickstart.yaml              # a sweep spec file (relative to this file), or the spec inline
compare:
  by: [model.n_layers]              # factors of the sweep (default: all of them)
  metrics: [max_induction, mean_specialization, n_distinct_roles, icl_score]   # the default
baseline: previous                  # the previous successful firing (default), or {firing: ID} / {sweep: ID}
missed: catch_up_once               # or skip: what a scheduler that was down does (schedule.py)
```

``load_study_spec(path)`` reads the file and embeds a referenced sweep file, so the stored
spec is self-contained; over the API the sweep must be inline. Validation errors are pydantic
``ValidationError``s whose locations name the field (``schedule.timezone``, ``compare.by``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from service.studies.schedule import MissedPolicy, ScheduleError, normalize_cron, zone
from service.sweeps.spec import SweepSpec

DEFAULT_METRICS = ("max_induction", "mean_specialization", "n_distinct_roles", "icl_score")
_METRIC_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cron: str = Field(
        description="Five-field cron expression (or @daily, @hourly, ...) on the zone's wall clock")
    timezone: str = Field("UTC", description="IANA time zone the cron expression is read in")

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str) -> str:
        try:
            return normalize_cron(cron)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, timezone: str) -> str:
        try:
            zone(timezone)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None
        return timezone


class Compare(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: list[str] | None = Field(
        None, description="Factors of the sweep to compare by level (default: all its factors)")
    metrics: list[str] = Field(
        default_factory=lambda: list(DEFAULT_METRICS), min_length=1,
        description="Per-variant quantities (see `headspec compare`): derived ones, emergence.<role>, "
        "or a stored metric")

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, metrics: list[str]) -> list[str]:
        for metric in metrics:
            if not _METRIC_RE.match(metric):
                raise ValueError(
                    f"{metric!r} is not a metric name, e.g. max_induction or emergence.induction")
        if len(set(metrics)) != len(metrics):
            raise ValueError("metrics are listed more than once")
        return metrics


class FixedBaseline(BaseModel):
    """Compare every firing against one fixed run instead of the previous firing."""

    model_config = ConfigDict(extra="forbid")
    firing: int | None = Field(
        None, ge=1, description="A firing id (of any study) whose sweep is the baseline")
    sweep: int | None = Field(None, ge=1, description="A sweep id")

    @model_validator(mode="after")
    def _one(self) -> FixedBaseline:
        if (self.firing is None) == (self.sweep is None):
            raise ValueError("give exactly one of firing: ID or sweep: ID (or baseline: previous)")
        return self


class StudySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
                      description="Unique study name (letters, digits, _ . -)")
    description: str = Field("", max_length=2000)
    schedule: Schedule
    sweep: SweepSpec = Field(
        description="The sweep each firing runs (inline; a file only via load_study_spec)")
    compare: Compare = Field(default_factory=lambda: Compare())
    baseline: Literal["previous"] | FixedBaseline = Field(
        "previous",
        description="previous: the study's previous successful firing; or {firing: ID} / {sweep: ID}")
    missed: MissedPolicy = Field(
        MissedPolicy.CATCH_UP_ONCE,
        description="When the scheduler was down past a firing: catch_up_once (fire once for the "
        "latest missed time) or skip")

    @field_validator("sweep", mode="before")
    @classmethod
    def _inline_sweep(cls, sweep: Any) -> Any:
        if isinstance(sweep, str):
            raise ValueError(
                f"sweep is a path ({sweep!r}): only a study file names its sweep file (headspec study "
                "create reads both); over the API give the sweep spec inline")
        return sweep

    @field_validator("compare")
    @classmethod
    def _factors_exist(cls, compare: Compare, info: ValidationInfo) -> Compare:
        sweep = info.data.get("sweep")
        if not isinstance(sweep, SweepSpec):
            return compare  # the sweep's own error is reported
        factors = list(sweep.factors)
        if compare.by is None:
            return compare
        unknown = [f for f in compare.by if f not in sweep.factors]
        if unknown:
            raise ValueError(f"by: {unknown} {'is' if len(unknown) == 1 else 'are'} not a factor of the "
                             f"sweep; its factors are {factors or 'none (give by: [])'}")
        if len(set(compare.by)) != len(compare.by):
            raise ValueError("by: a factor is listed more than once")
        return compare

    @model_validator(mode="after")
    def _default_by(self) -> StudySpec:
        if self.compare.by is None:  # compare by every factor of the sweep
            self.compare = self.compare.model_copy(update={"by": list(self.sweep.factors)})
        return self

    @property
    def by(self) -> list[str]:
        return list(self.compare.by or [])


def read_study_data(path: str | Path) -> dict[str, Any]:
    """The study file as a mapping, with a ``sweep: FILE`` reference replaced by that file's
    spec (relative paths resolve against the study file's folder). Not yet validated."""
    path = Path(path)
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a study spec is a mapping with name, schedule, sweep and compare")
    sweep = data.get("sweep")
    if isinstance(sweep, str):
        sweep_path = (path.parent / sweep).resolve()
        if not sweep_path.is_file():
            raise ValueError(f"{path}: sweep: no sweep spec file at {sweep_path}")
        sweep_text = sweep_path.read_text()
        # embedded unvalidated, so its errors are located under sweep.*
        data["sweep"] = json.loads(sweep_text) if sweep_path.suffix == ".json" else yaml.safe_load(sweep_text)
    return data


def load_study_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file (YAML or JSON), embedding its sweep file."""
    return StudySpec.model_validate(read_study_data(path))
