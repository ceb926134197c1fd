"""Sweeps on a real local Ray (one session for the module), on SQLite and PostgreSQL.

* Every head metric lands exactly once (in the store, and in a real `mlflow server` after
  the mirror drains), each variant records the node that trained it,
  progress reaches the driver, and on PostgreSQL the database never sees more than the
  writers' connections plus the driver's one, with more packs than writers.
* A pack whose worker is SIGKILLed right after its first checkpoint is retried by Ray and
  resumes there (attempts == 2, resumed_from == the checkpoint step; an exception is never
  retried, so the retry proves the worker died); a pack that raises is recorded failed with
  its traceback; the sweep goes on and ends failed; row counts stay exact.
* Without Ray: a pack resumed from a checkpoint reproduces an uninterrupted run value for
  value, a pack split into chunks (device memory) matches the whole pack, and the memory
  estimate behaves.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sqlalchemy import create_engine, text

import workers.pack_runner as pack_runner
from service.mirror import drain, open_client
from service.store import Store, Variant
from service.sweeps.distributed import run_sweep_ray
from service.sweeps.plan import plan_packs, plan_variants, resolve_config
from service.sweeps.spec import SweepSpec
from tests.integration.mlflow_support import MlflowServer, check_metrics
from workers.model import ModelConfig
from workers.pack_runner import PackTask, PackVariant, device_budget, run_pack
from workers.ray_exec import FAULT_DIR_ENV, connect, shutdown
from workers.train import TrainConfig, estimate_variant_bytes, variant_chunks

STEPS, CHECKPOINT_EVERY, WRITERS = 20, 10, 2
PROBE_STEPS = [0, 6, 12, 18, 20]
LOSS_STEPS = [10, 20]  # run_pack's loss_every=10; step 10 is only ever written by the checkpoint flush
SPEC = {
    "name": "tiny-ray",
    "base": {
        "model": {"n_layers": 2, "n_heads": 2, "d_model": 16, "vocab_size": 40, "n_ctx": 17,
                  "attn_only": True},
        "data": {"families": {"repeated": 1.0}},
        "train": {"steps": STEPS, "batch_size": 4, "probe_every": 6, "warmup_steps": 1,
                  "probe_batch_size": 4},
    },
    "factors": {"model.n_heads": [1, 2, 4], "train.lr": [1e-3, 1e-2]},  # 3 packs of 2 variants
    "seeds": 1,
    "resources": {"cpus": 1, "max_retries": 2},
}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: extra threads only contend (Ray's workers
    already run with OMP_NUM_THREADS=1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fault_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The module's Ray session; its workers inherit HEADSPEC_FAULT_DIR (the failure hooks)."""
    path = tmp_path_factory.mktemp("faults")
    os.environ[FAULT_DIR_ENV] = str(path)
    connect(num_cpus=2)
    yield path
    shutdown()
    os.environ.pop(FAULT_DIR_ENV, None)


def assert_exact_rows(store: Store, variants: list[Variant]) -> None:
    """Every (step, layer, head) of every metric once, every probe and loss step once."""
    ids = [v.id for v in variants]
    heads = pd.DataFrame(store.read_head_metric_columns(variant_ids=ids))
    scalars = pd.DataFrame(store.read_scalar_metric_columns(variant_ids=ids))
    for v in variants:
        rows = heads[heads.variant_id == v.id]
        per_metric = rows.groupby("metric").size()
        assert (per_metric == len(PROBE_STEPS) * 2 * v.config["model"]["n_heads"]).all(), per_metric
        assert not rows.duplicated(["step", "layer", "head", "metric"]).any()
        assert sorted(rows.step.unique()) == PROBE_STEPS
        assert {"induction", "prev_token", "entropy", "specialization"} <= set(rows.metric)
        mine = scalars[scalars.variant_id == v.id]
        assert sorted(mine[mine.name == "train_loss"].step) == LOSS_STEPS
        assert sorted(mine[mine.name == "icl_score"].step) == PROBE_STEPS
        prune = mine[mine.name.str.startswith("prune.")]
        assert len(prune) == 12 and set(prune.step) == {STEPS}  # 2 orders x 6 fractions, final probe only
    # the final probe's patterns, through the store writers: one row per variant
    patterns = store.read_head_patterns(ids)
    assert sorted(patterns) == sorted(ids)
    assert {p.step for p in patterns.values()} == {STEPS}
    assert len({p.batch_key for p in patterns.values()}) == 1  # one data config: one probe batch


class ConnectionCounter(threading.Thread):
    """Samples the other sessions on the test database (PostgreSQL) every 50 ms."""

    QUERY = text("SELECT count(*) FROM pg_stat_activity "
                 "WHERE datname = current_database() AND pid <> pg_backend_pid()")

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.engine = create_engine(url, isolation_level="AUTOCOMMIT")  # a fresh snapshot per query
        self.counts: list[int] = []
        self.stop = threading.Event()

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(self.QUERY).scalar_one())

    def run(self) -> None:
        with self.engine.connect() as conn:
            while not self.stop.is_set():
                self.counts.append(int(conn.execute(self.QUERY).scalar_one()))
                time.sleep(0.05)


def test_sweep_on_ray_writes_every_metric_once_with_bounded_connections(
    database_url: str, fault_dir: Path, tmp_path: Path, mlflow_server: MlflowServer
) -> None:
    spec = SweepSpec.model_validate(SPEC)
    counter = ConnectionCounter(database_url) if database_url.startswith("postgresql") else None
    reports: dict[int, list[int]] = {}

    def progress(i: int, n: int, task: PackTask):  # type: ignore[no-untyped-def]
        assert n == 3
        return lambda step, losses: reports.setdefault(i, []).append(step)

    if counter:
        counter.start()
    try:
        outcome = run_sweep_ray(database_url, spec, writers=WRITERS, checkpoint_every=CHECKPOINT_EVERY,
                                artifact_dir=tmp_path, progress=progress)
    finally:
        if counter:
            counter.stop.set()
            counter.join()
    assert outcome.sweep.status == "succeeded"
    assert len(outcome.variants) == 6 and not outcome.failed
    assert len(outcome.packs) == 3 > WRITERS
    assert {v.node for v in outcome.variants} == {socket.gethostname()}
    assert all(v.attempts == 1 for v in outcome.variants)
    assert all(r.resumed_from is None and r.steps == STEPS for r in outcome.packs.values())
    assert {i: steps[-1] for i, steps in reports.items()} == {0: STEPS, 1: STEPS, 2: STEPS}
    assert not list((tmp_path / "checkpoints").rglob("*.pt"))  # completed packs leave none
    if counter:
        # every writer holds one connection, the driver one; none is left open afterwards
        assert WRITERS <= max(counter.counts) <= WRITERS + 1, counter.counts
        deadline = time.monotonic() + 10
        while counter.count() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert counter.count() == 0
        counter.engine.dispose()
    with Store.open(database_url) as store:
        assert_exact_rows(store, outcome.variants)
        # the MLflow mirror (a real `mlflow server`) holds exactly the store's values
        result = drain(store, open_client(mlflow_server.uri))
        assert result.failed == 0 and store.outbox_pending_count() == 0
        check_metrics(store, open_client(mlflow_server.uri), outcome.sweep.id)


def test_killed_pack_resumes_from_its_checkpoint_and_a_failing_pack_is_recorded(
    database_url: str, fault_dir: Path, tmp_path: Path
) -> None:
    spec = SweepSpec.model_validate(SPEC)
    killed, broken, plain = [p.key for p in plan_packs(plan_variants(spec), None)]
    kill_marker = fault_dir / f"{killed}.checkpoint"
    kill_marker.write_text("kill")  # SIGKILL after the first checkpoint, once
    (fault_dir / f"{broken}.start").write_text("raise")  # an exception on every attempt
    try:
        outcome = run_sweep_ray(database_url, spec, writers=WRITERS, checkpoint_every=CHECKPOINT_EVERY,
                                artifact_dir=tmp_path)
        assert not kill_marker.exists()  # the first attempt reached the hook and died there
    finally:
        for marker in fault_dir.iterdir():
            marker.unlink()
    assert outcome.sweep.status == "failed"
    packs: dict[str, list[Variant]] = {}
    for v in outcome.variants:
        packs.setdefault(v.pack_key, []).append(v)

    assert [(v.status, v.attempts) for v in packs[killed]] == [("succeeded", 2)] * 2
    assert outcome.packs[killed].resumed_from == CHECKPOINT_EVERY
    assert outcome.packs[killed].steps == STEPS
    assert [(v.status, v.attempts) for v in packs[plain]] == [("succeeded", 1)] * 2
    assert outcome.packs[plain].resumed_from is None
    assert broken not in outcome.packs
    for v in packs[broken]:
        assert (v.status, v.attempts) == ("failed", 1)  # not retried: an exception, not a death
        assert "Traceback" in (v.last_error or "") and "injected failure at start" in (v.last_error or "")
    assert {v.node for v in outcome.variants} == {socket.gethostname()}
    with Store.open(database_url) as store:
        assert_exact_rows(store, packs[killed] + packs[plain])
        assert store.count_head_metrics(variant_ids=[v.id for v in packs[broken]]) == 0


# -- without Ray: resume and chunks reproduce the uninterrupted pack ----------------------------


class MemorySink:
    """Keeps metrics keyed like the store (later value wins), counting every write."""

    def __init__(self) -> None:
        self.head: dict[tuple, float] = {}
        self.scalar: dict[tuple, float] = {}
        self.variants: set[int] = set()
        self.patterns: dict[int, tuple[int, str, tuple[int, ...]]] = {}  # variant -> (step, key, shape)
        self.pattern_writes: list[int] = []  # variant ids, one per write

    def write_head_metrics(self, cols: dict[str, Any]) -> None:
        self._put(self.head, cols, ["variant_id", "step", "layer", "head", "metric"])

    def write_scalar_metrics(self, cols: dict[str, Any]) -> None:
        self._put(self.scalar, cols, ["variant_id", "step", "name"])

    def write_head_patterns(self, variant_id: int, step: int, batch_key: str, patterns: np.ndarray) -> None:
        self.patterns[variant_id] = (step, batch_key, patterns.shape)
        self.pattern_writes.append(variant_id)

    def _put(self, target: dict[tuple, float], cols: dict[str, Any], keys: list[str]) -> None:
        n = len(cols["value"])
        columns = [np.broadcast_to(np.asarray(cols[k]), (n,)).tolist() for k in keys]
        for *key, value in zip(*columns, np.asarray(cols["value"]).tolist(), strict=True):
            target[tuple(key)] = value
        self.variants.update(columns[0])


class Crash(Exception):
    pass


def _task() -> PackTask:
    config = resolve_config(SweepSpec.model_validate(SPEC).base.model_dump(), {"model.n_heads": 2})
    return PackTask("p", config, (PackVariant(1, 0, 1e-2), PackVariant(2, 1, 3e-3)))


@pytest.fixture(scope="module")
def uninterrupted() -> MemorySink:
    sink = MemorySink()
    run_pack(_task(), sink)
    return sink


def _assert_same(a: MemorySink, b: MemorySink) -> None:
    assert a.patterns == b.patterns
    for got, want in ((a.head, b.head), (a.scalar, b.scalar)):
        assert got.keys() == want.keys()
        keys = sorted(want)
        np.testing.assert_allclose([got[k] for k in keys], [want[k] for k in keys], rtol=1e-6, atol=1e-7)


def test_resumed_pack_reproduces_the_uninterrupted_one(uninterrupted: MemorySink, tmp_path: Path) -> None:
    path, sink = tmp_path / "p.pt", MemorySink()

    def crash(step: int) -> None:
        raise Crash(step)

    with pytest.raises(Crash):
        run_pack(_task(), sink, checkpoint_path=path, checkpoint_every=CHECKPOINT_EVERY,
                 on_checkpoint_saved=crash)
    assert path.exists() and not list(tmp_path.glob(".*.tmp"))
    # the losses buffered up to the checkpoint were written before it was saved
    assert {(v, 10, "train_loss") for v in (1, 2)} <= set(sink.scalar)
    assert sink.pattern_writes == []  # the final probe is not reached before the crash
    outcome = run_pack(_task(), sink, checkpoint_path=path, checkpoint_every=CHECKPOINT_EVERY)
    assert outcome.resumed_from == CHECKPOINT_EVERY and outcome.steps == STEPS
    assert not path.exists()
    assert sorted(sink.pattern_writes) == [1, 2]  # the resumed pack reaches its final probe once
    _assert_same(sink, uninterrupted)
    (step, key, shape), = set(uninterrupted.patterns.values())  # one probe batch for both variants
    assert set(uninterrupted.patterns) == {1, 2} and step == STEPS and len(key) == 32
    assert shape == (4, 2, 2, 17, 17)  # min(pattern_examples, probe_batch_size), L, H, S, S


def test_oversized_pack_trains_in_chunks_and_resumes_past_finished_ones(
    uninterrupted: MemorySink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = _task()
    per_variant = estimate_variant_bytes(ModelConfig.from_dict(task.config["model"]),
                                         TrainConfig.from_dict(task.config["train"]), 17)
    # a device with room for one variant at a time (no GPU here: the budget is what varies)
    monkeypatch.setattr(pack_runner, "device_budget", lambda device, share=None: per_variant)
    path, first, calls = tmp_path / "p.pt", MemorySink(), []

    def crash_in_second_chunk(step: int) -> None:
        calls.append(step)
        if len(calls) == 2:
            raise Crash(step)

    with pytest.raises(Crash):
        run_pack(task, first, checkpoint_path=path, checkpoint_every=CHECKPOINT_EVERY,
                 on_checkpoint_saved=crash_in_second_chunk)
    second = MemorySink()
    outcome = run_pack(task, second, checkpoint_path=path, checkpoint_every=CHECKPOINT_EVERY)
    assert outcome.chunks == 2 and outcome.resumed_from == CHECKPOINT_EVERY
    assert second.variants == {2}  # the finished chunk (variant 1) is not trained again
    assert set(outcome.final_loss) == {1, 2}
    merged = MemorySink()
    for sink in (first, second):
        merged.head.update(sink.head)
        merged.scalar.update(sink.scalar)
        merged.patterns.update(sink.patterns)
    assert first.pattern_writes == [1] and second.pattern_writes == [2]  # once per chunk's final probe
    _assert_same(merged, uninterrupted)


def test_memory_estimate_and_chunks() -> None:
    model = ModelConfig(n_layers=2, n_heads=4, d_model=64, vocab_size=64, n_ctx=49, attn_only=True)
    train = TrainConfig(batch_size=32, probe_batch_size=8)
    base = estimate_variant_bytes(model, train, 49)
    assert base >= 16 * model.n_params()  # parameters, gradients and both Adam moments, fp32
    bigger = ModelConfig(n_layers=4, n_heads=4, d_model=128, vocab_size=64, n_ctx=49)
    assert estimate_variant_bytes(bigger, train, 49) > base
    assert estimate_variant_bytes(model, TrainConfig(batch_size=64, probe_batch_size=8), 49) > base
    assert estimate_variant_bytes(model, TrainConfig(batch_size=32, probe_batch_size=128), 49) > base
    assert estimate_variant_bytes(model, train, 25) < base
    assert variant_chunks(5, 10, None) == [range(0, 5)]
    assert variant_chunks(5, 10, 1000) == [range(0, 5)]
    assert variant_chunks(5, 10, 25) == [range(0, 2), range(2, 4), range(4, 5)]
    assert variant_chunks(3, 10, 5) == [range(0, 1), range(1, 2), range(2, 3)]  # never below one
    with pytest.raises(ValueError):
        variant_chunks(0, 10, 100)
    assert device_budget(torch.device("cpu")) is None
