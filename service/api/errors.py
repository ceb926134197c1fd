"""Errors → HTTP responses, in one place: routes raise the store's errors (or a few of
their own) and never build error responses themselves.

=========================  ====  =====================================================
raised                     code  body
=========================  ====  =====================================================
NotFound                   404   ``{"detail": message, "error": "not_found"}``
Conflict                   409   ``{"detail": message, "error": "conflict"}``
InvalidInput, SpecError,   422   ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``
FieldError, bad request
StoreUnavailable,          503   ``{"detail": message, "error": "store_unavailable"}``
SchemaOutOfDate, the
database lost or busy
LaunchFailed               503   ``{"detail": message, "error": "launch_failed"}``
HTTPException (401, ...)   its   ``{"detail": message, "error": ...}``, its headers kept
=========================  ====  =====================================================

Validation errors do not echo the rejected input back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.schemas import ErrorOut, ValidationErrorOut
from service.store import Conflict, InvalidInput, NotFound, SchemaOutOfDate, StoreUnavailable
from service.sweeps.plan import SpecError
from service.sweeps.submit import LaunchFailed, spec_error_location

HTTP_ERRORS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 503: "unavailable"}
# what routes document besides their success response
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or invalid bearer token"},
    422: {"model": ValidationErrorOut, "description": "A parameter or the body is not valid"},
    503: {"model": ErrorOut, "description": "The store (or the cluster) cannot be reached"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "Unknown id"}}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": ErrorOut, "description": "Conflicting state"}}
BAD_BODY: dict[int | str, dict[str, Any]] = {400: {"model": ErrorOut, "description": "Unparseable body"}}


class FieldError(ValueError):
    """A request value that is well-formed but names nothing that exists (422)."""

    def __init__(self, loc: Sequence[str | int], msg: str, kind: str = "value_error") -> None:
        super().__init__(msg)
        self.loc = list(loc)
        self.msg = msg
        self.kind = kind


def _error(code: int, detail: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorOut(detail=detail, error=kind).model_dump(), status_code=code, headers=headers)


def _fields(errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse(ValidationErrorOut.model_validate({"detail": errors}).model_dump(), status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return _error(404, str(exc), "not_found")

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return _error(409, str(exc), "conflict")

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return _error(503, str(exc), "store_unavailable")

    # the store raises StoreUnavailable when it opens; a database lost (or too busy) while the
    # service runs surfaces as SQLAlchemy's own errors, which mean the same to a client
    @app.exception_handler(OperationalError)
    async def _lost(_: Request, exc: OperationalError) -> JSONResponse:
        lines = str(exc.orig or exc).strip().splitlines() or ["unknown"]
        return _error(503, f"the store cannot be reached or is busy ({lines[0]}); try again",
                      "store_unavailable")

    @app.exception_handler(PoolTimeout)
    async def _busy(_: Request, exc: PoolTimeout) -> JSONResponse:
        return _error(503, "every store connection is in use; try again, or raise "
                      "HEADSPEC_DATABASE_POOL_SIZE / HEADSPEC_DATABASE_MAX_OVERFLOW", "store_unavailable")

    @app.exception_handler(SchemaOutOfDate)
    async def _schema(_: Request, exc: SchemaOutOfDate) -> JSONResponse:
        return _error(503, str(exc), "schema_out_of_date")

    @app.exception_handler(LaunchFailed)
    async def _launch(_: Request, exc: LaunchFailed) -> JSONResponse:
        return _error(503, str(exc), "launch_failed")

    @app.exception_handler(InvalidInput)
    async def _invalid(_: Request, exc: InvalidInput) -> JSONResponse:
        return _fields([{"loc": [], "msg": str(exc), "type": "invalid_input"}])

    @app.exception_handler(SpecError)
    async def _spec(_: Request, exc: SpecError) -> JSONResponse:
        loc = ["body", "spec", *spec_error_location(exc)]
        return _fields([{"loc": loc, "msg": str(exc), "type": "spec_error"}])

    @app.exception_handler(FieldError)
    async def _field(_: Request, exc: FieldError) -> JSONResponse:
        return _fields([{"loc": exc.loc, "msg": exc.msg, "type": exc.kind}])

    @app.exception_handler(RequestValidationError)
    async def _request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) if not isinstance(p, int) else p for p in e.get("loc", ())],
                   "msg": str(e.get("msg", "")), "type": str(e.get("type", "value_error"))}
                  for e in exc.errors()]
        return _fields(errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return _error(exc.status_code, str(exc.detail), HTTP_ERRORS.get(exc.status_code, "error"), headers)
