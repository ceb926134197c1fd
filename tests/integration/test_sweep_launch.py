"""Submitted sweeps: a driver process per sweep, found again after a restart, stopped on cancel."""

from __future__ import annotations

import time

from service.store import Store
from service.sweeps.launch import EmbeddedLauncher, reconcile
from service.sweeps.local import create_sweep
from service.sweeps.spec import SweepSpec
from service.sweeps.submit import cancel_submitted
from tests.integration.specs import tiny_spec


def _wait_until(predicate, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError("timed out")


def test_a_submitted_sweep_runs_in_its_driver_process(store: Store, database_url: str, tmp_path) -> None:
    spec = SweepSpec.model_validate(tiny_spec("launched", factors={"model.n_heads": [1, 2]}, seeds=2))
    sweep, variants, _ = create_sweep(store, spec)
    launcher = EmbeddedLauncher(database_url, tmp_path, local=True)
    assert "pid" in launcher.submit(sweep.id)
    assert "already running" in launcher.submit(sweep.id)  # never two drivers of one sweep
    _wait_until(lambda: not launcher.is_running(sweep.id))
    assert store.get_sweep(sweep.id).status == "succeeded", (tmp_path / "drivers").joinpath(
        f"sweep-{sweep.id}.log").read_text()[-3000:]
    rows = store.count_head_metrics(sweep_id=sweep.id)
    assert rows > 0
    # a restarted service finds nothing left to do for a finished sweep
    assert reconcile(store, EmbeddedLauncher(database_url, tmp_path, local=True)) == {}
    assert store.count_head_metrics(sweep_id=sweep.id) == rows


def test_restart_adopts_a_live_driver_and_resubmits_a_lost_one(
    store: Store, database_url: str, tmp_path
) -> None:
    slow = tiny_spec("slow", seeds=2)
    slow["base"]["train"] |= {"steps": 4000, "probe_every": 1000}
    sweep, _, _ = create_sweep(store, SweepSpec.model_validate(slow))
    first = EmbeddedLauncher(database_url, tmp_path, local=True)
    first.submit(sweep.id)
    _wait_until(lambda: store.get_sweep(sweep.id).status == "running")
    # a new service process (new launcher object): the driver is found through its pid file
    second = EmbeddedLauncher(database_url, tmp_path, local=True)
    assert reconcile(store, second) == {sweep.id: "adopted"}
    cancel_submitted(store, second, sweep.id)
    assert not first.is_running(sweep.id)
    assert store.get_sweep(sweep.id).status == "cancelled"
    assert {v.status for v in store.list_variants(sweep.id).items} == {"cancelled"}
    # a sweep the store says is running but whose driver is gone is submitted again
    lost, _, _ = create_sweep(store, SweepSpec.model_validate(tiny_spec("lost", seeds=1)))
    store.set_sweep_status(lost.id, "running")
    third = EmbeddedLauncher(database_url, tmp_path, local=True)
    result = reconcile(store, third)
    assert result[lost.id].startswith("resubmitted")
    _wait_until(lambda: not third.is_running(lost.id))
    assert store.get_sweep(lost.id).status == "succeeded"
