"""The MLflow outbox: enqueue, claim with a lease, done / failed, no double claims."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from service.store import InvalidInput, NotFound, OutboxItem, Store
from service.store.models import utcnow


def test_enqueue_claim_and_mark_done(store: Store) -> None:
    first = store.enqueue_outbox("sweep_run", {"sweep_id": 1})
    assert isinstance(first, OutboxItem) and not first.done and first.attempts == 0
    store.enqueue_outbox("sweep_run", {"sweep_id": 2})
    claimed = store.claim_outbox("mirror-1", limit=1)
    assert [i.id for i in claimed] == [first.id]
    assert claimed[0].claimed_by == "mirror-1" and claimed[0].attempts == 1
    assert claimed[0].payload == {"sweep_id": 1}
    second = store.claim_outbox("mirror-2", limit=10)
    assert [i.payload for i in second] == [{"sweep_id": 2}]
    assert store.claim_outbox("mirror-3") == []
    assert store.mark_outbox_done([first.id], "mirror-2") == 0  # not mirror-2's
    assert store.mark_outbox_done([first.id], "mirror-1") == 1
    assert store.outbox_pending_count() == 1
    assert [i.id for i in store.list_outbox(done=True).items] == [first.id]


def test_an_expired_lease_is_claimable_again(store: Store) -> None:
    item = store.enqueue_outbox("k", {})
    assert item is not None
    now = utcnow()
    store.claim_outbox("crashed", now=now, lease_seconds=10)
    assert store.claim_outbox("other", now=now + timedelta(seconds=5)) == []
    again = store.claim_outbox("other", now=now + timedelta(seconds=11))
    assert [(i.id, i.attempts) for i in again] == [(item.id, 2)]
    assert store.mark_outbox_done([item.id], "crashed") == 0
    assert store.mark_outbox_done([item.id], "other") == 1


def test_failed_items_retry_later_or_give_up(store: Store) -> None:
    item = store.enqueue_outbox("k", {"x": 1})
    assert item is not None
    store.claim_outbox("m")
    failed = store.mark_outbox_failed(item.id, "m", "mlflow down", retry_in_seconds=60)
    assert failed.last_error == "mlflow down" and not failed.done
    assert store.claim_outbox("m") == []
    assert [i.id for i in store.claim_outbox("m", now=utcnow() + timedelta(seconds=61))] == [item.id]
    gave_up = store.mark_outbox_failed(item.id, "m", "bad payload", retry_in_seconds=None)
    assert gave_up.done and gave_up.last_error == "bad payload"
    with pytest.raises(InvalidInput, match="not leased to 'm'"):
        store.mark_outbox_failed(item.id, "m", "again")
    with pytest.raises(NotFound):
        store.mark_outbox_failed(999, "m", "x")


def test_dedupe_key_and_kinds(store: Store) -> None:
    assert store.enqueue_outbox("sweep_run", {"sweep_id": 1}, dedupe_key="sweep:1") is not None
    assert store.enqueue_outbox("sweep_run", {"sweep_id": 1}, dedupe_key="sweep:1") is None
    store.enqueue_outbox("report", {"report_id": 3})
    assert [i.kind for i in store.claim_outbox("m", kinds=["report"])] == ["report"]
    assert store.outbox_pending_count(kinds=["sweep_run"]) == 1
    with pytest.raises(InvalidInput, match="payload must be JSON-serialisable"):
        store.enqueue_outbox("k", {"x": float("nan")})


def test_concurrent_claims_never_hand_out_an_item_twice(store: Store, database_url: str) -> None:
    mirrors = {owner: Store.open(database_url) for owner in ("a", "b")}
    for i in range(30):
        store.enqueue_outbox("k", {"i": i})
    got: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def mirror(owner: str) -> None:
        try:
            barrier.wait()
            while items := mirrors[owner].claim_outbox(owner, limit=4):
                got[owner] += [i.id for i in items]
                mirrors[owner].mark_outbox_done([i.id for i in items], owner)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=mirror, args=(o,)) for o in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for mirror_store in mirrors.values():
        mirror_store.close()
    assert errors == []
    all_ids = got["a"] + got["b"]
    assert len(all_ids) == 30 and len(set(all_ids)) == 30
    assert store.outbox_pending_count() == 0
