"""Dependencies shared by the routers, as ``Annotated`` aliases.

    def get_sweep(sweep_id: SweepId, store: StoreDep, _: ReadAuth) -> SweepDetailOut: ...

``ReadAuth`` lets a request through without a token when ``api_auth`` is off or
``api_read_open`` is on; ``WriteAuth`` only when ``api_auth`` is off. Both resolve to the
caller's token record (or None where no token was needed).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials

from service.api.auth import authenticate, bearer
from service.settings import Settings
from service.store import ApiToken, Store
from service.store.validation import MAX_INT32, MAX_PAGE
from service.sweeps.launch import SweepLauncher


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _launcher(request: Request) -> SweepLauncher:
    launcher: SweepLauncher = request.app.state.launcher
    return launcher


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _read_auth(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> ApiToken | None:
    return authenticate(request, credentials, write=False)


def _write_auth(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> ApiToken | None:
    return authenticate(request, credentials, write=True)


StoreDep = Annotated[Store, Depends(_store)]
LauncherDep = Annotated[SweepLauncher, Depends(_launcher)]
SettingsDep = Annotated[Settings, Depends(_settings)]
ReadAuth = Annotated[ApiToken | None, Depends(_read_auth)]
WriteAuth = Annotated[ApiToken | None, Depends(_write_auth)]

SweepId = Annotated[int, Path(ge=1, le=MAX_INT32, description="Sweep id")]
VariantId = Annotated[int, Path(ge=1, le=MAX_INT32, description="Variant id")]
ReportId = Annotated[int, Path(ge=1, le=MAX_INT32, description="Report id")]
Cursor = Annotated[
    str | None,
    Query(max_length=200, description="The next_cursor of the previous page; omit for the first page"),
]
StepMin = Annotated[int | None, Query(ge=0, le=MAX_INT32, description="Lowest training step (inclusive)")]
StepMax = Annotated[int | None, Query(ge=0, le=MAX_INT32, description="Highest training step (inclusive)")]
Layer = Annotated[int | None, Query(ge=0, le=2**15 - 1, description="Only this layer")]
Head = Annotated[int | None, Query(ge=0, le=2**15 - 1, description="Only this head")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Page size (1 to {MAX_PAGE})")]

