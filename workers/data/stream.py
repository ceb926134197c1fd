"""Mixtures of families, training streams, and the fixed probe batch of a data config."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from workers.data.batch import TASK_INDEX, Batch, batch_from_arrays, concat_arrays, concat_batches
from workers.data.common import FIRST_CONTENT, N_SPECIAL, FamilyGenerator, VocabSlice
from workers.data.config import DataConfig
from workers.data.families import build_generator
from workers.data.text import file_digest

_STREAM_TAG = 0x5EED_0002
_PROBE_TAG = 0x5EED_0003
PROBE_KEY_VERSION = 1  # bump when probe batch generation changes


class Mixture:
    """Sequences of several families in one batch, each family drawn with its weight."""

    def __init__(self, generators: dict[str, FamilyGenerator], weights: dict[str, float]
                 ) -> None:
        self.generators = generators
        self.names = list(weights)
        self.probs = np.array([weights[name] for name in self.names], dtype=np.float64)
        self.probs /= self.probs.sum()

    @classmethod
    def from_config(cls, cfg: DataConfig) -> Mixture:
        return cls(cfg.build_generators(), cfg.weights())

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        """``n`` sequences; the family of each is an independent draw from the weights, and
        the rows come back in random order."""
        counts = rng.multinomial(n, self.probs)  # [n_families]
        parts = [self.generators[name].tagged_arrays(int(count), rng)
                 for name, count in zip(self.names, counts, strict=True) if count > 0]
        arrays = concat_arrays(parts, parts[0]["tokens"].shape[1])
        if len(parts) > 1:
            order = rng.permutation(n)  # [n]
            arrays = {name: value[order] for name, value in arrays.items()}
        return batch_from_arrays(arrays)


class DataStream:
    """An endless stream of training batches. Batch ``i`` depends only on (config, seed, i,
    batch_size), so a run resumed at batch ``i`` (``start_batch=i``) sees the same data."""

    def __init__(self, cfg: DataConfig, seed: int, start_batch: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: must be an integer >= 0, got {seed!r}; pass the run's seed")
        self.cfg = cfg
        self.seed = seed
        self.batch_index = start_batch
        self.mixture = Mixture.from_config(cfg)

    def next_batch(self, batch_size: int) -> Batch:
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}; pass a positive size")
        rng = np.random.default_rng([self.seed, self.batch_index, _STREAM_TAG])
        self.batch_index += 1
        return self.mixture.sample(batch_size, rng)

    def batches(self, batch_size: int) -> Iterator[Batch]:
        while True:
            yield self.next_batch(batch_size)


def make_stream(cfg: DataConfig, seed: int, start_batch: int = 0) -> DataStream:
    """The training stream of ``cfg`` for training seed ``seed`` (independent across seeds)."""
    return DataStream(cfg, seed, start_batch)


def _numbers_as_float(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _numbers_as_float(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_numbers_as_float(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)  # 1 and 1.0 describe the same data
    return value


def _probe_families(cfg: DataConfig) -> list[str]:
    names = list(cfg.weights())
    return ["repeated", *[name for name in names if name != "repeated"]]


def probe_key(cfg: DataConfig) -> str:
    """sha256 identifying the probe batch: the resolved data distribution (weights, every
    used family's resolved knobs, vocabulary layout, structure seed, text file content), so
    configs written differently but meaning the same data share probes. Record it per run."""
    knobs = {}
    for name in _probe_families(cfg):
        resolved = dataclasses.asdict(cfg.family_knobs(name))
        if name == "text":
            resolved = {"sha256": file_digest(resolved["path"])}
        knobs[name] = resolved
    payload = {
        "version": PROBE_KEY_VERSION,
        "vocab_size": cfg.vocab_size,
        "seq_len": cfg.seq_len,
        "vocab_layout": cfg.vocab_layout,
        "seed": cfg.seed,
        "weights": cfg.weights(),
        "knobs": knobs,
    }
    text = json.dumps(_numbers_as_float(payload), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def probe_batch(cfg: DataConfig, batch_size: int = 32) -> Batch:
    """The fixed probe batch of ``cfg``: identical for every variant sharing the data config
    and independent of the training seed, so runs are comparable head by head.

    Rows are grouped by family: ``repeated`` first (always present, so the induction probe is
    meaningful even when the mixture lacks it), then the mixture's families in TASK_NAMES
    order, ``batch_size`` split as evenly as possible (earlier families get the remainder).
    """
    names = _probe_families(cfg)
    if batch_size < len(names):
        raise ValueError(f"batch_size: the probe batch needs one sequence per family "
                         f"({len(names)}: {names}), got {batch_size}; raise batch_size")
    generators = cfg.build_generators()
    if "repeated" not in generators:
        whole = VocabSlice(FIRST_CONTENT, cfg.vocab_size - N_SPECIAL)
        generators["repeated"] = build_generator("repeated", cfg.family_knobs("repeated"),
                                                 whole, cfg.seq_len, cfg.seed)
    root = int(probe_key(cfg)[:16], 16)
    share, extra = divmod(batch_size, len(names))
    parts = []
    for i, name in enumerate(names):
        rng = np.random.default_rng([root, TASK_INDEX[name], _PROBE_TAG])
        parts.append(generators[name].sample(share + (1 if i < extra else 0), rng))
    return concat_batches(parts)
