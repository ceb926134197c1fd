"""The HTTP client of ``headspec serve``: base URL, bearer token, errors a person can act on.

    with ServiceClient.from_settings() as client:          # HEADSPEC_SERVICE_URL, HEADSPEC_API_TOKEN
        sweep = client.submit_sweep(spec_dict)
        client.get(f"/sweeps/{sweep['id']}")               # any endpoint: get / post / request

Every failure is a :class:`ServiceError` whose message says what to do: the service is not
running (:class:`ServiceUnreachable`), the token is missing or refused (:class:`AuthRefused`),
the request was invalid (:class:`RequestInvalid`, with the server's errors field by field),
or anything else the service answered (status and its message). The token never appears in
a message. CLI commands wrap their work in :func:`exit_on_service_error`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import httpx

from service.settings import Settings, get_settings

TOKEN_HELP = ("create a token with `headspec token create NAME` (against the service's store) "
              "and set HEADSPEC_API_TOKEN")


class ServiceError(Exception):
    """The service could not do what was asked; ``str()`` says why and what to do."""

    exit_code = 1

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServiceUnreachable(ServiceError):
    pass


class AuthRefused(ServiceError):
    pass


class RequestInvalid(ServiceError):
    """422: ``fields`` holds ``(location, message)`` pairs, e.g. ``("spec.base.model.d_model", "...")``."""

    exit_code = 2

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self.fields = fields
        lines = [f"  {loc}: {msg}" if loc else f"  {msg}" for loc, msg in fields]
        super().__init__("the service refused the request:\n" + "\n".join(lines), status=422)


class ServiceClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.has_token = bool(token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                  transport=transport)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, base_url: str | None = None) -> ServiceClient:
        settings = settings or get_settings()
        return cls(base_url or settings.service_url, settings.api_token)

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- any endpoint ------------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json: Any = None) -> Any:
        """Send one request; the decoded JSON body of a 2xx answer, else a ServiceError."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, path, params=params, json=json)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ServiceUnreachable(
                f"no headspec service at {self.base_url} ({exc.__class__.__name__}): start one with "
                "`headspec serve` or set HEADSPEC_SERVICE_URL"
            ) from None
        except httpx.TimeoutException:
            raise ServiceError(f"the headspec service at {self.base_url} did not answer in time "
                               f"({method} {path})") from None
        except httpx.HTTPError as exc:
            raise ServiceError(f"request to the headspec service at {self.base_url} failed: {exc}") from None
        if response.is_success:
            return response.json() if response.content else None
        raise self._error(response)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None, **params: Any) -> Any:
        return self.request("POST", path, params=params, json=json)

    # -- sweeps ------------------------------------------------------------------------------

    def submit_sweep(self, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.post("/sweeps", {"spec": spec})
        return result

    def list_sweeps(self, *, status: str | None = None, name: str | None = None, cursor: str | None = None,
                    limit: int = 50) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/sweeps", status=status, name=name, cursor=cursor, limit=limit)
        return result

    def get_sweep(self, sweep_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/sweeps/{sweep_id}")
        return result

    def cancel_sweep(self, sweep_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.post(f"/sweeps/{sweep_id}/cancel")
        return result

    # -- errors ------------------------------------------------------------------------------

    def _error(self, response: httpx.Response) -> ServiceError:
        code = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        detail = body.get("detail") if isinstance(body, dict) else None
        if code == 422 and isinstance(detail, list):
            return RequestInvalid([_field(e) for e in detail])
        text = response.text.strip()[:500] or response.reason_phrase
        message = detail if isinstance(detail, str) else text
        if code in (401, 403):
            if not self.has_token:
                return AuthRefused(f"the headspec service at {self.base_url} needs a token: {TOKEN_HELP}",
                                   status=code)
            return AuthRefused(
                f"the headspec service at {self.base_url} refused the token in HEADSPEC_API_TOKEN: {message}",
                status=code)
        return ServiceError(f"{code} from the headspec service at {self.base_url}: {message}", status=code)


def _field(error: Any) -> tuple[str, str]:
    if not isinstance(error, dict):
        return "", str(error)
    loc = [str(p) for p in error.get("loc") or []]
    if loc and loc[0] in ("body", "query", "path"):
        loc = loc[1:] if loc[0] == "body" else loc
    return ".".join(loc), str(error.get("msg", ""))


@contextmanager
def exit_on_service_error() -> Iterator[None]:
    """For CLI commands: a ServiceError is printed to stderr and ends the process with its
    exit code (2 for an invalid request, 1 otherwise)."""
    try:
        yield
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
