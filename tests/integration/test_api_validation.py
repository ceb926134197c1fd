"""Invalid requests are 422s that name the field, and a refused spec records nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.store import Store
from tests.integration.api_support import ApiServer, make_token, serve  # noqa: F401  (serve is a fixture)
from tests.integration.specs import tiny_spec


def _with(**changes: Any) -> dict[str, Any]:
    spec = tiny_spec("bad")
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = spec
        for key in parents:
            node = node[key]
        node[last] = value
    return spec


def _errors(response) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    assert response.status_code == 422, response.text
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in response.json()["detail"]]


def test_bad_specs_name_the_field_and_record_nothing(
    serve: Callable[..., ApiServer], database_url: str  # noqa: F811
) -> None:
    server = serve()
    client = server.client(make_token(database_url))

    [(loc, msg)] = _errors(client.post("/sweeps", json={"spec": _with(base__model__d_model=15)}))
    assert loc == "body.spec.base.model.d_model"
    assert "model.d_model=15 is not divisible by model.n_heads" in msg

    spec = tiny_spec("bad", factors={"model.n_heads": [2, 3]})
    [(loc, msg)] = _errors(client.post("/sweeps", json={"spec": spec}))
    assert loc == "body.spec.base.model.d_model" and "variant {'model.n_heads': 3}" in msg

    [(loc, msg)] = _errors(client.post("/sweeps", json={"spec": _with(colour="red")}))
    assert loc == "body.spec.colour" and "Extra inputs" in msg

    [(loc, msg)] = _errors(client.post("/sweeps", json={"spec": _with(base__model__bogus=1)}))
    assert loc == "body.spec.base.model" and "bogus" in msg

    [(loc, msg)] = _errors(client.post("/sweeps", json={"spec": _with(factors={"nosection": [1]})}))
    assert loc == "body.spec.factors" and "dotted path" in msg

    assert ("body.spec", "Field required") in _errors(client.post("/sweeps", json={}))
    assert _errors(client.post("/sweeps", content=b"{not json", headers={"content-type": "application/json"}))
    nul = _errors(client.post("/sweeps", json={"spec": _with(description="a\x00b")}))
    assert "NUL" in nul[0][1]

    with Store.open(database_url) as store:
        assert store.list_sweeps().items == [] and store.count_head_metrics() == 0
    assert not (server.artifacts / "drivers").exists() or not any((server.artifacts / "drivers").iterdir())

    # parameters
    assert _errors(client.get("/sweeps", params={"limit": 0}))[0][0] == "query.limit"
    assert _errors(client.get("/sweeps", params={"status": "done"}))[0][0] == "query.status"
    assert "cursor" in _errors(client.get("/sweeps", params={"cursor": "x.y"}))[0][1]
    assert "NUL" in _errors(client.get("/sweeps", params={"name": "a\x00"}))[0][1]
    assert _errors(client.get("/sweeps/0"))[0][0] == "path.sweep_id"
    assert _errors(client.get("/sweeps/1/head-metrics"))[0][0] == "query.metric"
    assert client.get("/sweeps/1").status_code == 404
    assert client.get("/sweeps/1").json()["error"] == "not_found"
