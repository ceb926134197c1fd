"""``DataConfig``: what data a variant trains on, validated on construction.

Which families, with which weights:

- ``families`` given: exactly those (weights >= 0, normalised; zero-weight families dropped);
- else ``diversity`` given: the families ``resolve_diversity`` picks, equal weights;
- else ``text_path`` given: the text file alone;
- else: an error (say what to train on).

Knobs of each family: the knob dataclass defaults, overridden by what ``diversity`` implies,
overridden by ``knobs[family]``. Knobs of a family outside the mixture are still validated and
apply where that family appears anyway (the ``repeated`` rows of the probe batch).

Randomness: ``seed`` fixes the data's *structure* (Markov chain pools); the stream seed passed
to ``make_stream`` fixes the order of samples, so variants that differ only in their training
seed see the same task distribution.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from workers.data.batch import TASK_NAMES
from workers.data.common import N_SPECIAL, check_float, check_int, config_error, vocab_slices
from workers.data.diversity import resolve_diversity
from workers.data.families import build_generator, resolve_knobs

VOCAB_LAYOUTS = ("shared", "partitioned")


@dataclass(frozen=True)
class DataConfig:
    vocab_size: int
    seq_len: int
    diversity: float | None = None  # in [0, 1]; see workers.data.diversity
    families: dict[str, float] | None = None  # family name -> weight
    knobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-family overrides
    text_path: str | None = None  # a local file for the "text" family
    vocab_layout: str = "shared"  # "shared" or "partitioned"; see workers.data.common
    seed: int = 0  # structure seed (chain pools), not the training seed

    def __post_init__(self) -> None:
        check_int("vocab_size", self.vocab_size, N_SPECIAL + 2)
        check_int("seq_len", self.seq_len, 3)
        check_int("seed", self.seed, 0)
        if self.diversity is not None:
            object.__setattr__(self, "diversity", check_float("diversity", self.diversity,
                                                              0.0, 1.0))
        if self.vocab_layout not in VOCAB_LAYOUTS:
            raise config_error("vocab_layout", f"unknown layout {self.vocab_layout!r}",
                               f"use one of {list(VOCAB_LAYOUTS)}")
        if self.text_path is not None and not isinstance(self.text_path, str):
            raise config_error("text_path", f"must be a path string, got {self.text_path!r}",
                               "pass the file's path as a string")
        object.__setattr__(self, "families", self._checked_families())
        object.__setattr__(self, "knobs", self._checked_knobs())
        self.build_generators()  # validates vocabulary and sequence-length needs

    def _checked_families(self) -> dict[str, float] | None:
        if self.families is None:
            if self.diversity is None and self.text_path is None:
                raise config_error("families", "no data chosen",
                                   "set diversity (0..1), families={name: weight} or text_path")
            if self.diversity is not None and self.text_path is not None:
                raise config_error("families", "text_path is set but diversity picks only "
                                   "synthetic families",
                                   "name the mixture, e.g. families={'text': 0.5, "
                                   "'repeated': 0.5}")
            return None
        if not isinstance(self.families, dict) or not self.families:
            raise config_error("families", f"must be a non-empty mapping, got "
                               f"{self.families!r}", "pass e.g. {'repeated': 1.0}")
        weights: dict[str, float] = {}
        for name, weight in self.families.items():
            if name not in TASK_NAMES:
                raise config_error(f"families['{name}']", "unknown family",
                                   f"use one of {TASK_NAMES}")
            if isinstance(weight, bool) or not isinstance(weight, int | float) \
                    or not math.isfinite(weight) or weight < 0:
                raise config_error(f"families['{name}']", f"weight must be a finite number "
                                   f">= 0, got {weight!r}", "use a non-negative weight")
            weights[name] = float(weight)
        if sum(weights.values()) <= 0:
            raise config_error("families", "all weights are zero",
                               "give at least one family a positive weight")
        if "text" in weights and weights["text"] > 0 and self.text_path is None:
            raise config_error("text_path", "families includes 'text' but no file is set",
                               "set text_path to a local text file")
        if self.text_path is not None and weights.get("text", 0.0) <= 0:
            raise config_error("families", "text_path is set but 'text' has no weight",
                               "add 'text' to families or drop text_path")
        return weights

    def _checked_knobs(self) -> dict[str, dict[str, Any]]:
        if not isinstance(self.knobs, dict):
            raise config_error("knobs", f"must be a mapping, got {self.knobs!r}",
                               "pass {family: {knob: value}}")
        for name, values in self.knobs.items():
            if name not in TASK_NAMES:
                raise config_error(f"knobs['{name}']", "unknown family",
                                   f"use one of {TASK_NAMES}")
            if not isinstance(values, dict):
                raise config_error(f"knobs['{name}']", f"must be a mapping, got {values!r}",
                                   "pass {knob: value}")
            self.family_knobs(name)  # raises on unknown knobs and bad values
        return {name: dict(values) for name, values in self.knobs.items()}

    def weights(self) -> dict[str, float]:
        """Normalised weights of the families in the mixture, in TASK_NAMES order."""
        if self.families is not None:
            raw = self.families
        elif self.diversity is not None:
            raw = resolve_diversity(self.diversity)["families"]
        else:
            raw = {"text": 1.0}
        total = sum(raw.values())
        return {name: raw[name] / total for name in TASK_NAMES if raw.get(name, 0.0) > 0}

    def family_knobs(self, name: str) -> Any:
        """The resolved knob dataclass of family ``name``."""
        return resolve_knobs(name, self.diversity, self.knobs.get(name, {}), self.text_path)

    def build_generators(self) -> dict[str, Any]:
        """One generator per family of the mixture (raises ValueError if one does not fit)."""
        names = list(self.weights())
        slices = vocab_slices(self.vocab_size, names, self.vocab_layout)
        return {name: build_generator(name, self.family_knobs(name), slices[name],
                                      self.seq_len, self.seed) for name in names}

    def __hash__(self) -> int:  # dict fields: hash the canonical form instead
        return hash(self.canonical_json())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataConfig:
        known = {"vocab_size", "seq_len", "diversity", "families", "knobs", "text_path",
                 "vocab_layout", "seed"}
        for key in values:
            if key not in known:
                raise config_error(key, "unknown DataConfig field", f"use one of {sorted(known)}")
        return cls(**values)

    def canonical_json(self) -> str:
        """Key-sorted JSON of the config: the stable identity of the data distribution."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
