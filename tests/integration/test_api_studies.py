"""Studies over the REST API (the app in-process, on SQLite and PostgreSQL): create, list, get,
pause/resume, run now, firings and their reports — and two real firings end to end, the
scheduler running inside the app, the second one's report comparing against the first."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.auth import issue_token
from service.settings import Settings
from service.store import Store
from service.sweeps.launch import EmbeddedLauncher
from tests.integration.api_support import wait_until
from tests.integration.study_support import InstantLauncher, study_spec


def _spec(name: str, **fields: Any) -> dict[str, Any]:
    return study_spec(name, cron="0 3 * * *", **fields).model_dump(mode="json")


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    settings = Settings(api_auth=True, scheduler_enabled=False)
    app = create_app(settings, store=store, launcher=InstantLauncher(store))
    token, _ = issue_token(store, "studies")
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as test_client:
        yield test_client


def _locs(response: Any) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [e["loc"] for e in response.json()["detail"]]


def test_create_list_get_pause_resume_run_now(client: TestClient, store: Store) -> None:
    assert client.post("/studies", json=_spec("nightly"), headers={"Authorization": ""}).status_code == 401
    response = client.post("/studies", json=_spec("nightly"))
    assert response.status_code == 201, response.text
    study = response.json()
    now = datetime.now(UTC)
    next_fire = datetime.fromisoformat(study["next_fire_at"])
    assert next_fire > now and next_fire.hour == 3 and next_fire - now <= timedelta(days=1)
    assert study["spec"]["compare"]["by"] == ["model.n_layers"] and study["paused"] is False
    assert client.post("/studies", json=_spec("nightly")).status_code == 409

    assert [s["name"] for s in client.get("/studies").json()["items"]] == ["nightly"]
    named = client.get("/studies", params={"name": "nightly"}).json()["items"]
    assert [s["id"] for s in named] == [study["id"]]
    assert client.get("/studies", params={"name": "other"}).json()["items"] == []
    assert client.get(f"/studies/{study['id']}").json()["name"] == "nightly"
    assert client.get("/studies/999").status_code == 404

    paused = client.post(f"/studies/{study['id']}/pause").json()
    assert paused["paused"] is True
    refused = client.post(f"/studies/{study['id']}/run-now")
    assert refused.status_code == 409 and "resume it first" in refused.json()["detail"]
    resumed = client.post(f"/studies/{study['id']}/resume").json()
    assert resumed["paused"] is False and datetime.fromisoformat(resumed["next_fire_at"]) > now
    due = client.post(f"/studies/{study['id']}/run-now").json()
    assert datetime.fromisoformat(due["next_fire_at"]) <= datetime.now(UTC)

    assert client.get(f"/studies/{study['id']}/firings").json() == {"items": [], "next_cursor": None}
    assert client.get("/studies/999/firings").status_code == 404
    missing = client.get("/firings/999/report")
    assert missing.status_code == 404 and "unknown study firing id 999" in missing.json()["detail"]


def test_invalid_studies_are_422_naming_the_field(client: TestClient, store: Store) -> None:
    bad_zone = _spec("z")
    bad_zone["schedule"]["timezone"] = "Mars/Olympus"
    assert ["body", "schedule", "timezone"] in _locs(client.post("/studies", json=bad_zone))
    bad_factor = _spec("f")
    bad_factor["compare"]["by"] = ["model.n_heads"]
    response = client.post("/studies", json=bad_factor)
    assert ["body", "compare"] in _locs(response) and "not a factor of the sweep" in response.text
    by_path = _spec("p")
    by_path["sweep"] = "quickstart.yaml"
    assert ["body", "sweep"] in _locs(client.post("/studies", json=by_path))
    bad_sweep = _spec("s")
    bad_sweep["sweep"]["seeds"] = 0
    assert ["body", "sweep", "seeds"] in _locs(client.post("/studies", json=bad_sweep))
    no_baseline = _spec("b", baseline={"sweep": 999})
    response = client.post("/studies", json=no_baseline)
    assert ["body", "baseline", "sweep"] in _locs(response) and "unknown sweep id 999" in response.text
    assert store.list_studies().items == []  # nothing was recorded


def test_two_firings_end_to_end_with_the_scheduler_in_the_app(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    settings = Settings(api_auth=False, scheduler_enabled=True, scheduler_poll_seconds=0.2)
    launcher = EmbeddedLauncher(database_url, tmp_path / "artifacts", local=True)
    app = create_app(settings, store=store, launcher=launcher)
    with TestClient(app) as client:
        assert client.get("/health").json()["scheduler"] == "on"
        study = client.post("/studies", json=_spec("e2e")).json()

        def fire() -> dict[str, Any]:
            before = {f["id"] for f in client.get(f"/studies/{study['id']}/firings").json()["items"]}
            assert client.post(f"/studies/{study['id']}/run-now").status_code == 200

            def finished() -> dict[str, Any] | None:
                items = client.get(f"/studies/{study['id']}/firings").json()["items"]
                new = [f for f in items if f["id"] not in before]
                return new[0] if new and new[0]["status"] in ("succeeded", "failed", "skipped") else None

            try:
                firing: dict[str, Any] = wait_until(finished, 180, "the firing to finish")
            except AssertionError:
                logs = [p.read_text()[-3000:] for p in (tmp_path / "artifacts").glob("drivers/*.log")]
                raise AssertionError("\n".join(logs)) from None
            assert firing["status"] == "succeeded", firing["error"]
            return firing

        first = fire()
        first_report = client.get(f"/firings/{first['id']}/report").json()
        assert "(first firing)" in first_report["title"] and first_report["sweep_id"] == first["sweep_id"]
        second = fire()
        assert second["sweep_id"] != first["sweep_id"]
        response = client.get(f"/firings/{second['id']}/report")
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["id"] == second["report_id"] and report["firing_id"] == second["id"]
        assert f"vs firing {first['id']}" in report["title"]
        assert f"sweep {first['sweep_id']}" in report["content"] and "moved" in report["content"]
        assert client.get(f"/reports/{report['id']}/html").status_code == 200
    # the app stopped its scheduler, which gave its lease back
    assert store.get_study(study["id"]).lease_owner is None
    assert store.previous_firing(second["id"]) == store.get_firing(first["id"])
