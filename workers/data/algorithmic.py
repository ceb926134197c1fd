"""Algorithmic tasks: copy, reverse, and bracket matching.

``copy`` / ``reverse``: ``BOS x_0 .. x_{l-1} SEP y_0 .. y_{l-1} PAD..`` with ``y = x`` (copy) or
``y = reversed(x)`` (reverse). The length ``l`` is drawn per sequence uniformly from
``[min_length, max_length]`` (default: both ``(seq_len - 2) // 2``). Only the predictions of
the ``y`` tokens count as targets. ``arcs`` points every output token to the input position
holding the same token (kind ``copy``). Needs ``n_tokens`` content tokens (default
``vocab_fraction`` of the range) and ``seq_len >= 2 + 2 * max_length``.

``brackets``: ``BOS`` then a uniformly random balanced string of ``n_pairs`` bracket pairs
(every balanced shape equally likely), each pair of one of ``n_types`` types drawn uniformly.
Opening bracket of type ``t`` is content token ``start + 2t``, closing ``start + 2t + 1``;
``arcs`` points every closing bracket to its opening bracket (kind ``bracket``). A closing
bracket is predictable exactly from that arc, which is what the syntactic probe measures.
Needs ``2 * n_types`` content tokens and ``seq_len >= 3``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from workers.data.batch import ARC_KIND_INDEX
from workers.data.common import (
    BOS,
    PAD,
    SEP,
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
class CopyKnobs:
    family: ClassVar[str] = "copy"
    min_length: int | None = None  # None: max_length
    max_length: int | None = None  # None: (seq_len - 2) // 2
    vocab_fraction: float = 1.0
    n_tokens: int | None = None  # explicit number of tokens used (wins over vocab_fraction)

    def __post_init__(self) -> None:
        for knob in ("min_length", "max_length"):
            if getattr(self, knob) is not None:
                check_int(knob_field(self.family, knob), getattr(self, knob), 1)
        if (self.min_length is not None and self.max_length is not None
                and self.min_length > self.max_length):
            raise config_error(knob_field(self.family, "min_length"),
                               f"{self.min_length} exceeds max_length {self.max_length}",
                               "make min_length <= max_length")
        check_float(knob_field(self.family, "vocab_fraction"), self.vocab_fraction, 0.0, 1.0,
                    low_open=True)
        if self.n_tokens is not None:
            check_int(knob_field(self.family, "n_tokens"), self.n_tokens, 2)


@dataclass(frozen=True)
class ReverseKnobs(CopyKnobs):
    family: ClassVar[str] = "reverse"


class CopyGenerator(FamilyGenerator):
    name = "copy"
    reverse = False

    def __init__(self, knobs: CopyKnobs, vocab: VocabSlice, seq_len: int,
                 structure_rng: np.random.Generator) -> None:
        super().__init__(vocab, seq_len)
        self.n_tokens = used_tokens(knobs.vocab_fraction, knobs.n_tokens, vocab.size)
        self.need_vocab(self.n_tokens, knob_field(self.name, "n_tokens"))
        self.max_length = knobs.max_length or max((seq_len - 2) // 2, 1)
        self.min_length = min(knobs.min_length or self.max_length, self.max_length)
        self.need_seq_len(2 + 2 * self.max_length, knob_field(self.name, "max_length"))

    def sample_arrays(self, n: int, rng: np.random.Generator) -> Arrays:
        lengths = rng.integers(self.min_length, self.max_length + 1, size=(n, 1))  # [n, 1]
        body = rng.integers(0, self.n_tokens, size=(n, self.seq_len)) + self.vocab.start
        pos = np.arange(self.seq_len)[None, :]  # [1, S]
        is_input = (pos >= 1) & (pos <= lengths)  # [n, S]
        is_output = (pos >= lengths + 2) & (pos <= 2 * lengths + 1)  # [n, S]
        if self.reverse:
            source = 2 * lengths + 2 - pos  # [n, S], output k <- input position l - k
        else:
            source = pos - lengths - 1  # [n, S], output k <- input position 1 + k
        source = np.where(is_output, source, 0)  # [n, S]
        tokens = np.where(is_input, body, PAD)  # [n, S]
        tokens[:, 0] = BOS
        tokens = np.where(pos == lengths + 1, SEP, tokens)
        tokens = np.where(is_output, np.take_along_axis(tokens, source, axis=1), tokens)
        arcs = np.where(is_output, source, -1)  # [n, S]
        arc_kind = np.where(is_output, ARC_KIND_INDEX["copy"], -1)  # [n, S]
        return {"tokens": tokens, "arcs": arcs, "loss_mask": is_output, "arc_kind": arc_kind}


class ReverseGenerator(CopyGenerator):
    name = "reverse"
    reverse = True


@dataclass(frozen=True)
class BracketsKnobs:
    n_types: int = 2
    n_pairs: int | None = None  # None: (seq_len - 1) // 2

    def __post_init__(self) -> None:
        check_int(knob_field("brackets", "n_types"), self.n_types, 1)
        if self.n_pairs is not None:
            check_int(knob_field("brackets", "n_pairs"), self.n_pairs, 1)


class BracketsGenerator(FamilyGenerator):
    name = "brackets"

    def __init__(self, knobs: BracketsKnobs, vocab: VocabSlice, seq_len: int,
                 structure_rng: np.random.Generator) -> None:
        super().__init__(vocab, seq_len)
        self.knobs = knobs
        self.need_vocab(2 * knobs.n_types, knob_field("brackets", "n_types"))
        self.n_pairs = knobs.n_pairs or max((seq_len - 1) // 2, 1)
        self.need_seq_len(1 + 2 * self.n_pairs, knob_field("brackets", "n_pairs"))

    def sample_arrays(self, n: int, rng: np.random.Generator) -> Arrays:
        m = self.n_pairs
        steps = _dyck_steps(n, m, rng)  # [n, 2m], +1 open / -1 close
        rows = np.arange(n)[:, None]  # [n, 1]
        depth_before = np.cumsum(steps, axis=1) - steps  # [n, 2m]
        # Opening and closing brackets on one level alternate in time, so sorting the
        # positions by (level, position) lists every opening right before its match.
        level = np.where(steps > 0, depth_before, depth_before - 1)  # [n, 2m]
        order = np.argsort(level * 2 * m + np.arange(2 * m), axis=1)  # [n, 2m]
        opens, closes = order[:, 0::2], order[:, 1::2]  # [n, m] each, matched pairwise
        kind = rng.integers(0, self.knobs.n_types, size=(n, m))  # [n, m]
        body = np.empty((n, 2 * m), dtype=np.int64)  # [n, 2m]
        body[rows, opens] = self.vocab.start + 2 * kind
        body[rows, closes] = self.vocab.start + 2 * kind + 1
        tokens = np.full((n, self.seq_len), PAD, dtype=np.int64)  # [n, S]
        tokens[:, 0] = BOS
        tokens[:, 1:2 * m + 1] = body
        arcs = np.full((n, self.seq_len), -1, dtype=np.int64)  # [n, S]
        arcs[rows, closes + 1] = opens + 1  # +1: BOS comes first
        arc_kind = np.where(arcs >= 0, ARC_KIND_INDEX["bracket"], -1)
        loss_mask = np.zeros((n, self.seq_len), dtype=np.bool_)  # [n, S]
        loss_mask[:, 1:2 * m + 1] = True  # the 2m brackets are the targets
        return {"tokens": tokens, "arcs": arcs, "loss_mask": loss_mask, "arc_kind": arc_kind}


def _dyck_steps(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uniformly random balanced strings of ``m`` pairs as +1/-1 steps ``[n, 2m]``.

    Cycle lemma: of the rotations of a random arrangement of ``m`` opens and ``m + 1``
    closes, exactly one keeps every proper prefix sum >= 0 (the one starting right after the
    first minimum of the prefix sums); dropping its final close leaves a uniform Dyck word.
    """
    length = 2 * m + 1
    rows = np.arange(n)[:, None]  # [n, 1]
    steps = np.full((n, length), -1, dtype=np.int64)  # [n, 2m+1]
    steps[rows, np.argsort(rng.random((n, length)), axis=1)[:, :m]] = 1
    start = np.argmin(np.cumsum(steps, axis=1), axis=1) + 1  # [n], first minimum + 1
    rotation = (start[:, None] + np.arange(length)[None, :]) % length  # [n, 2m+1]
    return steps[rows, rotation][:, :2 * m]
