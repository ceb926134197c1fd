"""The sweep spec: a base configuration and the factors varied over it.

```yaml
name: quickstart
base:
  model: {n_layers: 2, n_heads: 4, d_model: 64, vocab_size: 64, n_ctx: 49, attn_only: true}
  data: {diversity: 0.5}            # vocab_size and seq_len default to the model's
  train: {steps: 600, batch_size: 32, lr: 3.0e-3, probe_every: 50}
  probe: {exclude_bos: false}
factors:                            # dotted path -> values, or a distribution (random sampling)
  model.n_heads: [2, 4]
  train.lr: {log_uniform: [1.0e-4, 3.0e-3]}
sampling: grid                      # grid: every combination; random: `samples` draws
seeds: 2                            # repeats of every combination (or an explicit list)
resources: {cpus: 1, gpus: 0}       # per pack; fractional GPUs allowed
```

Every variant's configuration is built through the workers' own validated config classes
while the spec is checked, so an error names the field, the variant's factor values and the
fix, and nothing is submitted.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SECTIONS = ("model", "data", "train", "probe")
DEFAULT_MAX_VARIANTS = 2000


class Distribution(BaseModel):
    """A factor drawn at random (only with ``sampling: random``)."""

    model_config = ConfigDict(extra="forbid")
    log_uniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    choice: list[Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Distribution:
        given = [k for k in ("log_uniform", "uniform", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a distribution is exactly one of log_uniform: [lo, hi], "
                             "uniform: [lo, hi], choice: [values]")
        for kind in ("log_uniform", "uniform"):
            bounds = getattr(self, kind)
            if bounds is not None and not bounds[0] < bounds[1]:
                raise ValueError(f"{kind}: [lo, hi] needs lo < hi, got {list(bounds)}")
        if self.log_uniform is not None and self.log_uniform[0] <= 0:
            raise ValueError("log_uniform needs positive bounds")
        if self.choice is not None and not self.choice:
            raise ValueError("choice needs at least one value")
        return self

    def draw(self, rng: random.Random) -> Any:
        if self.log_uniform is not None:
            lo, hi = self.log_uniform
            return math.exp(rng.uniform(math.log(lo), math.log(hi)))
        if self.uniform is not None:
            return rng.uniform(*self.uniform)
        assert self.choice is not None
        return rng.choice(self.choice)


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cpus: float = Field(1.0, ge=0, description="CPUs per pack task")
    gpus: float = Field(0.0, ge=0, description="GPU share per pack task; fractions allowed")
    max_pack_size: int | None = Field(
        None, ge=1, description="cap on variants per pack (default: as many as fit the device)"
    )
    max_retries: int = Field(3, ge=0, description="retries of a pack whose worker dies")


class BaseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: dict[str, Any]
    data: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    probe: dict[str, Any] = Field(default_factory=dict)


FactorValues = Annotated[list[Any], Field(min_length=1)]


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    description: str = Field("", max_length=2000)
    base: BaseConfig
    factors: dict[str, FactorValues | Distribution] = Field(default_factory=dict)
    sampling: Literal["grid", "random"] = "grid"
    samples: int | None = Field(None, ge=1, description="number of random draws (sampling: random)")
    seeds: int | list[int] = Field(1, description="repeats per combination, or the seeds themselves")
    resources: Resources = Field(default_factory=lambda: Resources())
    max_variants: int = Field(DEFAULT_MAX_VARIANTS, ge=1, description="refuse larger sweeps")

    @field_validator("factors")
    @classmethod
    def _factor_paths(cls, factors: dict[str, Any]) -> dict[str, Any]:
        for path in factors:
            section, _, key = path.partition(".")
            if section not in SECTIONS or not key:
                raise ValueError(
                    f"factor {path!r}: use a dotted path <section>.<field> with section one of "
                    f"{list(SECTIONS)}, e.g. model.n_heads"
                )
        return factors

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: int | list[int]) -> int | list[int]:
        if isinstance(seeds, int) and seeds < 1:
            raise ValueError(f"seeds must be >= 1 repeats or a list of seeds, got {seeds}")
        if isinstance(seeds, list) and (not seeds or len(set(seeds)) != len(seeds)):
            raise ValueError("seeds: give a non-empty list of distinct seeds")
        return seeds

    @model_validator(mode="after")
    def _sampling(self) -> SweepSpec:
        dists = [p for p, f in self.factors.items() if isinstance(f, Distribution)]
        if self.sampling == "grid" and dists:
            raise ValueError(f"factors {dists} are distributions: set sampling: random and samples: N")
        if self.sampling == "random" and self.samples is None:
            raise ValueError("sampling: random needs samples: N (the number of draws)")
        n = self.n_variants()
        if n > self.max_variants:
            raise ValueError(
                f"the sweep expands to {n} variants, over max_variants={self.max_variants}; "
                "drop factor levels or seeds, or raise max_variants"
            )
        return self

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def n_variants(self) -> int:
        seeds = len(self.seed_list())
        if self.sampling == "random":
            return (self.samples or 0) * seeds
        return math.prod(len(v) for v in self.factors.values() if isinstance(v, list)) * seeds


def load_spec(path: str | Path) -> SweepSpec:
    """Read a YAML or JSON spec file (validation errors are pydantic ValidationErrors)."""
    text = Path(path).read_text()
    data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a sweep spec is a mapping with name, base and factors")
    return SweepSpec.model_validate(data)


def factor_combinations(spec: SweepSpec) -> list[dict[str, Any]]:
    """Factor values of each combination, before seeds: grid product or random draws."""
    if spec.sampling == "random":
        rng = random.Random(f"{spec.name}:factors")
        return [
            {p: (f.draw(rng) if isinstance(f, Distribution) else rng.choice(f))
             for p, f in spec.factors.items()}
            for _ in range(spec.samples or 0)
        ]
    paths = list(spec.factors)
    levels = [spec.factors[p] for p in paths]
    return [dict(zip(paths, combo, strict=True)) for combo in itertools.product(*levels)]
