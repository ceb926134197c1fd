"""The MLflow client the mirror uses, and how to tell "MLflow is down" from a bad item."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

# MLflow's REST client retries a refused connection 7 times with backoff factor 2 (about
# four minutes per request) before it gives up. The outbox is our retry: a drain that meets
# an unreachable MLflow should fail within seconds and leave the items for the next drain.
# MLflow would also print a "View run at ..." line for every run the mirror finishes.
# These apply only where the environment does not set them already.
CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def tracking_uri_or_default(tracking_uri: str | None) -> str:
    if tracking_uri:
        return tracking_uri
    from service.settings import get_settings

    return get_settings().mlflow_tracking_uri


def open_client(tracking_uri: str | None = None) -> MlflowClient:
    """An ``MlflowClient`` for ``tracking_uri`` (default: settings' ``mlflow_tracking_uri``,
    ``HEADSPEC_MLFLOW_TRACKING_URI``) with fail-fast HTTP retries (see ``CLIENT_DEFAULTS``).

    Refuses a file store (``file:`` or a plain directory): it appends every logged metric
    to a text file, so a re-sent batch would be stored twice. MLflow's SQL store (local
    ``sqlite:///...``, or any ``mlflow server``) skips exact duplicates, which the mirror
    relies on."""
    uri = tracking_uri_or_default(tracking_uri)
    if uri.startswith("file:") or "://" not in uri and not uri.startswith("databricks"):
        raise ValueError(
            f"MLflow tracking URI {uri!r} is a file store, where re-sent metrics would be "
            "stored twice; use a SQL store (e.g. sqlite:///mlflow.db) or an mlflow server URL"
        )
    for name, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    return _client(uri)


@lru_cache(maxsize=8)
def _client(tracking_uri: str) -> MlflowClient:
    # One client per URI and process: a local sqlite:// store runs MLflow's migrations
    # check on construction, which takes seconds.
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says MLflow could not be reached at all —
    refused connection, timeout, retries exhausted, 502/503/504 — rather than that MLflow
    rejected this item. MLflow wraps transport errors in ``MlflowException`` and keeps the
    original as ``__context__``."""
    import requests
    from mlflow.exceptions import MlflowException

    transport = (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                 requests.exceptions.RetryError, ConnectionError, TimeoutError)  # fmt: skip
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, transport):
            return True
        if isinstance(current, MlflowException) and current.get_http_status_code() in (502, 503, 504):
            return True
        current = current.__cause__ or current.__context__
    return False
