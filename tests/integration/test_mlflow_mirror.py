"""The MLflow mirror against a real `mlflow server` subprocess, on both store databases.

A small real sweep runs in-process; its outbox is drained into the server over REST and read
back with ``MlflowClient``. The server is stopped while items are still pending (the drain
fails, nothing is marked done), restarted on the same backend (the drain completes), and
every metric item is then mirrored a second time (as after a crash before ``mark_done``):
the metric histories must hold exactly the store's rows, no duplicates.
"""

from __future__ import annotations

import time

import pytest
from mlflow.tracking import MlflowClient

from service.mirror import drain, open_client
from service.mirror.layout import TAG_VARIANT_ID, MlflowLayout
from service.store import NewVariant, Store
from service.sweeps.local import run_sweep_local
from service.sweeps.spec import SweepSpec
from tests.integration.mlflow_support import MlflowServer, check_metrics
from tests.integration.specs import tiny_spec

SPEC = tiny_spec("mirror", factors={"model.n_heads": [1, 2]}, seeds=2)


def _pending_ids(store: Store) -> list[int]:
    return [i.id for i in store.list_outbox(done=False, limit=1000).items]


def test_sweep_mirrors_to_mlflow_exactly_once_across_an_outage(
    store: Store, mlflow_server: MlflowServer
) -> None:
    spec = SweepSpec.model_validate({**SPEC, "name": f"mirror-{store.dialect}"})
    outcome = run_sweep_local(store, spec, device="cpu")
    assert outcome.sweep.status == "succeeded" and not outcome.failed
    client = open_client(mlflow_server.uri)

    first = drain(store, client, max_items=3)
    assert (first.items, first.failed) == (3, 0) and first.metrics_logged > 0

    # MLflow down: the drain fails fast, marks nothing done and keeps every item
    mlflow_server.stop()
    pending = _pending_ids(store)
    started = time.monotonic()
    down = drain(store, client, retry_base_seconds=0)
    assert down.items == 0 and down.failed >= 1
    assert time.monotonic() - started < 30
    assert _pending_ids(store) == pending
    assert all(i.last_error for i in store.list_outbox(done=False, limit=1000).items[: down.failed])

    # back up on the same backend: everything drains
    mlflow_server.start()
    up = drain(store, client, retry_base_seconds=0)
    assert up.failed == 0 and up.items == len(pending)
    assert store.outbox_pending_count() == 0

    # every metric item mirrored a second time (a crash before mark_done): no duplicates
    metric_items = [i for i in store.list_outbox(done=True, limit=1000).items if i.kind.endswith("_metrics")]
    for item in metric_items:
        store.enqueue_outbox(item.kind, item.payload)
    again = drain(store, client)
    assert again.failed == 0 and again.items == len(metric_items)

    _check_layout(store, client, outcome.sweep.id, spec.name)
    check_metrics(store, client, outcome.sweep.id)


def _check_layout(store: Store, client: MlflowClient, sweep_id: int, name: str) -> None:
    sweep = store.get_sweep(sweep_id)
    experiment = client.get_experiment_by_name(f"headspec/{name}")
    assert experiment is not None and sweep.mlflow_run_id is not None
    parent = client.get_run(sweep.mlflow_run_id)
    assert parent.info.experiment_id == experiment.experiment_id
    assert parent.info.status == "FINISHED" and parent.data.tags["headspec.sweep_id"] == str(sweep_id)
    variants = store.list_variants(sweep_id).items
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert len(runs) == 1 + len(variants)  # no second run for anything
    for v in variants:
        assert v.mlflow_run_id is not None
        run = client.get_run(v.mlflow_run_id)
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == sweep.mlflow_run_id
        assert tags["headspec.sweep_id"] == str(sweep_id)
        assert tags[TAG_VARIANT_ID] == str(v.id)
        assert tags["headspec.variant_index"] == str(v.index)
        assert tags["headspec.pack_key"] == v.pack_key
        assert tags["headspec.shape"] == f"L2xH{v.factors['model.n_heads']}xd16"
        assert run.data.params == {"model.n_heads": str(v.factors["model.n_heads"]),
                                   "seed": str(v.config["seed"])}
        assert run.info.status == "FINISHED"
        artifacts = {a.path: a.file_size for a in client.list_artifacts(v.mlflow_run_id)}
        assert (artifacts.get("role_map.png") or 0) > 1000


def test_a_run_created_before_a_crash_is_found_not_created_twice(
    store: Store, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep, variants = store.create_sweep(
        f"crash-{store.dialect}", {}, [NewVariant({"train.lr": 0.01}, {"model": {"n_layers": 1}}, "p")]
    )
    client = open_client(mlflow_server.uri)
    real_swap = store.swap_variant_mlflow_run_id

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("killed between create_run and recording the run id")

    monkeypatch.setattr(store, "swap_variant_mlflow_run_id", crash)
    with pytest.raises(KeyboardInterrupt):
        MlflowLayout(store, client).variant_run(variants[0].id)
    assert store.get_variant(variants[0].id).mlflow_run_id is None
    monkeypatch.setattr(store, "swap_variant_mlflow_run_id", real_swap)

    run_id = MlflowLayout(store, client).variant_run(variants[0].id)
    assert store.get_variant(variants[0].id).mlflow_run_id == run_id
    experiment = client.get_experiment_by_name(f"headspec/{sweep.name}")
    assert experiment is not None
    found = client.search_runs([experiment.experiment_id], f"tags.`{TAG_VARIANT_ID}` = '{variants[0].id}'")
    assert [r.info.run_id for r in found] == [run_id]
    # and a run id the store holds but MLflow no longer has is replaced
    client.delete_run(run_id)
    replaced = MlflowLayout(store, client).variant_run(variants[0].id)
    assert replaced != run_id and store.get_variant(variants[0].id).mlflow_run_id == replaced
