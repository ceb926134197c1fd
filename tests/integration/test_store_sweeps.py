"""Sweeps and variants on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import math

import pytest

from service.store import InvalidInput, NewVariant, NotFound, Store, Sweep, Variant


def _variants(n: int, pack: str = "p0") -> list[NewVariant]:
    return [NewVariant({"lr": 0.1 * (i + 1)}, {"n_layers": 2, "seed": i}, pack) for i in range(n)]


def test_create_sweep_with_variants_returns_frozen_entities(store: Store) -> None:
    sweep, variants = store.create_sweep("s", {"factors": {"lr": [0.1, 0.2]}}, _variants(2))
    assert isinstance(sweep, Sweep)
    assert sweep.status == "pending"
    assert sweep.spec == {"factors": {"lr": [0.1, 0.2]}}
    assert sweep.created_at.tzinfo is not None
    assert [v.index for v in variants] == [0, 1]
    assert all(isinstance(v, Variant) and v.sweep_id == sweep.id for v in variants)
    assert variants[1].factors == {"lr": 0.2}
    assert variants[0].config == {"n_layers": 2, "seed": 0}
    with pytest.raises(dataclasses.FrozenInstanceError):
        sweep.status = "running"  # type: ignore[misc]
    assert store.get_sweep(sweep.id) == sweep
    assert store.get_variant(variants[1].id) == variants[1]


def test_add_variants_continues_the_index(store: Store) -> None:
    sweep, _ = store.create_sweep("s", {}, _variants(2))
    added = store.add_variants(sweep.id, _variants(3, "p1"))
    assert [v.index for v in added] == [2, 3, 4]
    page = store.list_variants(sweep.id, pack_key="p1")
    assert [v.index for v in page.items] == [2, 3, 4]


def test_list_sweeps_pages_newest_first_and_filters(store: Store) -> None:
    ids = [store.create_sweep(f"s{i}", {})[0].id for i in range(5)]
    store.set_sweep_status(ids[1], "running")
    seen: list[int] = []
    cursor = None
    while True:
        page = store.list_sweeps(cursor=cursor, limit=2)
        seen += [s.id for s in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids[::-1]
    assert [s.id for s in store.list_sweeps(status="running").items] == [ids[1]]
    assert [s.id for s in store.list_sweeps(name="s3").items] == [ids[3]]


def test_sweep_status_stamps(store: Store) -> None:
    sweep, _ = store.create_sweep("s", {})
    running = store.set_sweep_status(sweep.id, "running")
    assert running.started_at is not None and running.finished_at is None
    done = store.set_sweep_status(sweep.id, "succeeded")
    assert done.started_at == running.started_at
    assert done.finished_at is not None
    assert store.set_sweep_mlflow_run_id(sweep.id, "abc123").mlflow_run_id == "abc123"


def test_variant_lifecycle_attempts_errors_node(store: Store) -> None:
    _, variants = store.create_sweep("s", {}, _variants(3))
    ids = [v.id for v in variants[:2]]
    started = store.start_variants(ids, node="node-a")
    assert [(v.status, v.attempts, v.node) for v in started] == [("running", 1, "node-a")] * 2
    failed = store.finish_variants(ids, "failed", error="Traceback ...\n" + "x" * 30_000)
    assert all(v.status == "failed" and v.finished_at is not None for v in failed)
    assert failed[0].last_error is not None and len(failed[0].last_error) <= 20_000
    assert failed[0].last_error.endswith("characters in all]")
    store.set_variant_status(ids, "pending")
    again = store.start_variants(ids, node="node-b")
    assert [v.attempts for v in again] == [2, 2]
    assert again[0].node == "node-b"
    assert store.finish_variants(ids, "succeeded")[0].last_error == failed[0].last_error
    counts = store.variant_status_counts(variants[0].sweep_id)
    assert counts == {"succeeded": 2, "pending": 1}
    assert store.set_variant_mlflow_run_id(ids[0], "run1").mlflow_run_id == "run1"


def test_list_variants_pages_by_id(store: Store) -> None:
    sweep, variants = store.create_sweep("s", {}, _variants(5))
    first = store.list_variants(sweep.id, limit=3)
    second = store.list_variants(sweep.id, limit=3, cursor=first.next_cursor)
    assert [v.id for v in first.items + second.items] == [v.id for v in variants]
    assert second.next_cursor is None
    store.start_variants([variants[4].id], None)
    assert [v.id for v in store.list_variants(status="running").items] == [variants[4].id]


def test_unknown_ids_raise_not_found_and_change_nothing(store: Store) -> None:
    _, variants = store.create_sweep("s", {}, _variants(1))
    with pytest.raises(NotFound, match="unknown sweep id 999"):
        store.get_sweep(999)
    with pytest.raises(NotFound, match="unknown sweep id 999"):
        store.add_variants(999, _variants(1))
    with pytest.raises(NotFound, match="unknown variant id"):
        store.get_variant(999)
    with pytest.raises(NotFound, match=r"unknown variant id\(s\) 998, 999"):
        store.start_variants([variants[0].id, 998, 999], "n")
    assert store.get_variant(variants[0].id).status == "pending"  # nothing half-written


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.create_sweep("x" * 201, {}), "name is 201 characters long, the limit is 200"),
        (lambda s: s.create_sweep("", {}), "name must not be empty"),
        (lambda s: s.create_sweep("s", {"x": math.nan}), "spec must be JSON-serialisable"),
        (lambda s: s.create_sweep("s", {"x": object()}), "spec must be JSON-serialisable"),
        (lambda s: s.create_sweep(5, {}), "name must be a string"),
        (lambda s: s.create_sweep("s", {}, [{"lr": 1}]), r"variants\[0\] must be a NewVariant"),
        (
            lambda s: s.create_sweep("s", {}, [NewVariant({}, {}, "p" * 201)]),
            r"variants\[0\].pack_key is 201 characters",
        ),
        (lambda s: s.get_sweep("1"), "sweep_id must be an integer id"),
        (lambda s: s.list_sweeps(status="done"), "status must be one of"),
        (lambda s: s.list_sweeps(limit=0), "limit must be between 1 and 10000"),
        (lambda s: s.list_sweeps(cursor="abc"), "not one this listing returned"),
    ],
)
def test_bad_input_is_rejected_before_writing(store: Store, call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match=message):
        call(store)
    assert store.list_sweeps().items == []


def test_finish_requires_a_terminal_status(store: Store) -> None:
    _, variants = store.create_sweep("s", {}, _variants(1))
    with pytest.raises(InvalidInput, match="status must be one of"):
        store.finish_variants([variants[0].id], "running")


def test_delete_sweep_removes_variants_and_metrics(store: Store) -> None:
    sweep, variants = store.create_sweep("s", {}, _variants(2))
    keep, _ = store.create_sweep("keep", {}, _variants(1))
    kept = store.list_variants(keep.id).items[0]
    for v in [*variants, kept]:
        store.write_head_metrics([(v.id, 1, 0, 0, "entropy", 0.5)])
        store.write_scalar_metrics([(v.id, 1, "loss", 2.0)])
    store.delete_sweep(sweep.id)
    with pytest.raises(NotFound):
        store.get_variant(variants[0].id)
    assert store.count_head_metrics() == 1
    assert store.count_head_metrics(variant_ids=[kept.id]) == 1
    assert len(store.list_scalar_metrics(kept.id)) == 1
