"""A pack's final probe, end to end into the real store (SQLite and PostgreSQL): attention
patterns for head matching (one row per variant, one batch key) and the pruning curves."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import torch

from service.store import NewVariant, Store
from service.sweeps.plan import resolve_config
from tests.integration.specs import TINY_BASE
from workers.data import DataConfig
from workers.model import ModelConfig
from workers.pack_runner import PackTask, PackVariant, check_pattern_size, probe_batch_key, run_pack

PATTERN_EXAMPLES, PROBE_STEPS = 3, [0, 3, 6]
FRACTIONS = ("0.00", "0.10", "0.20", "0.30", "0.40", "0.50")


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(**probe: object) -> dict:
    base = copy.deepcopy(TINY_BASE)
    base["probe"] = {"pattern_examples": PATTERN_EXAMPLES, **probe}
    return resolve_config(base, {})


def _task(store: Store, config: dict, n: int = 2) -> PackTask:
    _, variants = store.create_sweep("final-probe", {}, [NewVariant({}, {**config, "seed": i}, "p")
                                                         for i in range(n)])
    return PackTask("p", config, tuple(PackVariant(v.id, i, 1e-2) for i, v in enumerate(variants)))


def test_final_probe_writes_patterns_and_pruning_curves(store: Store) -> None:
    config = _config()
    task = _task(store, config)
    ids = task.variant_ids
    run_pack(task, store)

    model, data = config["model"], DataConfig.from_dict(config["data"])
    L, H, S = model["n_layers"], model["n_heads"], data.seq_len
    key = probe_batch_key(data, config["train"]["probe_batch_size"], PATTERN_EXAMPLES)
    stored = store.read_head_patterns(ids)
    assert sorted(stored) == sorted(ids)  # exactly one row per variant
    for p in stored.values():
        assert (p.step, p.batch_key, p.patterns.shape) == (6, key, (PATTERN_EXAMPLES, L, H, S, S))
        causal = np.triu(np.ones((S, S), dtype=bool), 1)
        assert np.abs(p.patterns[..., causal]).max() == 0  # no attention to later tokens
        np.testing.assert_allclose(p.patterns.sum(-1), 1.0, atol=1e-2)  # rows sum to 1 (float16)
    a, b = (stored[i].patterns for i in ids)
    assert not np.allclose(a, b, atol=1e-3)  # each variant its own patterns...
    alone = _task(store, config, n=2)  # ...the one its seed gives, in whatever pack it trains
    run_pack(PackTask("q", config, alone.variants[1:]), store)
    np.testing.assert_allclose(store.read_head_patterns([alone.variant_ids[1]])[alone.variant_ids[1]].patterns,
                               b, atol=2e-3)

    scalars = pd.DataFrame(store.read_scalar_metric_columns(variant_ids=ids))
    prune = scalars[scalars.name.str.startswith("prune.")]
    names = {f"prune.{order}.f{f}" for order in ("importance", "random") for f in FRACTIONS}
    for variant_id in ids:
        mine = prune[prune.variant_id == variant_id]
        assert set(mine.name) == names and len(mine) == len(names)  # once each
        assert set(mine.step) == {6}  # the final probe only
        intact = scalars[(scalars.variant_id == variant_id) & (scalars.name == "probe_loss")
                         & (scalars.step == 6)].value.item()
        for order in ("importance", "random"):
            assert mine[mine.name == f"prune.{order}.f0.00"].value.item() == pytest.approx(intact, rel=1e-5)
    assert sorted(scalars[scalars.name == "probe_loss"].step.unique()) == PROBE_STEPS
    assert store.read_head_metric_columns(variant_ids=ids, metrics=["importance"])["value"].size == \
        len(ids) * len(PROBE_STEPS) * L * H

    # a retried pack re-probes the same steps: the stored patterns do not change
    before = {i: (p.step, p.batch_key, p.patterns.copy()) for i, p in stored.items()}
    run_pack(task, store)
    after = store.read_head_patterns(ids)
    for i, (step, batch_key, patterns) in before.items():
        assert (after[i].step, after[i].batch_key) == (step, batch_key)
        np.testing.assert_array_equal(after[i].patterns, patterns)


def test_batch_key_is_equal_exactly_when_the_tokens_are(store: Store) -> None:
    config = _config(pattern_examples=2, compute_pruning=False)
    task = _task(store, config, n=1)
    run_pack(task, store)
    (stored,) = store.read_head_patterns(task.variant_ids).values()
    assert stored.patterns.shape[0] == 2
    scalars = store.read_scalar_metric_columns(variant_ids=task.variant_ids)
    assert not [n for n in scalars["name"] if str(n).startswith("prune.")]  # compute_pruning off

    data = DataConfig.from_dict(config["data"])
    key = probe_batch_key(data, 4, 2)
    assert stored.batch_key == key and len(key) == 32
    # written differently, the same data: the same probe batch, the same key
    same = DataConfig.from_dict({**config["data"], "families": {"repeated": 2.0}})
    assert probe_batch_key(same, 4, 2) == key
    for other in (probe_batch_key(DataConfig.from_dict({**config["data"], "seed": 1}), 4, 2),
                  probe_batch_key(data, 8, 2), probe_batch_key(data, 4, 3)):
        assert other != key


def test_patterns_the_store_would_refuse_are_refused_before_training(store: Store) -> None:
    data = DataConfig(vocab_size=64, seq_len=512, families={"repeated": 1.0})
    big = ModelConfig(n_layers=12, n_heads=12, d_model=48, vocab_size=64, n_ctx=512)
    check_pattern_size(big, data, 0)
    with pytest.raises(ValueError, match=r"probe\.pattern_examples=1 .* at most 0 \(0 keeps none\)"):
        check_pattern_size(big, data, 1)  # 2 bytes · 144 heads · 512² = 72 MiB, over the store's 64 MiB
    check_pattern_size(ModelConfig(n_layers=12, n_heads=8, d_model=48, vocab_size=64, n_ctx=512), data, 1)

    config = _config(pattern_examples=8)
    config["model"]["n_ctx"] = config["data"]["seq_len"] = 1500  # 2 · 4 · 1500² · 4 = 72 MB
    task = _task(store, config, n=1)
    with pytest.raises(ValueError, match=r"probe\.pattern_examples=4 "):  # min(8, probe_batch_size 4)
        run_pack(task, store)
    assert store.read_scalar_metric_columns(variant_ids=task.variant_ids)["value"].size == 0  # nothing ran
