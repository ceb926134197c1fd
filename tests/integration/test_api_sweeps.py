"""A sweep's whole life over HTTP against a real `headspec serve`, on SQLite and PostgreSQL:
submit with a token, follow it to the end, page through variants and head metrics, compare,
read a report; and a slower sweep cancelled while it runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from analysis.comparison import compare_sweep
from service.store import Store
from tests.integration.api_support import (  # noqa: F401  (serve is a fixture)
    ApiServer,
    driver_log,
    driver_pid,
    make_token,
    pid_alive,
    serve,
    wait_until,
)
from tests.integration.specs import tiny_spec


def _all_pages(client: httpx.Client, path: str, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every item of a paged listing, following next_cursor; and the number of pages."""
    items: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        response = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages


def _wait_status(client: httpx.Client, sweep_id: int, statuses: tuple[str, ...], server: ApiServer,
                 timeout: float = 180.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/sweeps/{sweep_id}").json()
        return body if body["status"] in statuses else None

    try:
        return wait_until(done, timeout, f"sweep {sweep_id} to be {statuses}")  # type: ignore[no-any-return]
    except AssertionError:
        raise AssertionError(driver_log(server.workdir, sweep_id)) from None


def test_sweep_lifecycle_over_http(
    serve: Callable[..., ApiServer], database_url: str  # noqa: F811
) -> None:
    token = make_token(database_url)
    server = serve()
    client = server.client(token)
    spec = tiny_spec("api-life", factors={"model.n_layers": [1, 2]}, seeds=2)

    created = client.post("/sweeps", json={"spec": spec})
    assert created.status_code == 201, created.text
    sweep = created.json()
    assert sweep["name"] == "api-life" and sweep["n_variants"] == 4 and "pid" in sweep["launched"]

    done = _wait_status(client, sweep["id"], ("succeeded", "failed", "cancelled"), server)
    assert done["status"] == "succeeded", driver_log(server.workdir, sweep["id"])
    assert done["variants"] == {"succeeded": 4} and done["finished_at"] is not None

    listed = client.get("/sweeps", params={"status": "succeeded", "name": "api-life"}).json()
    assert [s["id"] for s in listed["items"]] == [sweep["id"]]

    variants, pages = _all_pages(client, f"/sweeps/{sweep['id']}/variants", limit=3)
    assert pages == 2 and [v["index"] for v in variants] == [0, 1, 2, 3]
    one = client.get(f"/variants/{variants[0]['id']}").json()
    assert one["factors"] == {"model.n_layers": 1} and one["attempts"] == 1

    with Store.open(database_url) as store:
        # one variant's head metrics, 7 a page: every stored row exactly once
        vid = variants[3]["id"]
        rows, pages = _all_pages(client, f"/variants/{vid}/head-metrics", limit=7)
        keys = [(r["metric"], r["step"], r["layer"], r["head"]) for r in rows]
        stored = store.read_head_metric_columns(variant_ids=[vid])
        assert len(keys) == len(set(keys)) == len(stored["value"]) and pages > 10
        assert set(keys) == set(zip(stored["metric"], stored["step"].tolist(), stored["layer"].tolist(),
                                    stored["head"].tolist(), strict=True))
        # one metric across the sweep, filtered to one head
        rows, _ = _all_pages(client, f"/sweeps/{sweep['id']}/head-metrics", metric="induction", limit=5)
        induction = store.read_head_metric_columns(sweep_id=sweep["id"], metrics=["induction"])
        assert len(rows) == len({(r["variant_id"], r["step"], r["layer"], r["head"]) for r in rows})
        assert len(rows) == len(induction["value"])
        assert sorted(r["value"] for r in rows) == sorted(induction["value"].tolist())
        head = client.get(f"/sweeps/{sweep['id']}/head-metrics",
                          params={"metric": "induction", "layer": 1, "head": 0, "step_min": 3}).json()
        assert head["items"] and {(r["layer"], r["head"]) for r in head["items"]} == {(1, 0)}
        assert min(r["step"] for r in head["items"]) >= 3

        # the comparison is the one `headspec compare` computes
        compared = client.get(f"/sweeps/{sweep['id']}/compare",
                              params={"by": "model.n_layers", "metric": "max_induction", "n_boot": 200})
        assert compared.status_code == 200, compared.text
        expected = compare_sweep(store, sweep["id"], "model.n_layers", "max_induction", n_boot=200)
        assert compared.json() == expected.to_dict()
        unknown = client.get(f"/sweeps/{sweep['id']}/compare", params={"by": "model.nope"})
        assert unknown.status_code == 422 and "model.n_layers" in unknown.text
        unknown = client.get(f"/sweeps/{sweep['id']}/compare",
                             params={"by": "model.n_layers", "metric": "zz"})
        assert unknown.status_code == 422 and "max_induction" in unknown.text

        report = store.create_report("sweep", sweep_id=sweep["id"], title="t", content="<h1>hello</h1>")
    reports = client.get(f"/sweeps/{sweep['id']}/reports").json()["items"]
    assert [r["id"] for r in reports] == [report.id] and "content" not in reports[0]
    assert client.get(f"/reports/{report.id}").json()["content"] == "<h1>hello</h1>"
    page = client.get(f"/reports/{report.id}/html")
    assert page.headers["content-type"].startswith("text/html") and page.text == "<h1>hello</h1>"
    assert client.post(f"/sweeps/{sweep['id']}/cancel").status_code == 409  # already succeeded

    # a slower sweep, cancelled while its driver trains
    slow = tiny_spec("api-slow", seeds=2)
    slow["base"]["train"] |= {"steps": 20000, "probe_every": 1000}
    slow_id = client.post("/sweeps", json={"spec": slow}).json()["id"]
    _wait_status(client, slow_id, ("running",), server)
    pid = driver_pid(server.artifacts, slow_id)
    assert pid is not None and pid_alive(pid)
    cancelled = client.post(f"/sweeps/{slow_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["variants"] == {"cancelled": 2}
    assert not pid_alive(pid)
    assert client.post(f"/sweeps/{slow_id}/cancel").json()["status"] == "cancelled"  # idempotent
    assert client.get("/health").json()["status"] == "ok"
