"""Head metrics: one variant's, or one metric across a sweep's variants; keyset-paged.

Pages follow the store's primary-key order, so a deep page costs what the first one does:
pass each page's ``next_cursor`` back as ``cursor`` until it is null.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.api.deps import (
    Cursor,
    Head,
    Layer,
    Limit,
    ReadAuth,
    StepMax,
    StepMin,
    StoreDep,
    SweepId,
    VariantId,
)
from service.api.errors import COMMON_RESPONSES, NOT_FOUND
from service.api.schemas import HeadMetricPage

router = APIRouter(tags=["head metrics"], responses={**COMMON_RESPONSES, **NOT_FOUND})
MetricName = Annotated[str, Query(min_length=1, max_length=100, description="Metric name, e.g. induction")]


@router.get("/variants/{variant_id}/head-metrics", response_model=HeadMetricPage)
def variant_head_metrics(
    variant_id: VariantId,
    store: StoreDep,
    _: ReadAuth,
    step_min: StepMin = None,
    step_max: StepMax = None,
    metric: Annotated[list[str] | None, Query(
        max_length=100, description="Only these metrics (repeat the parameter for several)")] = None,
    layer: Layer = None,
    head: Head = None,
    cursor: Cursor = None,
    limit: Limit = 1000,
) -> HeadMetricPage:
    """One variant's head metrics, ordered by (metric, step, layer, head). All heads at one
    step: ``step_min=step_max=S``. An unknown metric is a 404 listing the known ones."""
    page = store.list_head_metrics(variant_id, step_min=step_min, step_max=step_max, metrics=metric,
                                   layer=layer, head=head, cursor=cursor, limit=limit)
    return HeadMetricPage.model_validate(page, from_attributes=True)


@router.get("/sweeps/{sweep_id}/head-metrics", response_model=HeadMetricPage)
def sweep_head_metrics(
    sweep_id: SweepId,
    metric: MetricName,
    store: StoreDep,
    _: ReadAuth,
    step_min: StepMin = None,
    step_max: StepMax = None,
    layer: Layer = None,
    head: Head = None,
    cursor: Cursor = None,
    limit: Limit = 1000,
) -> HeadMetricPage:
    """One metric across every variant of a sweep, ordered by (variant, step, layer, head).
    One head across training: ``layer=L&head=H``."""
    page = store.list_sweep_head_metrics(sweep_id, metric, step_min=step_min, step_max=step_max,
                                         layer=layer, head=head, cursor=cursor, limit=limit)
    return HeadMetricPage.model_validate(page, from_attributes=True)
