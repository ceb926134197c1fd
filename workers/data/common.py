"""Vocabulary layout, validation helpers and the base class of every family generator.

Vocabulary layout (``vocab_size`` tokens in all):

====================  =====================================================================
token                 meaning
====================  =====================================================================
0  ``BOS``            first token of every sequence; also the padding token (``PAD``)
1  ``SEP``            separator between a sequence and its copy/reverse
2  ``QUERY``          label-query token of keyword classification
3  ``RESERVED``       reserved for future specials (never generated)
4 .. vocab_size-1     content tokens, handed to each family as a :class:`VocabSlice`
====================  =====================================================================

With ``vocab_layout="shared"`` (default) every family gets the whole content range and
numbers its own tokens from its start, so a token id means different things in different
families and the model has to read the family from the context. With
``vocab_layout="partitioned"`` the content range is cut into equal consecutive slices, one
per family of the mixture in :data:`TASK_NAMES` order, so token ids never collide across
families. Each family's token needs are listed in its module docstring.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from workers.data.batch import TASK_INDEX, Arrays, Batch, batch_from_arrays

BOS = 0
PAD = 0
SEP = 1
QUERY = 2
RESERVED = 3
N_SPECIAL = 4
FIRST_CONTENT = N_SPECIAL


def config_error(field: str, problem: str, fix: str) -> ValueError:
    """A ValueError that names the offending field and how to fix it."""
    return ValueError(f"{field}: {problem}; {fix}")


def check_int(field: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise config_error(field, f"must be an integer, got {value!r}", "pass a whole number")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise config_error(field, f"must be >= {minimum}{upper}, got {value}",
                           "use a value in that range")
    return int(value)


def check_float(field: str, value: Any, low: float, high: float | None = None,
                low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        raise config_error(field, f"must be a number, got {value!r}", "pass a float")
    v = float(value)
    bad_low = v <= low if low_open else v < low
    if not math.isfinite(v) or bad_low or (high is not None and v > high):
        lo = f"> {low}" if low_open else f">= {low}"
        hi = f" and <= {high}" if high is not None else ""
        raise config_error(field, f"must be {lo}{hi}, got {value}", "use a value in that range")
    return v


@dataclass(frozen=True)
class VocabSlice:
    """The content tokens ``[start, start + size)`` a family may use."""

    start: int
    size: int

    @property
    def stop(self) -> int:
        return self.start + self.size


def vocab_slices(vocab_size: int, families: list[str], layout: str) -> dict[str, VocabSlice]:
    """The content range of each family under ``layout`` ("shared" or "partitioned")."""
    n_content = vocab_size - N_SPECIAL
    if layout == "shared":
        return {name: VocabSlice(FIRST_CONTENT, n_content) for name in families}
    share = n_content // max(len(families), 1)
    return {name: VocabSlice(FIRST_CONTENT + i * share, share) for i, name in enumerate(families)}


def used_tokens(fraction: float, explicit: int | None, available: int, minimum: int = 2) -> int:
    """How many tokens a family draws from: ``explicit`` if given, else ``fraction`` of the
    available range, never fewer than ``minimum``."""
    if explicit is not None:
        return explicit
    return max(minimum, int(math.floor(fraction * available)))


class FamilyGenerator(ABC):
    """One task family: built once per data config, then samples batches from a given RNG.

    Subclasses validate their token needs and the sequence length in ``__init__`` and raise
    :func:`config_error` naming ``vocab_size``/``seq_len``/``knobs[...]`` with a fix.
    """

    name: ClassVar[str]

    def __init__(self, vocab: VocabSlice, seq_len: int) -> None:
        self.vocab = vocab
        self.seq_len = seq_len

    @abstractmethod
    def sample_arrays(self, n: int, rng: np.random.Generator) -> Arrays:
        """``n`` sequences of length ``seq_len`` as numpy arrays named like Batch fields
        (``task`` left out); all randomness comes from ``rng``."""

    def tagged_arrays(self, n: int, rng: np.random.Generator) -> Arrays:
        """``sample_arrays`` plus the ``task`` column."""
        arrays = self.sample_arrays(n, rng)
        arrays["task"] = np.full(n, TASK_INDEX[self.name], dtype=np.int64)
        return arrays

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        """``n`` sequences as a Batch."""
        return batch_from_arrays(self.tagged_arrays(n, rng))

    def need_vocab(self, need: int, knob_hint: str) -> None:
        if need > self.vocab.size:
            raise config_error(
                "vocab_size",
                f"family '{self.name}' needs {need} content tokens but its range has "
                f"{self.vocab.size}",
                f"raise vocab_size until the family's range holds {need} tokens (the whole "
                f"content range with vocab_layout='shared', an equal share with "
                f"'partitioned') or lower {knob_hint}",
            )

    def need_seq_len(self, minimum: int, knob_hint: str) -> None:
        if self.seq_len < minimum:
            raise config_error(
                "seq_len",
                f"family '{self.name}' needs seq_len >= {minimum}, got {self.seq_len}",
                f"raise seq_len or lower {knob_hint}",
            )


def knob_field(family: str, knob: str) -> str:
    return f"knobs['{family}']['{knob}']"


