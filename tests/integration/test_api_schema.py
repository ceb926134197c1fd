"""Property-based: requests generated from the service's own OpenAPI schema (schemathesis on
hypothesis) against a real server on SQLite and PostgreSQL never get a 5xx, and every
answer matches the schema's documented status codes and bodies."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from service.store import NewVariant, Store
from tests.integration.api_support import ApiServer, make_token, serve  # noqa: F401  (serve is a fixture)

EXAMPLES = 20  # per operation; the whole run stays well under a minute


def _seed(database_url: str) -> None:
    """A finished sweep with variants, head metrics and a report, so ids 1.. exist."""
    with Store.open(database_url, pool_size=1, max_overflow=0) as store:
        sweep, variants = store.create_sweep("seeded", {"name": "seeded"}, [
            NewVariant({"model.n_heads": h}, {"seed": 0, "model": {"n_heads": h}}, f"p{h}") for h in (1, 2)])
        n = 2 * 3 * 2
        store.write_head_metrics({
            "variant_id": np.repeat([v.id for v in variants], n // 2),
            "step": np.tile(np.repeat([0, 5, 10], 2), 2),
            "layer": np.zeros(n, dtype=np.int64), "head": np.tile([0, 1], n // 2), "metric": "induction",
            "value": np.linspace(0, 1, n)})
        store.finish_variants([v.id for v in variants], "succeeded", mirror=False)
        store.set_sweep_status(sweep.id, "succeeded", mirror=False)
        store.create_report("sweep", sweep_id=sweep.id, title="seeded", content="<p>seeded</p>")


def test_generated_requests_get_no_server_errors(
    serve: Callable[..., ApiServer], database_url: str  # noqa: F811
) -> None:
    _seed(database_url)
    token = make_token(database_url)
    server = serve()
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance]
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:
        # valid and invalid requests; and valid ones aimed at the seeded ids (1), where most
        # of each route's code runs, besides random ids (mostly 404)
        existing = {p.name: 1 for p in operation.path_parameters}
        cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                          operation.as_strategy(GenerationMode.NEGATIVE),
                          operation.as_strategy(GenerationMode.POSITIVE, path_parameters=existing))

        @given(case=cases)
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=checks, timeout=60)

        check()
    # a generated spec that happened to be valid would be running now: stop it
    with server.client(token) as client:
        for sweep in client.get("/sweeps", params={"status": "pending"}).json()["items"]:
            client.post(f"/sweeps/{sweep['id']}/cancel")
        for sweep in client.get("/sweeps", params={"status": "running"}).json()["items"]:
            client.post(f"/sweeps/{sweep['id']}/cancel")
    assert time.monotonic() - started < 60
