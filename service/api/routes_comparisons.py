"""Comparisons: one metric of a sweep across the levels of a factor (``headspec compare``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from analysis.compare import N_BOOT
from analysis.comparison import UnknownFactor, compare_sweep
from service.api.deps import ReadAuth, StoreDep, SweepId
from service.api.errors import COMMON_RESPONSES, NOT_FOUND, FieldError
from service.api.schemas import ComparisonOut
from service.store import InvalidInput

router = APIRouter(tags=["comparisons"], responses={**COMMON_RESPONSES, **NOT_FOUND})


@router.get("/sweeps/{sweep_id}/compare", response_model=ComparisonOut)
def compare(
    sweep_id: SweepId,
    by: Annotated[str, Query(min_length=1, max_length=200, description="Factor, e.g. model.n_layers")],
    store: StoreDep,
    _: ReadAuth,
    metric: Annotated[str, Query(min_length=1, max_length=100, description=(
        "Derived quantity (max_induction, mean_specialization, frac_<role>, n_distinct_roles, "
        "icl_score, train_loss) or a stored metric name"))] = "max_induction",
    n_boot: Annotated[int, Query(ge=100, le=20_000, description="Bootstrap resamples")] = N_BOOT,
) -> ComparisonOut:
    """Per-level means with 95% bootstrap CIs over seeds, and every pairwise difference with
    its CI and Cohen's d. An unknown factor or metric is a 422 listing what exists."""
    try:
        result = compare_sweep(store, sweep_id, by, metric, n_boot=n_boot)
    except InvalidInput:
        raise
    except UnknownFactor as exc:
        raise FieldError(["query", "by"], str(exc), "unknown_factor") from None
    except ValueError as exc:  # the metric is unknown or has no value in this sweep
        raise FieldError(["query", "metric"], str(exc), "unknown_metric") from None
    return ComparisonOut.model_validate(result.to_dict())
