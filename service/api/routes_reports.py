"""Reports: what analysis stored about a sweep (or a study firing), and the HTML itself."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from service.api.deps import Cursor, Limit, ReadAuth, ReportId, StoreDep, SweepId
from service.api.errors import COMMON_RESPONSES, NOT_FOUND
from service.api.schemas import ReportOut, ReportPage
from service.store import NotFound

router = APIRouter(tags=["reports"], responses={**COMMON_RESPONSES, **NOT_FOUND})
# reports are self-contained (inline CSS, data-URI images): nothing else may load or run
REPORT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


@router.get("/sweeps/{sweep_id}/reports", response_model=ReportPage)
def sweep_reports(sweep_id: SweepId, store: StoreDep, _: ReadAuth, cursor: Cursor = None,
                  limit: Limit = 50) -> ReportPage:
    """The sweep's reports, newest first (without their content)."""
    store.get_sweep(sweep_id)  # an unknown sweep is a 404, not an empty list
    page = store.list_reports(sweep_id=sweep_id, cursor=cursor, limit=limit)
    return ReportPage.model_validate(page, from_attributes=True)


@router.get("/reports/{report_id}", response_model=ReportOut)
def get_report(report_id: ReportId, store: StoreDep, _: ReadAuth) -> ReportOut:
    return ReportOut.model_validate(store.get_report(report_id))


@router.get("/reports/{report_id}/html", response_class=HTMLResponse,
            responses={200: {"content": {"text/html": {}}, "description": "The report as HTML"}})
def report_html(report_id: ReportId, store: StoreDep, _: ReadAuth) -> HTMLResponse:
    """The report's content as a page of its own."""
    report = store.get_report(report_id)
    if report.content is None:
        where = f"; its artifact is at {report.path}" if report.path else ""
        raise NotFound(f"report {report_id} has no content in the store{where}")
    return HTMLResponse(report.content, headers=REPORT_HEADERS)
