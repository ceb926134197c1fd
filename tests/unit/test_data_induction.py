"""repeated and markov: determinism and ground truth."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from workers.data import BOS, DataConfig
from workers.data.induction import MarkovGenerator, RepeatedGenerator, transition_counts


def _gen(family: str, seq_len: int = 33, vocab_size: int = 64, **knobs: Any) -> Any:
    cfg = DataConfig(vocab_size=vocab_size, seq_len=seq_len, families={family: 1.0},
                     knobs={family: dict(knobs)})
    return cfg.build_generators()[family]


def test_repeated_is_deterministic_and_repeats() -> None:
    gen = _gen("repeated", seq_len=101)
    assert isinstance(gen, RepeatedGenerator) and gen.segment_length == 50
    a = gen.sample(4, np.random.default_rng(1)).tokens
    b = gen.sample(4, np.random.default_rng(1)).tokens
    c = gen.sample(4, np.random.default_rng(2)).tokens
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a[:, 0] == BOS).all()
    assert torch.equal(a[:, 51:], a[:, 1:51])  # BOS + 2 x 50, the calibration batch


def test_repeated_segment_length_and_vocabulary() -> None:
    gen = _gen("repeated", seq_len=40, segment_length=7, n_tokens=5)
    tokens = gen.sample(8, np.random.default_rng(0)).tokens
    assert torch.equal(tokens[:, 8:], tokens[:, 1:-7])  # period 7 through the whole row
    body = tokens[:, 1:]
    assert body.min() >= 4 and body.max() < 4 + 5


def test_markov_follows_a_fixed_chain() -> None:
    gen = _gen("markov", seq_len=65, n_states=4, n_chains=1)
    assert isinstance(gen, MarkovGenerator) and gen.pool is not None
    batch = gen.sample(300, np.random.default_rng(0))
    counts = transition_counts(batch.tokens, gen.vocab.start, 4).double()
    empirical = counts / counts.sum(1, keepdim=True)
    assert torch.allclose(empirical, torch.from_numpy(gen.pool[0]), atol=0.03)


def test_markov_never_takes_a_zero_probability_transition() -> None:
    gen = _gen("markov", seq_len=50, n_states=5, n_chains=1)
    assert isinstance(gen, MarkovGenerator)
    cycle = np.zeros((1, 5, 5))
    cycle[0, np.arange(5), (np.arange(5) + 1) % 5] = 1.0  # s -> s+1 only
    cycle[0, 2] = [0.0, 0.0, 0.0, 0.5, 0.5]  # and 2 -> 3 or 4
    gen.pool = cycle
    counts = transition_counts(gen.sample(64, np.random.default_rng(3)).tokens,
                               gen.vocab.start, 5)
    allowed = torch.from_numpy(cycle[0] > 0)
    assert counts[~allowed].sum() == 0 and counts[2, 3] > 0 and counts[2, 4] > 0


def test_markov_fresh_chains_differ_and_pools_are_bounded() -> None:
    fresh = _gen("markov", n_states=3)
    assert isinstance(fresh, MarkovGenerator) and fresh.pool is None
    _, matrices = fresh.sample_with_matrices(6, np.random.default_rng(0))
    assert len({m.tobytes() for m in matrices}) == 6
    pooled = _gen("markov", n_states=3, n_chains=2)
    assert isinstance(pooled, MarkovGenerator)
    _, matrices = pooled.sample_with_matrices(40, np.random.default_rng(0))
    assert len({m.tobytes() for m in matrices}) <= 2
    # The pool is structure: fixed by DataConfig.seed, not by the sampling RNG.
    again = _gen("markov", n_states=3, n_chains=2)
    assert isinstance(again, MarkovGenerator) and again.pool is not None
    assert pooled.pool is not None and np.array_equal(pooled.pool, again.pool)


def test_repeated_with_a_period_range_varies_the_period_per_sequence():
    from workers.data import DataConfig, make_stream

    cfg = DataConfig(vocab_size=64, seq_len=49, families={"repeated": 1.0},
                     knobs={"repeated": {"segment_length": 24, "min_segment_length": 6}})
    tokens = make_stream(cfg, 0).next_batch(64).tokens.numpy()
    periods = []
    for row in tokens:
        body = row[1:]
        period = next(p for p in range(6, 25) if (body[p:] == body[:-p]).all())
        periods.append(period)
    assert min(periods) >= 6 and max(periods) <= 24
    assert len(set(periods)) > 5  # no fixed offset for a positional shortcut


def test_repeated_min_segment_length_over_segment_length_names_the_knob():
    import pytest

    from workers.data import DataConfig

    with pytest.raises(ValueError, match="min_segment_length"):
        DataConfig(vocab_size=64, seq_len=49, families={"repeated": 1.0},
                   knobs={"repeated": {"segment_length": 10, "min_segment_length": 12}})
