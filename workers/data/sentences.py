"""Shared machinery of the sentence families (grammar, languages).

A sentence is drawn as a *skeleton*: per word a class code (e.g. "singular noun of language
2"), the distance back to its arc partner and the arc kind. A skeleton depends only on a few
discrete choices, which families draw vectorized and encode as one integer *choice id*; the
skeleton of each id is built once in Python and kept in a :class:`SkeletonTable`. Sequences
are then assembled and every word filled with a uniform lexeme of its class in numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from workers.data.common import BOS

BOS_CODE = 0  # code 0 is the BOS token; families number their word classes from 1


@dataclass(frozen=True)
class Skeleton:
    codes: tuple[int, ...]  # word class per word
    back: tuple[int, ...]  # distance back to the arc partner, 0 = no arc
    kinds: tuple[int, ...]  # ARC_KINDS index per word, -1 = no arc


class SkeletonBuilder:
    """Write a skeleton word by word; ``emit`` returns the word's index for later arcs."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.back: list[int] = []
        self.kinds: list[int] = []

    def emit(self, code: int, partner: int = -1, kind: int = -1) -> int:
        here = len(self.codes)
        self.codes.append(code)
        self.back.append(here - partner if partner >= 0 else 0)
        self.kinds.append(kind if partner >= 0 else -1)
        return here

    def link(self, later: int, earlier: int, kind: int) -> None:
        """Add an arc after the fact, unless ``later`` already has one."""
        if self.back[later] == 0:
            self.back[later], self.kinds[later] = later - earlier, kind

    def freeze(self) -> Skeleton:
        return Skeleton(tuple(self.codes), tuple(self.back), tuple(self.kinds))


class SkeletonTable:
    """Skeletons by integer choice id, padded into arrays so sequences assemble vectorized.

    ``build(choice_id)`` makes the skeleton of an id the first time it is drawn. The table
    is cleared when it reaches ``limit`` rows, which bounds memory for huge choice spaces.
    """

    def __init__(self, build: Callable[[int], Skeleton], limit: int = 50_000) -> None:
        self.build = build
        self.limit = limit
        self.clear()

    def clear(self) -> None:
        self.index: dict[int, int] = {}
        self.lengths = np.zeros(0, dtype=np.int64)  # [capacity]
        self.codes = np.zeros((0, 1), dtype=np.int64)  # [capacity, W] word class per slot
        self.back = np.zeros((0, 1), dtype=np.int64)  # [capacity, W]
        self.kinds = np.zeros((0, 1), dtype=np.int64)  # [capacity, W]

    def _reserve(self, rows: int, width: int) -> None:
        capacity, old_width = self.codes.shape
        if rows <= capacity and width <= old_width:
            return
        capacity = max(rows, 2 * capacity, 64)  # doubling keeps growth amortised
        width = max(width, old_width)
        grown = []
        for old, pad in ((self.codes, 0), (self.back, 0), (self.kinds, -1)):
            new = np.full((capacity, width), pad, dtype=np.int64)
            new[:len(old), :old.shape[1]] = old
            grown.append(new)
        self.codes, self.back, self.kinds = grown
        lengths = np.zeros(capacity, dtype=np.int64)
        lengths[:len(self.lengths)] = self.lengths
        self.lengths = lengths

    def _add(self, ids: list[int]) -> None:
        skeletons = [self.build(i) for i in ids]
        first = len(self.index)
        self._reserve(first + len(ids), max(len(s.codes) for s in skeletons))
        for row, (i, skeleton) in enumerate(zip(ids, skeletons, strict=True), start=first):
            width = len(skeleton.codes)
            self.codes[row, :width] = skeleton.codes
            self.back[row, :width] = skeleton.back
            self.kinds[row, :width] = skeleton.kinds
            self.lengths[row] = width
            self.index[i] = row

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The table row of every choice id (same shape), building unseen skeletons."""
        unique, inverse = np.unique(ids, return_inverse=True)
        unique_ids = unique.tolist()
        new = [i for i in unique_ids if i not in self.index]
        if new and len(self.index) + len(new) > self.limit:
            self.clear()
            new = unique_ids
        if new:
            self._add(new)
        mapped = np.array([self.index[i] for i in unique_ids], dtype=np.int64)
        return mapped[inverse].reshape(ids.shape)


def assemble(choice_ids: np.ndarray, table: SkeletonTable, seq_len: int,
             rng: np.random.Generator, code_base: np.ndarray, code_size: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``BOS`` + the sentences ``choice_ids [n, M]`` cut at ``seq_len``: (tokens,
    arcs, arc kinds). ``M`` must be large enough that every row reaches ``seq_len``.

    Word class ``c`` becomes token ``code_base[c] + uniform integer below code_size[c]``.
    """
    n = len(choice_ids)
    rows = table.rows(choice_ids)  # [n, M]
    lengths = table.lengths[rows]  # [n, M]
    ends = 1 + np.cumsum(lengths, axis=1)  # [n, M], BOS comes first
    assert (ends[:, -1] >= seq_len).all(), "too few sentences drawn to fill the sequence"
    positions = np.arange(seq_len)  # [S]
    # Sentence of each position: how many sentences end at or before it.
    sentence = (ends[:, None, :] <= positions[None, :, None]).sum(axis=2)  # [n, S]
    sentence[:, 0] = 0
    starts = ends - lengths  # [n, M]
    slot = positions[None, :] - np.take_along_axis(starts, sentence, axis=1)  # [n, S]
    slot[:, 0] = 0
    row = np.take_along_axis(rows, sentence, axis=1)  # [n, S]
    codes = table.codes[row, slot]  # [n, S]
    back = table.back[row, slot]  # [n, S]
    kinds = table.kinds[row, slot]  # [n, S]
    codes[:, 0], back[:, 0], kinds[:, 0] = BOS_CODE, 0, -1
    lexeme = (rng.random((n, seq_len)) * code_size[codes]).astype(np.int64)  # [n, S]
    tokens = code_base[codes] + lexeme  # [n, S]
    tokens[:, 0] = BOS
    arcs = np.where(back > 0, positions[None, :] - back, -1)  # [n, S]
    return tokens, arcs, kinds
