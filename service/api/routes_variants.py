"""Variants: one trained configuration of a sweep (a sweep's list is under /sweeps/{id}/variants)."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import ReadAuth, StoreDep, VariantId
from service.api.errors import COMMON_RESPONSES, NOT_FOUND
from service.api.schemas import VariantOut

router = APIRouter(tags=["variants"], responses=COMMON_RESPONSES)


@router.get("/variants/{variant_id}", response_model=VariantOut, responses=NOT_FOUND)
def get_variant(variant_id: VariantId, store: StoreDep, _: ReadAuth) -> VariantOut:
    """A variant: its factor values, full config, status, attempts and last error."""
    return VariantOut.model_validate(store.get_variant(variant_id))
