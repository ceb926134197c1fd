"""Health: is the store reachable and at the right schema; which launcher; scheduler on or off."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.api.deps import StoreDep
from service.api.schemas import HealthOut, StoreHealth
from service.store import StoreError
from service.store import schema as store_schema

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
def health(request: Request, response: Response, store: StoreDep) -> HealthOut:
    """No token needed. 503 when the store cannot be reached or is not at the needed revision."""
    head = store_schema.head_revision()
    try:
        revision, error = store_schema.current_revision(store.engine), None
    except StoreError as exc:
        revision, error = None, str(exc)
    ok = error is None and revision == head
    if not ok:
        response.status_code = 503
    state = request.app.state
    return HealthOut(
        status="ok" if ok else "unavailable",
        store=StoreHealth(reachable=error is None, url=store.url, revision=revision, head=head, error=error),
        launcher=state.launcher_kind,
        scheduler=state.scheduler_state,
        auth=state.settings.api_auth,
    )
