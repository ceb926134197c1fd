"""One metric of a sweep compared across the levels of a factor, as plain records: what
``headspec compare`` prints and ``GET /sweeps/{id}/compare`` returns (one implementation).

    result = compare_sweep(store, sweep_id, "model.n_layers", "max_induction", n_boot=2000)
    result.levels    # [{"factor", "level", "n_units", "mean", "ci_low", "ci_high"}, ...]
    result.effects   # [{"factor", "level_a", "level_b", "diff", "ci_low", "ci_high", "cohens_d"}, ...]

Numbers are plain Python floats with NaN as ``None`` (a level with fewer than two seeds has
no interval), so the records go to JSON as they are. The statistics are
``analysis.compare``'s; the per-variant values ``analysis.derived.per_variant_metric``'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.compare import N_BOOT, effect_sizes, level_summary
from analysis.derived import per_variant_metric
from analysis.load import factor_names, load_variants, sweep_variants
from service.store import Store


class UnknownFactor(ValueError):
    """The sweep does not vary this factor; the message lists the factors it does vary."""

    def __init__(self, sweep_id: int, factor: str, factors: list[str]) -> None:
        self.factors = factors
        known = ", ".join(factors) if factors else "(none: the sweep varies no factor)"
        super().__init__(f"unknown factor {factor!r} for sweep {sweep_id}; its factors: {known}")


@dataclass(frozen=True)
class Comparison:
    sweep_id: int
    factor: str
    metric: str
    n_boot: int
    levels: list[dict[str, Any]]
    effects: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"sweep_id": self.sweep_id, "factor": self.factor, "metric": self.metric,
                "n_boot": self.n_boot, "levels": self.levels, "effects": self.effects}


def compare_sweep(store: Store, sweep_id: int, by: str, metric: str, *, n_boot: int = N_BOOT) -> Comparison:
    """Compare ``metric`` across the levels of factor ``by`` (bootstrap CIs over seeds).

    Raises ``NotFound`` for an unknown sweep, :class:`UnknownFactor` for a factor the sweep
    does not vary, and ``ValueError`` naming the available metrics for an unknown metric or
    one the sweep has no value of."""
    variants = sweep_variants(store, sweep_id)
    factors = factor_names(variants)
    if by not in factors:
        raise UnknownFactor(sweep_id, by, factors)
    frame = per_variant_metric(store, sweep_id, metric, load_variants(store, sweep_id, variants))
    levels = level_summary(frame, by, metric, n_boot=n_boot)
    effects = effect_sizes(frame, by, metric, n_boot=n_boot)
    return Comparison(sweep_id, by, metric, n_boot, records(levels), records(effects))


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of plain Python values, NaN as None."""
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
