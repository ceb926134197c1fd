"""Attention patterns for head matching, API token hashes, and each variant's last probe step."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from service.store import Conflict, InvalidInput, NewVariant, NotFound, Store, head_metric_grid


@pytest.fixture
def variant_ids(store: Store) -> list[int]:
    _, variants = store.create_sweep("s", {}, [NewVariant({}, {}, "p") for _ in range(2)])
    return [v.id for v in variants]


def _patterns(seed: int) -> np.ndarray:
    raw = np.random.default_rng(seed).random((2, 1, 3, 5, 5))  # [B, L, H, Q, K]
    causal = np.tril(raw)
    return causal / causal.sum(-1, keepdims=True)


def test_patterns_round_trip_in_float16_precision(store: Store, variant_ids: list[int]) -> None:
    a = _patterns(0)
    assert store.write_head_patterns(variant_ids[0], 100, "key1", a) is True
    got = store.read_head_patterns(variant_ids)
    assert list(got) == [variant_ids[0]]
    stored = got[variant_ids[0]]
    assert (stored.step, stored.batch_key, stored.patterns.shape) == (100, "key1", a.shape)
    np.testing.assert_allclose(stored.patterns, a, atol=1e-3)


def test_patterns_keep_the_latest_step_and_retries_change_nothing(
    store: Store, variant_ids: list[int]
) -> None:
    v = variant_ids[0]
    store.write_head_patterns(v, 200, "k", _patterns(1))
    assert store.write_head_patterns(v, 200, "k", _patterns(1)) is False  # the same probe again
    assert store.write_head_patterns(v, 100, "k", _patterns(2)) is False  # an older probe
    np.testing.assert_allclose(store.read_head_patterns([v])[v].patterns, _patterns(1), atol=1e-3)
    assert store.write_head_patterns(v, 300, "k", _patterns(3)) is True
    assert store.read_head_patterns([v])[v].step == 300


def test_bad_patterns_are_refused_and_change_nothing(store: Store, variant_ids: list[int]) -> None:
    v = variant_ids[0]
    with pytest.raises(InvalidInput, match=r"\[B, L, H, Q, K\]"):
        store.write_head_patterns(v, 1, "k", np.zeros((2, 3)))
    bad = _patterns(0)
    bad[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(InvalidInput, match="NaN"):
        store.write_head_patterns(v, 1, "k", bad)
    with pytest.raises(NotFound, match="unknown variant"):
        store.write_head_patterns(10**6, 1, "k", _patterns(0))
    assert store.read_head_patterns(variant_ids) == {}


def test_deleting_a_sweep_deletes_its_patterns(store: Store, variant_ids: list[int]) -> None:
    store.write_head_patterns(variant_ids[0], 1, "k", _patterns(0))
    store.delete_sweep(store.get_variant(variant_ids[0]).sweep_id)
    assert store.read_head_patterns(variant_ids) == {}


def test_tokens_are_found_by_hash_and_revoked(store: Store) -> None:
    digest = hashlib.sha256(b"secret-token").hexdigest()
    token = store.create_token("ci", digest, "hs_abcd")
    assert (token.name, token.prefix, token.revoked_at) == ("ci", "hs_abcd", None)
    with pytest.raises(Conflict, match="'ci' exists"):
        store.create_token("ci", hashlib.sha256(b"other").hexdigest(), "hs_x")
    found = store.token_by_hash(digest)
    assert found is not None and found.id == token.id and found.last_used_at is not None
    assert store.token_by_hash(hashlib.sha256(b"wrong").hexdigest()) is None
    assert store.revoke_token("ci").revoked_at is not None
    assert store.token_by_hash(digest) is None
    with pytest.raises(NotFound, match="existing tokens: ci"):
        store.revoke_token("nope")
    with pytest.raises(InvalidInput, match="sha256"):
        store.token_by_hash("not-a-hash")
    assert [t.name for t in store.list_tokens()] == ["ci"]


def test_last_head_metric_steps(store: Store, variant_ids: list[int]) -> None:
    a, b = variant_ids
    for step in (0, 50, 100):
        store.write_head_metrics(head_metric_grid([a], step, "induction", np.zeros((1, 1, 2))))
    store.write_head_metrics(head_metric_grid([b], 50, "induction", np.zeros((1, 1, 2))))
    store.write_head_metrics(head_metric_grid([b], 75, "entropy", np.zeros((1, 1, 2))))
    sweep_id = store.get_variant(a).sweep_id
    assert store.last_head_metric_steps(sweep_id, "induction") == {a: 100, b: 50}
    assert store.last_head_metric_steps(sweep_id, "induction", step_max=60) == {a: 50, b: 50}
    with pytest.raises(NotFound, match="unknown metric"):
        store.last_head_metric_steps(sweep_id, "nope")


def test_reading_each_variant_at_its_own_step(store: Store, variant_ids: list[int]) -> None:
    a, b = variant_ids
    for step in (0, 50, 100):
        store.write_head_metrics(head_metric_grid([a, b], step, "induction", np.full((2, 1, 2), step / 100)))
    cols = store.read_head_metric_columns(at_steps={a: 100, b: 50}, metrics=["induction"])
    got = sorted(set(zip(cols["variant_id"].tolist(), cols["step"].tolist(), cols["value"].tolist(),
                         strict=True)))
    assert got == [(a, 100, 1.0), (b, 50, 0.5)] and len(cols["value"]) == 4
    assert len(store.read_head_metric_columns(at_steps={})["value"]) == 0
    with pytest.raises(InvalidInput, match="at_steps alone"):
        store.read_head_metric_columns(at_steps={a: 0}, sweep_id=store.get_variant(a).sweep_id)
