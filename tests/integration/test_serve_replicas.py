"""Two `headspec serve` processes on one PostgreSQL, each with its study scheduler, and a
study due every minute (the real clock): every due minute fires exactly once, driven by one of
the two, and each firing runs its sweep and stores its report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.store import Store
from service.store.schema import upgrade
from tests.integration.api_support import ApiServer, finish_drivers, make_token, wait_until
from tests.integration.study_support import study_spec

pytestmark = pytest.mark.slow
FIRINGS = 2


def test_two_serve_processes_fire_each_due_minute_once(new_postgres_database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url: str = new_postgres_database()
    upgrade(url)
    token = make_token(url)
    env = {"HEADSPEC_SCHEDULER_ENABLED": "true", "HEADSPEC_SCHEDULER_POLL_SECONDS": "0.5"}
    servers = [ApiServer(url, tmp_path / name, env=env).start() for name in ("a", "b")]
    try:
        with servers[0].client(token) as http:
            response = http.post("/studies", json=study_spec("every-minute").model_dump(mode="json"))
            assert response.status_code == 201, response.text
            study_id = response.json()["id"]
        created = datetime.now(UTC)
        with Store.open(url) as store:

            def finished() -> bool:
                firings = store.list_firings(study_id).items
                return sum(f.status == "succeeded" for f in firings) >= FIRINGS

            wait_until(finished, timeout=300, what=f"{FIRINGS} firings to succeed", every=1)
            before = datetime.now(UTC)
            firings = store.list_firings(study_id).items
            after = datetime.now(UTC)
            minutes = [created.replace(second=0, microsecond=0) + timedelta(minutes=m) for m in range(1, 10)]
            scheduled = sorted(f.scheduled_for for f in firings)
            # one firing per due minute, no more, no fewer; each claimed by one replica
            assert len(set(scheduled)) == len(scheduled)
            assert {t for t in minutes if t <= before} <= set(scheduled) <= {t for t in minutes if t <= after}
            assert all(f.claimed_by for f in firings)
            done = [f for f in firings if f.status == "succeeded"]
            assert all(f.report_id is not None and f.sweep_id is not None for f in done)
            assert len({f.sweep_id for f in firings}) == len(firings)  # no sweep submitted twice
            with servers[1].client(token) as http:
                latest = max(done, key=lambda f: f.scheduled_for)
                report = http.get(f"/firings/{latest.id}/report").json()
                assert report["firing_id"] == latest.id
    finally:
        for server in servers:
            server.stop()
        for name in ("a", "b"):
            finish_drivers(tmp_path / name)
