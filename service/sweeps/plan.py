"""Expand a sweep spec into variants and group them into packs.

A variant is one trained configuration: a factor combination and a seed. Variants that
differ only in their seed and learning rate share a *pack*: they have the same model shape,
the same data configuration (hence the same fixed probe batch) and the same training
schedule, so one process trains them together with parameters stacked on a variant axis.
The seed sets both the model's initialisation and the training data stream, so variants of
different factor levels with the same seed see the same data (paired comparisons).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from service.sweeps.spec import SweepSpec, factor_combinations
from workers.data import DataConfig
from workers.model import ModelConfig
from workers.probes import ProbeSettings
from workers.train import TrainConfig

T = TypeVar("T")


class SpecError(ValueError):
    """A sweep that cannot run; the message names the variant, the field and the fix."""


@dataclass(frozen=True)
class PlannedVariant:
    index: int
    seed: int
    factors: dict[str, Any]
    config: dict[str, Any]  # model / data / train / probe, fully resolved, and the seed

    @property
    def pack_key(self) -> str:
        shared = copy.deepcopy(self.config)
        shared.pop("seed")
        shared["train"].pop("lr")
        blob = json.dumps(shared, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PlannedPack:
    key: str  # shape/data/schedule hash, plus a chunk suffix where a group was split
    variant_indices: tuple[int, ...]


def resolve_config(base: dict[str, dict[str, Any]], factors: dict[str, Any]) -> dict[str, dict]:
    """Apply factor values to the base and validate through the workers' config classes."""
    config = copy.deepcopy(base)
    for path, value in factors.items():
        section, _, key = path.partition(".")
        config[section][key] = value
    model = _section("model", lambda: ModelConfig.from_dict(config["model"]))
    data_values = {"vocab_size": model.vocab_size, "seq_len": model.n_ctx, **config["data"]}
    data = _section("data", lambda: DataConfig(**data_values))
    if data.seq_len > model.n_ctx:
        raise ValueError(f"data.seq_len={data.seq_len} exceeds model.n_ctx={model.n_ctx}; "
                         "lower data.seq_len or raise model.n_ctx")
    if data.vocab_size > model.vocab_size:
        raise ValueError(f"data.vocab_size={data.vocab_size} exceeds model.vocab_size="
                         f"{model.vocab_size}; they must agree")
    train = _section("train", lambda: TrainConfig.from_dict(config["train"]))
    probe = _section("probe", lambda: ProbeSettings.from_dict(config["probe"]))
    return {
        "model": model.to_dict(),
        "data": data.to_dict(),
        "train": train.to_dict(),
        "probe": probe.to_dict(),
    }


def _section(name: str, build: Callable[[], T]) -> T:
    """Build one section's config; its error message starts with the section's name."""
    try:
        return build()
    except (ValueError, TypeError) as exc:
        message = str(exc)
        if message.startswith(f"{name}.") or message.startswith(f"{name}:"):
            raise
        raise ValueError(f"{name}.{message}") from exc


def plan_variants(spec: SweepSpec) -> list[PlannedVariant]:
    base = spec.base.model_dump()
    variants: list[PlannedVariant] = []
    for factors in factor_combinations(spec):
        try:
            config = resolve_config(base, factors)
        except (ValueError, TypeError) as exc:
            where = f"variant {factors}" if factors else "base"
            raise SpecError(f"{where}: {exc}") from exc
        for seed in spec.seed_list():
            variants.append(PlannedVariant(len(variants), seed, dict(factors), {**config, "seed": seed}))
    return variants


def plan_packs(variants: list[PlannedVariant], max_pack_size: int | None) -> list[PlannedPack]:
    groups: dict[str, list[int]] = {}
    for v in variants:
        groups.setdefault(v.pack_key, []).append(v.index)
    packs = []
    for key, indices in groups.items():
        size = max_pack_size or len(indices)
        chunks = [indices[i : i + size] for i in range(0, len(indices), size)]
        for n, chunk in enumerate(chunks):
            packs.append(PlannedPack(key if len(chunks) == 1 else f"{key}-{n}", tuple(chunk)))
    return packs
