"""Sweeps: submit, list, look at, cancel; a sweep's variants."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from service.api.deps import Cursor, LauncherDep, Limit, ReadAuth, StoreDep, SweepId, WriteAuth
from service.api.errors import BAD_BODY, COMMON_RESPONSES, CONFLICT, NOT_FOUND
from service.api.schemas import (
    SweepDetailOut,
    SweepOut,
    SweepPage,
    SweepSubmit,
    SweepSubmitted,
    VariantPage,
)
from service.store import Store, Sweep, SweepStatus, VariantStatus
from service.sweeps.submit import cancel_submitted, submit_sweep

router = APIRouter(tags=["sweeps"], responses=COMMON_RESPONSES)


def sweep_detail(store: Store, sweep: Sweep) -> SweepDetailOut:
    counts = store.variant_status_counts(sweep.id)
    fields = SweepOut.model_validate(sweep).model_dump()
    return SweepDetailOut(**fields, variants=counts, n_variants=sum(counts.values()))


@router.post("/sweeps", status_code=status.HTTP_201_CREATED, response_model=SweepSubmitted,
             responses={**BAD_BODY, **CONFLICT})
def submit(body: SweepSubmit, store: StoreDep, launcher: LauncherDep, _: WriteAuth) -> SweepSubmitted:
    """Validate the spec, record the sweep and its variants, and start its driver. An invalid
    spec is a 422 naming the field, and nothing is recorded."""
    sweep, where = submit_sweep(store, launcher, body.spec)
    return SweepSubmitted(**sweep_detail(store, sweep).model_dump(), launched=where)


@router.get("/sweeps", response_model=SweepPage)
def list_sweeps(
    store: StoreDep,
    _: ReadAuth,
    status: SweepStatus | None = None,
    name: Annotated[str | None, Query(min_length=1, max_length=200, description="Exact sweep name")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> SweepPage:
    """Sweeps, newest first."""
    page = store.list_sweeps(status=status, name=name, cursor=cursor, limit=limit)
    return SweepPage.model_validate(page, from_attributes=True)


@router.get("/sweeps/{sweep_id}", response_model=SweepDetailOut, responses=NOT_FOUND)
def get_sweep(sweep_id: SweepId, store: StoreDep, _: ReadAuth) -> SweepDetailOut:
    """A sweep with the number of its variants in each status."""
    return sweep_detail(store, store.get_sweep(sweep_id))


@router.post("/sweeps/{sweep_id}/cancel", response_model=SweepDetailOut, responses={**NOT_FOUND, **CONFLICT})
def cancel(sweep_id: SweepId, store: StoreDep, launcher: LauncherDep, _: WriteAuth) -> SweepDetailOut:
    """Stop the sweep's driver and record it and its unfinished variants cancelled. A sweep
    that already succeeded or failed is a 409; cancelling a cancelled sweep changes nothing."""
    return sweep_detail(store, cancel_submitted(store, launcher, sweep_id))


@router.get("/sweeps/{sweep_id}/variants", response_model=VariantPage, responses=NOT_FOUND)
def list_variants(
    sweep_id: SweepId,
    store: StoreDep,
    _: ReadAuth,
    status: VariantStatus | None = None,
    cursor: Cursor = None,
    limit: Limit = 500,
) -> VariantPage:
    """The sweep's variants in index order."""
    page = store.list_variants(sweep_id, status=status, cursor=cursor, limit=limit)
    return VariantPage.model_validate(page, from_attributes=True)
