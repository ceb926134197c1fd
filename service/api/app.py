"""The FastAPI application of ``headspec serve``.

    app = create_app()                       # settings from the environment
    app = create_app(settings, store=store, launcher=launcher)   # tests, embedding

Start-up (the lifespan): open the store (an out-of-date schema is refused with the command
that upgrades it), build the launcher the settings name, ``reconcile`` the sweeps the store
says are pending or running (a live driver is adopted, a lost one submitted again: a
restarted service neither forgets a sweep nor runs it twice), then start every object in
``app.state.background`` (anything with ``start()`` / ``stop()``): the study scheduler when
``scheduler_enabled``, the MLflow mirror loop when ``mirror_every_seconds`` > 0. Shut-down
stops them in reverse order and closes the store; sweep drivers keep running (they are
adopted by the next start).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from service.api import (
    routes_comparisons,
    routes_head_metrics,
    routes_health,
    routes_reports,
    routes_studies,
    routes_sweeps,
    routes_variants,
)
from service.api.auth import TokenVerifier
from service.api.errors import install_error_handlers
from service.mirror.loop import MirrorLoop
from service.settings import Settings, get_settings
from service.store import Store
from service.studies.scheduler import Scheduler
from service.sweeps.launch import EmbeddedLauncher, RayJobLauncher, SweepLauncher, job_env, reconcile

log = logging.getLogger("headspec.api")


class Background(Protocol):
    """Work that runs alongside the API for its whole life (e.g. the study scheduler)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def make_launcher(settings: Settings) -> SweepLauncher:
    """The launcher ``settings.launcher`` names."""
    if settings.launcher == "ray-jobs":
        if not settings.ray_dashboard_address:
            raise ValueError("launcher=ray-jobs needs HEADSPEC_RAY_DASHBOARD_ADDRESS "
                             "(the cluster's Ray Jobs API, e.g. http://head:8265)")
        return RayJobLauncher(settings.ray_dashboard_address, settings.database_url, env=job_env(settings))
    return EmbeddedLauncher(settings.database_url, settings.artifact_dir, local=settings.driver_local)


def launcher_kind(launcher: SweepLauncher) -> str:
    if isinstance(launcher, EmbeddedLauncher):
        return "embedded"
    if isinstance(launcher, RayJobLauncher):
        return "ray-jobs"
    return type(launcher).__name__


def _scheduler(store: Store, launcher: SweepLauncher, settings: Settings) -> Background | None:
    return Scheduler(store, launcher, settings) if settings.scheduler_enabled else None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app.state
    settings: Settings = state.settings
    owns_store = state.store is None
    if owns_store:
        state.store = Store.open(settings.database_url, pool_size=settings.database_pool_size,
                                 max_overflow=settings.database_max_overflow)
    try:
        if state.launcher is None:
            state.launcher = make_launcher(settings)
        state.launcher_kind = launcher_kind(state.launcher)
        state.tokens = TokenVerifier(state.store)
        found = await run_in_threadpool(reconcile, state.store, state.launcher)  # logs each sweep
        log.info("reconciled %d active sweeps", len(found))
        scheduler = _scheduler(state.store, state.launcher, settings)
        if scheduler is not None:
            state.background.append(scheduler)
        state.scheduler_state = "on" if scheduler is not None else "off"
        if settings.mirror_every_seconds > 0:
            state.background.append(MirrorLoop(state.store, settings.mlflow_tracking_uri,
                                               settings.mirror_every_seconds))
        started: list[Background] = []
        try:
            for item in state.background:
                await run_in_threadpool(item.start)
                started.append(item)
            yield
        finally:
            for item in reversed(started):
                await run_in_threadpool(item.stop)
    finally:
        if owns_store:
            state.store.close()
            state.store = None


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    launcher: SweepLauncher | None = None,
) -> FastAPI:
    """The API. Without ``store`` the lifespan opens (and closes) one from the settings;
    without ``launcher`` it builds the one the settings name."""
    settings = settings or get_settings()
    app = FastAPI(
        title="headspec",
        summary="Sweeps of small transformers, every attention head probed, compared across runs",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.launcher = launcher
    app.state.launcher_kind = launcher_kind(launcher) if launcher is not None else settings.launcher
    app.state.scheduler_state = "off"
    app.state.background: list[Background] = []  # type: ignore[misc]
    install_error_handlers(app)
    routers: list[Any] = [routes_health, routes_sweeps, routes_variants, routes_head_metrics,
                          routes_comparisons, routes_reports, routes_studies]
    for module in routers:
        app.include_router(module.router)
    return app
