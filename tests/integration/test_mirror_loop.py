"""The service's mirror loop sends what a driver could not: MLflow down, then back."""

from __future__ import annotations

import time

from mlflow.tracking import MlflowClient

from service.mirror.loop import MirrorLoop
from service.store import Store
from service.sweeps.local import run_sweep_local
from service.sweeps.spec import SweepSpec
from tests.integration.mlflow_support import MlflowServer, check_metrics
from tests.integration.specs import tiny_spec


def test_mirror_loop_catches_up_once_mlflow_is_back(store: Store, tmp_path) -> None:
    outcome = run_sweep_local(store, SweepSpec.model_validate(tiny_spec("loop", seeds=1)), device="cpu")
    pending = store.outbox_pending_count()
    assert pending > 0
    (tmp_path / "mlflow").mkdir()
    server = MlflowServer(tmp_path / "mlflow")
    loop = MirrorLoop(store, server.uri, every_seconds=0.1)
    assert loop.tick() == 0 and store.outbox_pending_count() == pending  # MLflow down: nothing lost
    server.start()
    try:
        sent = 0
        deadline = time.monotonic() + 60  # failed items wait out their retry delay first
        while store.outbox_pending_count() and time.monotonic() < deadline:
            sent += loop.tick()
            time.sleep(0.5)
        assert sent == pending and store.outbox_pending_count() == 0
        check_metrics(store, MlflowClient(server.uri), outcome.sweep.id)
        assert loop.tick() == 0  # nothing left, nothing re-sent
    finally:
        server.stop()
