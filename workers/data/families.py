"""Registry of the task families: their knob dataclasses and generator classes."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np

from workers.data.algorithmic import (
    BracketsGenerator,
    BracketsKnobs,
    CopyGenerator,
    CopyKnobs,
    ReverseGenerator,
    ReverseKnobs,
)
from workers.data.batch import TASK_INDEX, TASK_NAMES
from workers.data.classification import (
    BurstyGenerator,
    BurstyKnobs,
    KeywordGenerator,
    KeywordKnobs,
)
from workers.data.common import FamilyGenerator, VocabSlice, config_error
from workers.data.diversity import diversity_family_knobs
from workers.data.grammar import GrammarGenerator, GrammarKnobs
from workers.data.induction import MarkovGenerator, MarkovKnobs, RepeatedGenerator, RepeatedKnobs
from workers.data.languages import LanguagesGenerator, LanguagesKnobs
from workers.data.text import TextGenerator, TextKnobs

KNOB_TYPES: dict[str, type] = {
    "repeated": RepeatedKnobs,
    "markov": MarkovKnobs,
    "grammar": GrammarKnobs,
    "copy": CopyKnobs,
    "reverse": ReverseKnobs,
    "brackets": BracketsKnobs,
    "bursty": BurstyKnobs,
    "keyword": KeywordKnobs,
    "languages": LanguagesKnobs,
    "text": TextKnobs,
}
GENERATOR_TYPES: dict[str, type[FamilyGenerator]] = {
    "repeated": RepeatedGenerator,
    "markov": MarkovGenerator,
    "grammar": GrammarGenerator,
    "copy": CopyGenerator,
    "reverse": ReverseGenerator,
    "brackets": BracketsGenerator,
    "bursty": BurstyGenerator,
    "keyword": KeywordGenerator,
    "languages": LanguagesGenerator,
    "text": TextGenerator,
}
assert list(KNOB_TYPES) == TASK_NAMES == list(GENERATOR_TYPES)

# Tags that keep the structure RNG (pools, lexicons) apart from sampling RNGs.
STRUCTURE_TAG = 0x5EED_0001


def knob_names(family: str) -> list[str]:
    return [f.name for f in fields(KNOB_TYPES[family])]


def check_knob_names(family: str, values: dict[str, Any]) -> None:
    if family == "text" and values:
        raise config_error("knobs['text']", "text data has no knobs",
                           "set the file with text_path and drop knobs['text']")
    valid = knob_names(family)
    for knob in values:
        if knob not in valid:
            raise config_error(f"knobs['{family}']['{knob}']", "unknown knob",
                               f"use one of {valid}")


def resolve_knobs(family: str, diversity: float | None, explicit: dict[str, Any],
                  text_path: str | None) -> Any:
    """The knob dataclass of ``family``: defaults < what ``diversity`` implies < explicit."""
    check_knob_names(family, explicit)
    if family == "text":
        return TextKnobs(path=text_path)
    values: dict[str, Any] = {}
    if diversity is not None:
        values.update(diversity_family_knobs(diversity).get(family, {}))
    values.update(explicit)
    return KNOB_TYPES[family](**values)


def build_generator(family: str, knobs: Any, vocab: VocabSlice, seq_len: int,
                    data_seed: int) -> FamilyGenerator:
    structure_rng = np.random.default_rng([data_seed, TASK_INDEX[family], STRUCTURE_TAG])
    generator_type: Any = GENERATOR_TYPES[family]
    return generator_type(knobs, vocab, seq_len, structure_rng)  # type: ignore[no-any-return]
