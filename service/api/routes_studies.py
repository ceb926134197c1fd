"""Studies: create, list, look at, pause/resume, run now; their firings and each firing's report.

The scheduler (``service.studies.scheduler``, inside ``headspec serve``) does the firing; these
routes only record and steer studies (``service.studies.manage``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field

from service.api.deps import Cursor, Limit, ReadAuth, StoreDep, WriteAuth
from service.api.errors import BAD_BODY, COMMON_RESPONSES, CONFLICT, NOT_FOUND, FieldError
from service.api.schemas import Out, ReportOut
from service.store import FiringStatus, Page
from service.store.validation import MAX_INT32
from service.studies import manage
from service.studies.spec import StudySpec

router = APIRouter(tags=["studies"], responses=COMMON_RESPONSES)
StudyId = Annotated[int, Path(ge=1, le=MAX_INT32, description="Study id")]
FiringId = Annotated[int, Path(ge=1, le=MAX_INT32, description="Study firing id")]


class StudyOut(Out):
    id: int
    name: str
    spec: dict[str, Any] = Field(description="The study spec, its sweep embedded")
    cron: str
    timezone: str = Field(description="IANA zone the cron expression is read in")
    next_fire_at: datetime | None = Field(description="When it fires next (UTC); null: never")
    paused: bool
    lease_owner: str | None = Field(description="The scheduler replica driving its current firing")
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class StudyPage(BaseModel):
    items: list[StudyOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page")


class FiringOut(Out):
    id: int
    study_id: int
    scheduled_for: datetime = Field(description="The cron time it fired for (UTC)")
    status: str = Field(description="running, analysing, succeeded, failed or skipped")
    claimed_by: str | None = Field(description="The scheduler replica that claimed it")
    sweep_id: int | None
    report_id: int | None = Field(description="Its comparison report, once it succeeded")
    error: str | None = Field(description="Why it failed or was skipped")
    created_at: datetime
    finished_at: datetime | None


class FiringPage(BaseModel):
    items: list[FiringOut]
    next_cursor: str | None


@router.post("/studies", status_code=status.HTTP_201_CREATED, response_model=StudyOut,
             responses={**BAD_BODY, **CONFLICT})
def create_study(body: StudySpec, store: StoreDep, _: WriteAuth) -> StudyOut:
    """Record a study (its sweep inline); it fires first at its cron's next time. A name that
    is taken is a 409; an invalid spec a 422 naming the field."""
    try:
        return StudyOut.model_validate(manage.create_study(store, body))
    except manage.StudyFieldError as exc:
        raise FieldError(["body", *exc.loc], exc.msg) from None


@router.get("/studies", response_model=StudyPage)
def list_studies(
    store: StoreDep,
    _: ReadAuth,
    name: Annotated[str | None, Query(min_length=1, max_length=200, description="Exact study name")] = None,
    paused: bool | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> StudyPage:
    """Studies in the order they were created."""
    if name is not None:
        study = manage.study_named(store, name)
        found = [study] if study is not None and paused in (None, study.paused) else []
        return StudyPage.model_validate(Page(found, None), from_attributes=True)
    page = store.list_studies(paused=paused, cursor=cursor, limit=limit)
    return StudyPage.model_validate(page, from_attributes=True)


@router.get("/studies/{study_id}", response_model=StudyOut, responses=NOT_FOUND)
def get_study(study_id: StudyId, store: StoreDep, _: ReadAuth) -> StudyOut:
    return StudyOut.model_validate(store.get_study(study_id))


@router.post("/studies/{study_id}/pause", response_model=StudyOut, responses=NOT_FOUND)
def pause(study_id: StudyId, store: StoreDep, _: WriteAuth) -> StudyOut:
    """No new firings until resumed; a firing already running finishes."""
    return StudyOut.model_validate(manage.pause_study(store, study_id))


@router.post("/studies/{study_id}/resume", response_model=StudyOut, responses=NOT_FOUND)
def resume(study_id: StudyId, store: StoreDep, _: WriteAuth) -> StudyOut:
    """Fire again from the cron's next time (times passed while paused do not fire)."""
    return StudyOut.model_validate(manage.resume_study(store, study_id))


@router.post("/studies/{study_id}/run-now", response_model=StudyOut, responses={**NOT_FOUND, **CONFLICT})
def run_now(study_id: StudyId, store: StoreDep, _: WriteAuth) -> StudyOut:
    """Make the study due now: the scheduler's next poll fires it, then the cron goes on. A
    paused study is a 409."""
    return StudyOut.model_validate(manage.run_now(store, study_id))


@router.get("/studies/{study_id}/firings", response_model=FiringPage, responses=NOT_FOUND)
def list_firings(
    study_id: StudyId,
    store: StoreDep,
    _: ReadAuth,
    status: FiringStatus | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> FiringPage:
    """The study's firings, newest first."""
    page = store.list_firings(study_id, status=status, cursor=cursor, limit=limit)
    return FiringPage.model_validate(page, from_attributes=True)


@router.get("/firings/{firing_id}", response_model=FiringOut, responses=NOT_FOUND)
def get_firing(firing_id: FiringId, store: StoreDep, _: ReadAuth) -> FiringOut:
    return FiringOut.model_validate(store.get_firing(firing_id))


@router.get("/firings/{firing_id}/report", response_model=ReportOut, responses=NOT_FOUND)
def firing_report(firing_id: FiringId, store: StoreDep, _: ReadAuth) -> ReportOut:
    """The firing's comparison report (HTML in ``content``; also at /reports/{id}/html). 404
    with the reason while the firing runs, or when it failed or was skipped."""
    return ReportOut.model_validate(manage.firing_report(store, firing_id))
