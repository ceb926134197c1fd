"""The study scheduler on SQLite and PostgreSQL: every due firing taken exactly once by
concurrent replicas (threads, then processes), the missed-firing policy, and a firing that
outlives a dead replica and a restart, with a real sweep and its comparison report."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from service.store import Store, StudyFiring, SweepStatus, VariantStatus
from service.studies.scheduler import Scheduler, TickResult
from service.sweeps.launch import EmbeddedLauncher
from tests.integration.api_support import wait_until
from tests.integration.study_support import (
    MINUTE,
    SECOND,
    T0,
    FakeClock,
    InstantLauncher,
    add_study,
    scheduler_settings,
)

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("succeeded", "failed", "skipped")


def _firings(store: Store, study_id: int) -> list[StudyFiring]:
    return sorted(store.list_firings(study_id, limit=1000).items, key=lambda f: f.scheduled_for)


def _assert_unique_per_scheduled_time(database_url: str, firing: StudyFiring) -> None:
    """No (study, scheduled_for) twice, and the schema itself refuses a second one."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            dupes = conn.execute(text("SELECT study_id, scheduled_for FROM study_firings GROUP BY "
                                      "study_id, scheduled_for HAVING COUNT(*) > 1")).all()
            assert dupes == []
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text("INSERT INTO study_firings (study_id, scheduled_for, status, created_at) "
                              "SELECT study_id, scheduled_for, 'running', created_at FROM study_firings "
                              "WHERE id = :id"), {"id": firing.id})
    finally:
        engine.dispose()


def _check_exactly_once(store: Store, database_url: str, study_id: int, n: int,
                        started: dict[str, list[int]]) -> None:
    firings = _firings(store, study_id)
    assert [f.scheduled_for for f in firings] == [T0 + k * MINUTE for k in range(n)]
    claimed = [fid for ids in started.values() for fid in ids]
    assert sorted(claimed) == sorted(f.id for f in firings)  # each started by exactly one replica
    by_id = {f.id: f for f in firings}
    for owner, ids in started.items():
        assert all(by_id[i].claimed_by == owner for i in ids)
    # the instant launcher cancels each sweep: every firing ended, none was missed
    assert {f.status for f in firings} == {"failed"}
    assert all("was cancelled" in (f.error or "") for f in firings)
    study = store.get_study(study_id)
    assert study.next_fire_at == T0 + n * MINUTE and study.lease_owner is None
    _assert_unique_per_scheduled_time(database_url, firings[0])


def test_two_replicas_in_threads_fire_each_minute_exactly_once(store: Store, database_url: str) -> None:
    n = 8
    study = add_study(store, "every-minute", now=T0 - SECOND)
    assert study.next_fire_at == T0
    clock = FakeClock(T0)
    replicas = [Store.open(database_url, pool_size=2, max_overflow=2) for _ in range(2)]
    schedulers = [Scheduler(s, InstantLauncher(s), scheduler_settings(), owner=f"replica-{i}", clock=clock)
                  for i, s in enumerate(replicas)]
    started: dict[str, list[int]] = {s.owner: [] for s in schedulers}
    barrier = threading.Barrier(2)

    def tick(scheduler: Scheduler) -> TickResult:
        barrier.wait()  # both replicas race for the same due firing
        return scheduler.tick()

    try:
        with ThreadPoolExecutor(2) as pool:
            for minute in range(n):
                clock.now = T0 + minute * MINUTE
                for scheduler, result in zip(schedulers, pool.map(tick, schedulers), strict=True):
                    assert result.skipped == []
                    started[scheduler.owner].extend(result.started)
            # ticking again within the last minute fires nothing more
            assert all(not r.started for r in pool.map(tick, schedulers))
    finally:
        for s in replicas:
            s.close()
    _check_exactly_once(store, database_url, study.id, n, started)


@pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_two_replica_processes_fire_each_minute_exactly_once(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    """Two OS processes, each its own engine and Scheduler, in lockstep on a fake minute the
    test advances through a file (so they race on every minute, like two `headspec serve` on
    one PostgreSQL; the thread test above covers SQLite)."""
    n = 6
    study = add_study(store, "every-minute-procs", now=T0 - SECOND)
    clock_file = tmp_path / "clock"
    acks = {f"proc-{i}": tmp_path / f"ack-{i}.json" for i in range(2)}
    procs = [subprocess.Popen([sys.executable, "-m", "tests.integration.study_support", database_url, owner,
                               str(clock_file), str(ack)], cwd=ROOT, stderr=subprocess.PIPE)
             for owner, ack in acks.items()]

    def acked(minute: int) -> dict[str, list[int]] | None:
        for proc in procs:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"a replica exited: {err}")
        seen = {}
        for owner, ack in acks.items():
            try:
                body = json.loads(ack.read_text())
            except (OSError, ValueError):
                return None
            if body["minute"] < minute:
                return None
            seen[owner] = body["started"]
        return seen

    try:
        started: dict[str, list[int]] = {}
        for minute in range(n):
            clock_file.write_text(str(minute))
            started = wait_until(lambda m=minute: acked(m), 90, f"both replicas to tick minute {minute}",
                                 every=0.01)
        clock_file.write_text("stop")
        for proc in procs:
            assert proc.wait(timeout=30) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    _check_exactly_once(store, database_url, study.id, n, started)


@pytest.mark.parametrize("policy", ["catch_up_once", "skip"])
def test_missed_firings_after_downtime(store: Store, policy: str) -> None:
    study = add_study(store, f"every-5-{policy}", cron="*/5 * * * *", missed=policy, now=T0 - SECOND)
    before = Scheduler(store, InstantLauncher(store), scheduler_settings(), owner="before",
                       clock=FakeClock(T0))
    assert len(before.tick().started) == 1  # 03:00 fires; then the service is down until 03:17
    after = Scheduler(store, InstantLauncher(store), scheduler_settings(), owner="after",
                      clock=FakeClock(T0 + 17 * MINUTE))
    result = after.tick()
    firings = _firings(store, study.id)
    assert firings[0].scheduled_for == T0 and firings[0].status == "failed"  # fired (sweep cancelled)
    missed = firings[1]
    assert missed.scheduled_for == T0 + 5 * MINUTE and missed.status == "skipped"
    assert result.skipped == [missed.id] and missed.error is not None and policy in missed.error
    if policy == "catch_up_once":  # one firing, for the latest missed time (03:15)
        assert [f.scheduled_for for f in firings[2:]] == [T0 + 15 * MINUTE]
        assert result.started == [firings[2].id]
    else:
        assert len(firings) == 2 and result.started == []
    assert store.get_study(study.id).next_fire_at == T0 + 20 * MINUTE
    # back on schedule: 03:20 fires normally
    after.clock = FakeClock(T0 + 20 * MINUTE)
    result = after.tick()
    assert len(result.started) == 1 and result.skipped == []
    assert store.get_firing(result.started[0]).scheduled_for == T0 + 20 * MINUTE


def test_paused_studies_do_not_fire_and_a_bad_stored_schedule_fails_loudly(store: Store) -> None:
    paused = add_study(store, "paused", now=T0 - SECOND)
    store.update_study(paused.id, paused=True)
    broken = add_study(store, "broken", now=T0 - SECOND)
    store.update_study(broken.id, cron="not a cron")  # e.g. edited by hand in the database
    healthy = add_study(store, "healthy", now=T0 - SECOND)
    scheduler = Scheduler(store, InstantLauncher(store), scheduler_settings(), owner="s", clock=FakeClock(T0))
    result = scheduler.tick()
    assert store.list_firings(paused.id).items == []
    [bad] = store.list_firings(broken.id).items
    assert bad.status == "failed" and "cannot be scheduled" in (bad.error or "")
    assert store.get_study(broken.id).next_fire_at is None  # it stops, the others go on
    assert [store.get_firing(f).study_id for f in result.started] == [healthy.id]


def _tick_until_done(scheduler: Scheduler, store: Store, firing_id: int, tmp_path: Path,
                     timeout: float = 180.0) -> list[TickResult]:
    results: list[TickResult] = []

    def done() -> bool:
        results.append(scheduler.tick())
        return store.get_firing(firing_id).status in TERMINAL

    try:
        wait_until(done, timeout, f"firing {firing_id} to finish", every=0.3)
    except AssertionError:
        logs = "\n".join(p.read_text()[-3000:] for p in (tmp_path / "artifacts").glob("drivers/*.log"))
        raise AssertionError(f"{store.get_firing(firing_id)}\n{logs}") from None
    return results


def test_a_firing_outlives_a_dead_replica_and_a_restart(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    """Replica `first` claims a firing and starts its (real) sweep, then dies without a word;
    `second` takes the firing over once the lease lapses, then is stopped (a restart); a new
    Scheduler object `third` finishes it: one report, the firing succeeded, the sweep ran once."""
    artifacts = tmp_path / "artifacts"
    settings = scheduler_settings(scheduler_lease_seconds=60.0)
    study = add_study(store, "restart", cron="0 3 * * *", now=T0 - SECOND)
    clock = FakeClock(T0)

    def replica(owner: str) -> Scheduler:
        own_store = Store.open(database_url, pool_size=2, max_overflow=2)
        stores.append(own_store)
        return Scheduler(own_store, EmbeddedLauncher(database_url, artifacts, local=True), settings,
                         owner=owner, clock=clock)

    stores: list[Store] = []
    try:
        first = replica("first")
        [firing_id] = first.tick().started
        firing = store.get_firing(firing_id)
        assert firing.status == "running" and firing.sweep_id is not None and firing.claimed_by == "first"
        assert store.get_study(study.id).lease_owner == "first"
        # `first` dies: no stop(), its lease stays until it expires
        second = replica("second")
        clock.advance(30 * SECOND)
        assert second.tick() == TickResult()  # the lease is first's for 30 s more: hands off
        clock.advance(31 * SECOND)
        second.tick()
        assert store.get_study(study.id).lease_owner == "second"  # taken over
        second.stop()  # a restart: the leases are given back at once
        assert store.get_study(study.id).lease_owner is None
        third = replica("third")
        results = _tick_until_done(third, store, firing_id, tmp_path)
    finally:
        for s in stores:
            s.close()
    firing = store.get_firing(firing_id)
    assert firing.status == "succeeded", firing.error
    assert sum(len(r.resubmitted) for r in results) == 0  # the live driver was adopted, not run twice
    reports = store.list_reports(firing_id=firing_id).items
    assert [r.id for r in reports] == [firing.report_id]
    assert reports[0].sweep_id == firing.sweep_id and "(first firing)" in (reports[0].title or "")
    assert "<html" in (reports[0].content or "").lower()
    assert store.get_sweep(firing.sweep_id).status == "succeeded"  # type: ignore[arg-type]
    assert store.get_study(study.id).lease_owner is None


class FailingLauncher(InstantLauncher):
    """Sweeps end at once with every variant failed, as a driver records an out-of-memory pack."""

    def submit(self, sweep_id: int) -> str:
        ids = [v.id for v in self.store.list_variants(sweep_id).items]
        error = "Traceback (most recent call last):\n...\nRuntimeError: out of memory\n"
        self.store.finish_variants(ids, VariantStatus.FAILED, error=error)
        self.store.set_sweep_status(sweep_id, SweepStatus.FAILED, mirror=False)
        return "failing"


def test_a_failed_or_cancelled_sweep_fails_its_firing_with_the_reason(store: Store) -> None:
    study = add_study(store, "bad-sweep", now=T0 - SECOND)
    failing = Scheduler(store, FailingLauncher(store), scheduler_settings(), owner="s", clock=FakeClock(T0))
    result = failing.tick()
    [firing] = store.list_firings(study.id).items
    assert result.failed == [firing.id] and firing.status == "failed" and firing.report_id is None
    assert firing.error == (f"sweep {firing.sweep_id} failed: 4 of 4 variants did not succeed; first error "
                            f"(variant {store.list_variants(firing.sweep_id).items[0].id}): RuntimeError: "
                            "out of memory; no comparison was made")
    cancelled = Scheduler(store, InstantLauncher(store), scheduler_settings(), owner="s",
                          clock=FakeClock(T0 + MINUTE))
    cancelled.tick()
    latest = store.list_firings(study.id).items[0]
    assert latest.status == "failed" and latest.error == (
        f"sweep {latest.sweep_id} was cancelled; no comparison was made")
