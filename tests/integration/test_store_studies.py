"""Studies, firings and the exactly-once claim; reports."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from service.store import Conflict, InvalidInput, NotFound, Store, Study, StudyFiring

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
HOURLY: Callable[[Study], datetime | None] = lambda s: (s.next_fire_at or T0) + timedelta(hours=1)  # noqa: E731


def _study(store: Store, name: str = "nightly", **kw: object) -> Study:
    return store.create_study(name, {"sweep": "x.yaml"}, "0 * * * *", "UTC", next_fire_at=T0, **kw)  # type: ignore[arg-type]


def test_create_get_update_list(store: Store) -> None:
    study = _study(store)
    assert study.next_fire_at == T0 and not study.paused and study.lease_owner is None
    assert store.get_study(study.id) == study
    assert store.get_study_by_name("nightly") == study
    with pytest.raises(Conflict, match="a study named 'nightly' exists"):
        _study(store)
    paused = store.update_study(study.id, paused=True, timezone="Europe/Berlin")
    assert paused.paused and paused.timezone == "Europe/Berlin" and paused.cron == study.cron
    assert store.update_study(study.id, next_fire_at=None).next_fire_at is None
    _study(store, "second")
    assert [s.name for s in store.list_studies().items] == ["nightly", "second"]
    assert [s.name for s in store.list_studies(paused=True).items] == ["nightly"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"next_fire_at": datetime(2030, 1, 1)}, "naive datetime"),
        ({"cron": "x" * 101}, "cron is 101 characters long"),
    ],
)
def test_bad_study_input(store: Store, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"cron": "0 * * * *", "timezone": "UTC", "next_fire_at": T0}
    args.update(kwargs)
    with pytest.raises(InvalidInput, match=message):
        store.create_study("s", {}, **args)  # type: ignore[arg-type]
    assert store.list_studies().items == []


def test_claim_due_firing_once_and_advance(store: Store) -> None:
    study = _study(store)
    assert store.claim_due_firing("a", HOURLY, now=T0 - timedelta(seconds=1)) is None  # not due
    firing = store.claim_due_firing("a", HOURLY, now=T0)
    assert isinstance(firing, StudyFiring)
    assert (firing.study_id, firing.scheduled_for, firing.status) == (study.id, T0, "running")
    assert firing.claimed_by == "a"
    after = store.get_study(study.id)
    assert after.next_fire_at == T0 + timedelta(hours=1)
    assert after.lease_owner == "a" and after.lease_expires_at == T0 + timedelta(seconds=300)
    assert store.claim_due_firing("b", HOURLY, now=T0) is None  # the same time: gone
    # due again an hour later, but "a" still holds the lease: "b" must wait
    later = T0 + timedelta(hours=1)
    assert store.claim_due_firing("b", HOURLY, now=later - timedelta(minutes=56)) is None
    assert store.release_study_lease(study.id, "a")
    second = store.claim_due_firing("b", HOURLY, now=later)
    assert second is not None and second.scheduled_for == later


def test_paused_and_expired_leases(store: Store) -> None:
    study = _study(store, paused=True)
    assert store.claim_due_firing("a", HOURLY, now=T0) is None
    store.update_study(study.id, paused=False)
    assert store.acquire_study_lease(study.id, "x", now=T0, lease_seconds=60)
    assert not store.acquire_study_lease(study.id, "y", now=T0 + timedelta(seconds=30))
    assert store.claim_due_firing("a", HOURLY, now=T0 + timedelta(seconds=30)) is None
    renewed = store.acquire_study_lease(study.id, "x", now=T0 + timedelta(seconds=30), lease_seconds=60)
    assert renewed
    # x's lease lapses at T0+90s; then a replica takes over
    firing = store.claim_due_firing("a", HOURLY, now=T0 + timedelta(seconds=91))
    assert firing is not None and firing.claimed_by == "a"
    assert not store.release_study_lease(study.id, "x")


def test_next_fire_at_must_move_forward(store: Store) -> None:
    study = _study(store)
    with pytest.raises(InvalidInput, match="not after the firing being claimed"):
        store.claim_due_firing("a", lambda s: s.next_fire_at, now=T0)
    assert store.get_study(study.id).next_fire_at == T0
    assert store.list_firings(study.id).items == []
    last = store.claim_due_firing("a", lambda s: None, now=T0)  # None: stop firing
    assert last is not None and store.get_study(study.id).next_fire_at is None


def test_two_replicas_racing_claim_each_firing_exactly_once(store: Store, database_url: str) -> None:
    """Two replicas, each with its own engine (as two processes would have)."""
    replicas = {f"replica-{i}": Store.open(database_url) for i in range(2)}
    studies = [_study(store, f"s{i}") for i in range(3)]
    claimed: list[StudyFiring] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)
    lock = threading.Lock()

    def replica(owner: str) -> None:
        try:
            barrier.wait()
            for _ in range(6):
                firing = replicas[owner].claim_due_firing(owner, HOURLY, now=T0 + timedelta(minutes=5))
                if firing is not None:
                    with lock:
                        claimed.append(firing)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(owner,)) for owner in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for replica_store in replicas.values():
        replica_store.close()
    assert errors == []
    assert sorted(f.study_id for f in claimed) == [s.id for s in studies]
    for study in studies:
        assert len(store.list_firings(study.id).items) == 1


def test_firing_updates_previous_and_reports(store: Store) -> None:
    study = _study(store)
    sweep, _ = store.create_sweep("firing sweep", {})
    first = store.claim_due_firing("a", HOURLY, now=T0)
    assert first is not None
    store.release_study_lease(study.id, "a")
    second = store.claim_due_firing("a", HOURLY, now=T0 + timedelta(hours=1))
    assert second is not None
    assert store.previous_firing(second.id) is None  # first has not succeeded
    report = store.create_report(
        "comparison", sweep_id=sweep.id, firing_id=first.id, title="t", content="<h1>r</h1>"
    )
    done = store.update_firing(first.id, status="succeeded", sweep_id=sweep.id, report_id=report.id)
    assert (done.status, done.sweep_id, done.report_id) == ("succeeded", sweep.id, report.id)
    assert done.finished_at is not None
    assert store.previous_firing(second.id) == done
    assert store.get_report(report.id).content == "<h1>r</h1>"
    assert [r.id for r in store.list_reports(firing_id=first.id).items] == [report.id]
    assert [f.id for f in store.list_firings(study.id, status="running").items] == [second.id]
    with pytest.raises(NotFound, match="unknown report id 999"):
        store.update_firing(second.id, report_id=999)
    with pytest.raises(InvalidInput, match="needs content or a path"):
        store.create_report("comparison", sweep_id=sweep.id)
    with pytest.raises(NotFound, match="unknown sweep id 999"):
        store.create_report("comparison", sweep_id=999, path="/x.html")
