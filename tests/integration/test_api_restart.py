"""The service restarted while a sweep trains: the new server adopts the running driver (it is
neither forgotten nor run twice) and the sweep completes with every head metric exactly once.

The driver is paused (SIGSTOP) across the restart, so the sweep is mid-training whatever the
machine's speed; a paused process is alive, which is all adoption looks at."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

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
from tests.integration.specs import TINY_BASE, tiny_spec

STEPS, PROBE_EVERY = 600, 150


def test_restart_mid_sweep_adopts_the_driver(serve: Callable[..., ApiServer], database_url: str) -> None:  # noqa: F811
    token = make_token(database_url)
    first = serve()
    spec = tiny_spec("api-restart", seeds=2)
    spec["base"]["train"] |= {"steps": STEPS, "probe_every": PROBE_EVERY}
    with first.client(token) as client:
        sweep_id = client.post("/sweeps", json={"spec": spec}).json()["id"]
    store = Store.open(database_url, pool_size=1, max_overflow=0)
    try:
        # mid-training: the first probe step is recorded
        wait_until(lambda: store.count_head_metrics(sweep_id=sweep_id) > 0, 120, "the first probe step")
        pid = driver_pid(first.artifacts, sweep_id)
        assert pid is not None and pid_alive(pid)
        os.killpg(pid, signal.SIGSTOP)
        try:
            assert store.get_sweep(sweep_id).status == "running"
            first.stop(signal.SIGTERM)  # uvicorn shuts down gracefully, then re-raises the signal
            assert "Application shutdown complete" in first.log()
            assert pid_alive(pid), "stopping the service must not stop a sweep's driver"

            second = serve()
            assert f"sweep {sweep_id}: adopted" in second.log()
            assert driver_pid(second.artifacts, sweep_id) == pid  # no second driver was started
        finally:
            os.killpg(pid, signal.SIGCONT)
        with second.client(token) as client:
            def finished() -> bool:
                return client.get(f"/sweeps/{sweep_id}").json()["status"] != "running"

            try:
                wait_until(finished, 240, f"sweep {sweep_id} to finish")
            except AssertionError:
                raise AssertionError(driver_log(second.workdir, sweep_id)) from None
            body = client.get(f"/sweeps/{sweep_id}").json()
        assert body["status"] == "succeeded", driver_log(second.workdir, sweep_id)
        assert body["variants"] == {"succeeded": 2}
        variants = store.list_variants(sweep_id).items
        assert [v.attempts for v in variants] == [1, 1]  # each pack started once
        # every probe step of every head, once
        induction = store.read_head_metric_columns(sweep_id=sweep_id, metrics=["induction"])
        model = TINY_BASE["model"]
        per_step = model["n_layers"] * model["n_heads"]
        assert sorted(set(induction["step"].tolist())) == list(range(0, STEPS + 1, PROBE_EVERY))
        assert len(induction["value"]) == len(variants) * (STEPS // PROBE_EVERY + 1) * per_step
        assert driver_log(second.workdir, sweep_id).count("running in this process") == 1
    finally:
        store.close()
