"""Head and scalar metrics: idempotent bulk writes, all-or-nothing batches, reads."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from service.store import (
    HeadMetric,
    InvalidInput,
    NewVariant,
    NotFound,
    Store,
    WriteResult,
    head_metric_grid,
)


@pytest.fixture
def variant_ids(store: Store) -> list[int]:
    _, variants = store.create_sweep("s", {}, [NewVariant({}, {}, "p") for _ in range(3)])
    return [v.id for v in variants]


def _grid(ids: list[int], step: int, metric: str = "entropy", seed: int = 0) -> dict[str, object]:
    values = np.random.default_rng(seed).random((len(ids), 2, 4))
    return head_metric_grid(ids, step, metric, values)


def _all_rows(store: Store, ids: list[int]) -> list[tuple[object, ...]]:
    cols = store.read_head_metric_columns(variant_ids=ids)
    return list(zip(*(cols[k].tolist() for k in cols), strict=True))


def test_writing_the_same_batch_twice_leaves_one_row_per_key(store: Store, variant_ids: list[int]) -> None:
    batch = _grid(variant_ids, 10)
    assert store.write_head_metrics(batch) == WriteResult(rows=24, changed=24)
    before = _all_rows(store, variant_ids)
    assert store.write_head_metrics(batch) == WriteResult(rows=24, changed=0)
    assert store.count_head_metrics(variant_ids=variant_ids) == 24
    assert _all_rows(store, variant_ids) == before


def test_the_later_value_wins(store: Store, variant_ids: list[int]) -> None:
    store.write_head_metrics(_grid(variant_ids, 10, seed=1))
    store.write_head_metrics(_grid(variant_ids, 11, seed=1))
    # rewrite step 10 with new values plus one new step: takes the upsert path
    newer = _grid(variant_ids, 10, seed=2)
    result = store.write_head_metrics(newer)
    assert result == WriteResult(rows=24, changed=24)
    cols = store.read_head_metric_columns(variant_ids=variant_ids, step_min=10, step_max=10)
    assert sorted(cols["value"].tolist()) == sorted(np.asarray(newer["value"]).tolist())
    assert store.count_head_metrics(variant_ids=variant_ids) == 48
    v = variant_ids[0]
    partly_new = [(v, 10, 0, 0, "entropy", 123.0), (v, 12, 0, 0, "entropy", 1.0)]
    assert store.write_head_metrics(partly_new).changed == 2
    assert store.list_head_metrics(v, step_min=10, step_max=10, layer=0, head=0).items == [
        HeadMetric(v, 10, 0, 0, "entropy", 123.0)
    ]


def test_duplicate_keys_within_a_batch_keep_the_last(store: Store, variant_ids: list[int]) -> None:
    v = variant_ids[0]
    records = [(v, 1, 0, 0, "m", 1.0), (v, 1, 0, 0, "m", 2.0), (v, 1, 0, 0, "m", 3.0)]
    assert store.write_head_metrics(records) == WriteResult(rows=1, changed=1)
    assert store.list_head_metrics(v).items[0].value == 3.0


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_batch_with_one_non_finite_value_writes_nothing(
    store: Store, variant_ids: list[int], bad: float
) -> None:
    store.write_head_metrics(_grid(variant_ids, 1))
    batch = _grid(variant_ids, 2)
    values = np.asarray(batch["value"]).copy()
    values[5] = bad
    batch["value"] = values
    with pytest.raises(InvalidInput, match="must be finite; record 5"):
        store.write_head_metrics(batch)
    assert store.count_head_metrics(variant_ids=variant_ids) == 24
    assert store.metric_names() == ["entropy"]
    assert store.outbox_pending_count() == 1  # only the first batch's


def test_unknown_variant_rejects_the_whole_batch(store: Store, variant_ids: list[int]) -> None:
    records = [(variant_ids[0], 1, 0, 0, "new_metric", 1.0), (9999, 1, 0, 0, "new_metric", 1.0)]
    with pytest.raises(NotFound, match=r"unknown variant id\(s\) 9999"):
        store.write_head_metrics(records)
    assert store.count_head_metrics() == 0
    assert store.metric_names() == []


def test_wrong_types_are_invalid_input(store: Store, variant_ids: list[int]) -> None:
    with pytest.raises(InvalidInput, match="'step' must hold integers"):
        store.write_head_metrics([(variant_ids[0], 1.5, 0, 0, "m", 1.0)])
    with pytest.raises(InvalidInput, match="characters MLflow keys do not allow"):
        store.write_head_metrics([(variant_ids[0], 1, 0, 0, "bad metric!", 1.0)])
    with pytest.raises(InvalidInput, match="the limit is 100"):
        store.write_scalar_metrics([(variant_ids[0], 1, "n" * 101, 1.0)])
    assert store.count_head_metrics() == 0


def test_records_and_columns_store_the_same_rows(store: Store, variant_ids: list[int]) -> None:
    cols = _grid(variant_ids[:1], 5)
    store.write_head_metrics(cols)
    stored = _all_rows(store, variant_ids[:1])
    records = [HeadMetric(v, s, la, h, m, x) for v, s, la, h, m, x in stored]
    assert store.write_head_metrics(records).changed == 0
    assert store.write_head_metrics([tuple(r) for r in stored]).changed == 0


def test_list_head_metrics_pages_cover_everything_once(store: Store, variant_ids: list[int]) -> None:
    v = variant_ids[0]
    for step in (0, 10, 20):
        store.write_head_metrics(_grid([v], step, "entropy"))
        store.write_head_metrics(_grid([v], step, "prev_token"))
    pages, cursor = [], None
    while True:
        page = store.list_head_metrics(v, cursor=cursor, limit=7)
        pages.append(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    listed = [m for items in pages for m in items]
    assert len(listed) == 48 and len(set(listed)) == 48
    at_step = store.list_head_metrics(v, step_min=10, step_max=10).items
    assert len(at_step) == 16
    assert {m.step for m in at_step} == {10}
    assert {m.metric for m in at_step} == {"entropy", "prev_token"}
    one_head = store.list_head_metrics(v, metrics=["entropy"], layer=1, head=3).items
    assert [m.step for m in one_head] == [0, 10, 20]
    with pytest.raises(NotFound, match=r"unknown metric \['entropyy'\]"):
        store.list_head_metrics(v, metrics=["entropyy"])
    with pytest.raises(NotFound, match="unknown variant"):
        store.list_head_metrics(999)


def test_one_metric_across_a_sweep(store: Store, variant_ids: list[int]) -> None:
    sweep_id = store.get_variant(variant_ids[0]).sweep_id
    store.write_head_metrics(_grid(variant_ids, 1, "entropy"))
    store.write_head_metrics(_grid(variant_ids, 1, "other"))
    first = store.list_sweep_head_metrics(sweep_id, "entropy", limit=20)
    rest = store.list_sweep_head_metrics(sweep_id, "entropy", cursor=first.next_cursor)
    items = first.items + rest.items
    assert len(items) == 24 and {m.metric for m in items} == {"entropy"}
    assert [m.variant_id for m in items] == sorted(m.variant_id for m in items)
    head = store.list_sweep_head_metrics(sweep_id, "entropy", layer=1, head=2).items
    assert [m.variant_id for m in head] == variant_ids
    cols = store.read_head_metric_columns(sweep_id=sweep_id, metrics=["other"])
    assert len(cols["value"]) == 24 and set(cols["metric"].tolist()) == {"other"}


def test_pages_of_any_size_list_everything_in_order(store: Store, variant_ids: list[int]) -> None:
    sweep_id = store.get_variant(variant_ids[0]).sweep_id
    for step in (0, 5, 10):
        for metric in ("entropy", "other", "zeta"):
            store.write_head_metrics(_grid(variant_ids, step, metric, seed=step))

    def walk(listing, limit: int) -> list[HeadMetric]:  # type: ignore[no-untyped-def]
        out, cursor = [], None
        while True:
            page = listing(cursor=cursor, limit=limit)
            out.extend(page.items)
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    def sweep_listing(**kw):  # type: ignore[no-untyped-def]
        return store.list_sweep_head_metrics(sweep_id, "other", step_min=5, **kw)

    def variant_listing(**kw):  # type: ignore[no-untyped-def]
        return store.list_head_metrics(variant_ids[1], **kw)

    for listing, n in ((sweep_listing, 3 * 2 * 8), (variant_listing, 3 * 3 * 8)):
        everything = listing(limit=1000).items
        assert len(everything) == n
        for limit in (1, 2, 3, 7, 8, 9, 16, 17, n - 1, n):
            assert walk(listing, limit) == everything, limit


def test_scalar_metrics(store: Store, variant_ids: list[int]) -> None:
    v = variant_ids[0]
    cols = {"variant_id": v, "step": np.arange(3), "name": "loss", "value": [3.0, 2.0, 1.0]}
    assert store.write_scalar_metrics(cols).changed == 3
    assert store.write_scalar_metrics(cols).changed == 0
    store.write_scalar_metrics([(v, 0, "lr", 1e-3), (v, 2, "loss", 0.5)])
    loss = store.list_scalar_metrics(v, names=["loss"])
    assert [(m.step, m.value) for m in loss] == [(0, 3.0), (1, 2.0), (2, 0.5)]
    assert {m.name for m in store.list_scalar_metrics(v)} == {"loss", "lr"}
    with pytest.raises(InvalidInput, match="must be finite"):
        store.write_scalar_metrics([(v, 3, "loss", math.nan)])


def test_changed_batches_enqueue_mirror_work_and_retries_do_not(store: Store, variant_ids: list[int]) -> None:
    store.write_head_metrics(_grid(variant_ids[:2], 10))
    store.write_head_metrics(_grid(variant_ids[:2], 10))  # retry: nothing changed
    items = store.list_outbox().items
    assert len(items) == 1 and items[0].kind == "head_metrics"
    assert items[0].payload == {
        "ranges": [
            {"variant_id": variant_ids[0], "step_min": 10, "step_max": 10},
            {"variant_id": variant_ids[1], "step_min": 10, "step_max": 10},
        ]
    }
    store.write_scalar_metrics([(variant_ids[0], s, "loss", 1.0) for s in (3, 7)])
    assert store.list_outbox(kind="scalar_metrics").items[0].payload == {
        "ranges": [{"variant_id": variant_ids[0], "step_min": 3, "step_max": 7}]
    }
    store.write_head_metrics(_grid(variant_ids[:1], 11), mirror=False)
    assert store.outbox_pending_count() == 2


def test_concurrent_writers_of_overlapping_batches(store: Store, variant_ids: list[int]) -> None:
    """Two writers racing on the same keys: no error, one row per key, a value from one."""
    batches = [_grid(variant_ids, s, seed=s) for s in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def write() -> None:
        try:
            barrier.wait()
            for batch in batches:
                store.write_head_metrics(batch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count_head_metrics(variant_ids=variant_ids) == 4 * 24


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_postgres_direct_copy_falls_back_to_upsert_on_a_collision(
    store: Store, variant_ids: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the pre-check cannot see: COPY hits a unique violation, the savepoint is
    rolled back and the staging upsert writes the batch instead."""
    store.write_head_metrics(_grid(variant_ids, 1, seed=1))
    monkeypatch.setattr(type(store), "_may_collide", staticmethod(lambda *args: False))
    newer = _grid(variant_ids, 1, seed=2)
    assert store.write_head_metrics(newer).changed == 24
    cols = store.read_head_metric_columns(variant_ids=variant_ids)
    assert sorted(cols["value"].tolist()) == sorted(np.asarray(newer["value"]).tolist())
    assert store.count_head_metrics() == 24
