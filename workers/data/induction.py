"""Induction data: repeated random segments and per-sequence random Markov chains.

``repeated`` (TransformerLens induction calibration, Olsson et al. 2022): ``BOS`` then a random
segment of ``L`` tokens that repeats until the sequence ends, so ``tokens[i] == tokens[i - L]``
for every ``i > L``. ``L = segment_length`` or, when that is None, ``(seq_len - 1) //
n_repeats`` (``seq_len = 101, n_repeats = 2`` gives the BOS + 2x50 calibration batch).
Tokens are drawn uniformly (with replacement) from the first ``n_tokens`` tokens of the
family's range (``n_tokens`` defaults to ``vocab_fraction`` of the range).
Needs ``n_tokens`` content tokens and ``seq_len >= 1 + n_repeats * 2``.

``markov`` (Edelman et al. 2024): each sequence gets a transition matrix over ``n_states``
states whose rows are Dirichlet(``alpha``) draws: a fresh one per sequence, or, when
``n_chains`` is set, one of a fixed pool of ``n_chains`` matrices drawn once per data config
(the diversity knob). ``BOS`` then a chain whose first state is uniform. State ``s`` is
content token ``start + s``. Needs ``n_states`` content tokens and ``seq_len >= 3``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from workers.data.common import (
    BOS,
    Arrays,
    FamilyGenerator,
    VocabSlice,
    check_float,
    check_int,
    config_error,
    knob_field,
    used_tokens,
)


@dataclass(frozen=True)
class RepeatedKnobs:
    segment_length: int | None = None  # None: (seq_len - 1) // n_repeats
    # Shortest period: each sequence draws its period uniformly from [min, segment_length].
    # None keeps one fixed period (the TransformerLens calibration layout). Train with a
    # range: a fixed period lets a one-layer model copy by position, with no induction head.
    min_segment_length: int | None = None
    n_repeats: int = 2  # whole copies of the segment at least
    vocab_fraction: float = 1.0  # share of the family's range the segment tokens come from
    n_tokens: int | None = None  # explicit number of tokens used (wins over vocab_fraction)

    def __post_init__(self) -> None:
        if self.segment_length is not None:
            check_int(knob_field("repeated", "segment_length"), self.segment_length, 1)
        check_int(knob_field("repeated", "n_repeats"), self.n_repeats, 2)
        if self.min_segment_length is not None:
            check_int(knob_field("repeated", "min_segment_length"), self.min_segment_length, 2)
        check_float(knob_field("repeated", "vocab_fraction"), self.vocab_fraction, 0.0, 1.0,
                    low_open=True)
        if self.n_tokens is not None:
            check_int(knob_field("repeated", "n_tokens"), self.n_tokens, 2)


class RepeatedGenerator(FamilyGenerator):
    name = "repeated"

    def __init__(self, knobs: RepeatedKnobs, vocab: VocabSlice, seq_len: int,
                 structure_rng: np.random.Generator) -> None:
        super().__init__(vocab, seq_len)
        self.knobs = knobs
        self.n_tokens = used_tokens(knobs.vocab_fraction, knobs.n_tokens, vocab.size)
        self.need_vocab(self.n_tokens, knob_field("repeated", "n_tokens"))
        self.segment_length = knobs.segment_length or (seq_len - 1) // knobs.n_repeats
        self.need_seq_len(1 + knobs.n_repeats * max(self.segment_length, 2),
                          f"{knob_field('repeated', 'segment_length')} or "
                          f"{knob_field('repeated', 'n_repeats')}")
        self.min_segment_length = knobs.min_segment_length or self.segment_length
        if self.min_segment_length > self.segment_length:
            raise config_error(knob_field("repeated", "min_segment_length"),
                               f"{self.min_segment_length} exceeds the segment length "
                               f"{self.segment_length}", "lower it or raise segment_length")

    def sample_arrays(self, n: int, rng: np.random.Generator) -> Arrays:
        segment = rng.integers(0, self.n_tokens, size=(n, self.segment_length))  # [n, L]
        periods = rng.integers(self.min_segment_length, self.segment_length + 1, size=n)  # [n]
        index = np.arange(self.seq_len - 1)[None, :] % periods[:, None]  # [n, S-1]
        tokens = np.empty((n, self.seq_len), dtype=np.int64)  # [n, S]
        tokens[:, 0] = BOS
        tokens[:, 1:] = np.take_along_axis(segment, index, axis=1) + self.vocab.start  # [n, S-1]
        return {"tokens": tokens}


@dataclass(frozen=True)
class MarkovKnobs:
    n_states: int = 8
    alpha: float = 1.0  # Dirichlet concentration of each transition row
    n_chains: int | None = None  # None: a fresh transition matrix per sequence

    def __post_init__(self) -> None:
        check_int(knob_field("markov", "n_states"), self.n_states, 2)
        check_float(knob_field("markov", "alpha"), self.alpha, 0.0, low_open=True)
        if self.n_chains is not None:
            check_int(knob_field("markov", "n_chains"), self.n_chains, 1, 1_000_000)


class MarkovGenerator(FamilyGenerator):
    name = "markov"

    def __init__(self, knobs: MarkovKnobs, vocab: VocabSlice, seq_len: int,
                 structure_rng: np.random.Generator) -> None:
        super().__init__(vocab, seq_len)
        self.knobs = knobs
        self.need_vocab(knobs.n_states, knob_field("markov", "n_states"))
        self.need_seq_len(3, "nothing: markov needs BOS plus two states")
        self.pool: np.ndarray | None = None  # [C, k, k] when n_chains is set
        if knobs.n_chains is not None:
            self.pool = self._draw(knobs.n_chains, structure_rng)

    def _draw(self, count: int, rng: np.random.Generator) -> np.ndarray:
        k = self.knobs.n_states
        return rng.dirichlet(np.full(k, self.knobs.alpha), size=(count, k))  # [count, k, k]

    def sample_with_matrices(self, n: int, rng: np.random.Generator
                             ) -> tuple[Arrays, np.ndarray]:
        """The arrays and each sequence's transition matrix ``[n, k, k]`` (row = from-state)."""
        if self.pool is None:
            matrices = self._draw(n, rng)  # [n, k, k]
        else:
            matrices = self.pool[rng.integers(0, len(self.pool), size=n)]  # [n, k, k]
        states = _run_chains(matrices, self.seq_len - 1, rng)  # [n, S-1]
        tokens = np.empty((n, self.seq_len), dtype=np.int64)  # [n, S]
        tokens[:, 0] = BOS
        tokens[:, 1:] = states + self.vocab.start
        return {"tokens": tokens}, matrices

    def sample_arrays(self, n: int, rng: np.random.Generator) -> Arrays:
        return self.sample_with_matrices(n, rng)[0]


def _run_chains(matrices: np.ndarray, steps: int, rng: np.random.Generator) -> np.ndarray:
    """``steps`` states of a chain per matrix ``[n, k, k]``, the first uniform: ``[n, steps]``.

    Vectorized over time: at every step a successor is drawn for *every* state (only the
    visited one is used, so the chain has the right law), and the per-step successor maps
    are composed with a parallel prefix scan (log2(steps) gathers instead of a Python loop).
    """
    n, k, _ = matrices.shape
    t_max = steps - 1
    cdf = np.cumsum(matrices, axis=-1)  # [n, k, k]
    uniforms = rng.random((n, t_max, k))  # [n, T-1, k], one per (step, current state)
    # successor[b, t, s]: the state at t+1 if the state at t is s = how many cumulative
    # bounds the uniform passes. A zero-probability transition is an empty interval and is
    # never drawn; the last bound is left out so rounding cannot go past the last state.
    successor = np.zeros((n, t_max, k), dtype=np.int64)  # [n, T-1, k]
    for j in range(k - 1):
        successor += uniforms >= cdf[:, None, :, j]
    # Hillis-Steele scan: afterwards successor[b, t, s] is the state at t+1 from s at 0.
    flat = successor.reshape(-1)  # a view: successor[b, t, s] = flat[(b*(T-1) + t)*k + s]
    base = (np.arange(n)[:, None] * t_max + np.arange(t_max)[None, :]) * k  # [n, T-1]
    span = 1
    while span < t_max:
        # new[t] = old[t][old[t - span]]: the map to t+1 composed after the map to t-span+1.
        successor[:, span:] = np.take(flat, base[:, span:, None] + successor[:, :-span])
        span *= 2
    first = np.asarray(rng.integers(0, k, size=n))  # [n]
    states = np.empty((n, steps), dtype=np.int64)  # [n, T]
    states[:, 0] = first
    states[:, 1:] = np.take(flat, base + first[:, None])
    return states


def transition_counts(tokens: torch.Tensor, start: int, n_states: int) -> torch.Tensor:
    """Bigram counts ``[k, k]`` of markov sequences (BOS column skipped)."""
    states = tokens[:, 1:] - start  # [n, S-1]
    pairs = states[:, :-1] * n_states + states[:, 1:]  # [n, S-2]
    counts = torch.bincount(pairs.reshape(-1), minlength=n_states * n_states)
    return counts.reshape(n_states, n_states)
