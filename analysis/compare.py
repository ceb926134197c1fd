"""Comparison of one per-variant quantity across the levels of a factor.

Input is a per-variant frame (``analysis.derived.per_variant_metric`` or
``per_variant_derived``): one row per variant with a ``seed`` column, factor columns and the
value column.

Units. Within a level of the compared factor, the variants of one seed are averaged into one
unit: every *other* factor is averaged out (a marginal mean over the sweep's grid, equal weight
per variant). Seeds are the replicates, so confidence intervals are over seeds. A variant
without a seed is its own unit.

Confidence intervals are percentile bootstraps: ``n_boot`` (default :data:`N_BOOT`)
resamples of the units with replacement, a fixed RNG seed (default :data:`RNG_SEED`), so the
same data always give the same interval. Between two levels the units of each level are
resampled independently and the interval is that of the difference of means (b − a). Cohen's
d is that difference over the pooled standard deviation of the units (ddof=1). With fewer than
two units in a level its interval (and d) is NaN.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

N_BOOT = 2000
RNG_SEED = 0
CI = 0.95


def units(frame: pd.DataFrame, factor: str, value: str) -> dict[Any, np.ndarray]:
    """Per level of ``factor`` (sorted), the unit values: the mean of ``value`` per seed."""
    _require(frame, factor, value)
    data = frame[frame[value].notna()]
    seed = data["seed"].astype("object") if "seed" in data else pd.Series(pd.NA, index=data.index)
    unit = seed.where(seed.notna(), "variant:" + data["variant_id"].astype(str))
    grouped = data.assign(_unit=unit.astype(str)).groupby([factor, "_unit"], sort=False)[value].mean()
    out = {level: grouped.xs(level, level=0).to_numpy(dtype=np.float64)
           for level in grouped.index.get_level_values(0).unique()}
    return dict(sorted(out.items(), key=lambda kv: _sort_key(kv[0])))


def level_summary(
    frame: pd.DataFrame, factor: str, value: str, *, n_boot: int = N_BOOT, ci: float = CI,
    rng_seed: int = RNG_SEED,
) -> pd.DataFrame:
    """``factor, level, n_units, mean, ci_low, ci_high`` per level: the mean over units and
    its percentile-bootstrap interval."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for level, vals in units(frame, factor, value).items():
        low, high = interval(boot_means(vals, n_boot, rng), ci) if len(vals) >= 2 else (np.nan, np.nan)
        rows.append({"factor": factor, "level": level, "n_units": len(vals), "mean": float(vals.mean()),
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["factor", "level", "n_units", "mean", "ci_low", "ci_high"])


def effect_sizes(
    frame: pd.DataFrame, factor: str, value: str, *, n_boot: int = N_BOOT, ci: float = CI,
    rng_seed: int = RNG_SEED,
) -> pd.DataFrame:
    """For every pair of levels a < b (sorted): ``level_a, level_b, diff`` (mean b − mean a),
    its bootstrap interval ``ci_low, ci_high`` and ``cohens_d``."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for (a, va), (b, vb) in combinations(units(frame, factor, value).items(), 2):
        diff = float(vb.mean() - va.mean())
        if len(va) >= 2 and len(vb) >= 2:
            low, high = interval(boot_means(vb, n_boot, rng) - boot_means(va, n_boot, rng), ci)
            pooled = np.sqrt(((len(va) - 1) * va.var(ddof=1) + (len(vb) - 1) * vb.var(ddof=1))
                             / (len(va) + len(vb) - 2))
            d = diff / pooled if pooled > 0 else np.nan
        else:
            low = high = d = np.nan
        rows.append({"factor": factor, "level_a": a, "level_b": b, "diff": diff, "ci_low": low,
                     "ci_high": high, "cohens_d": d})
    columns = ["factor", "level_a", "level_b", "diff", "ci_low", "ci_high", "cohens_d"]
    return pd.DataFrame(rows, columns=columns)


def interaction_table(frame: pd.DataFrame, factor_a: str, factor_b: str, value: str) -> pd.DataFrame:
    """Mean of ``value`` per cell of ``factor_a`` (rows) × ``factor_b`` (columns), every other
    factor and the seeds averaged within a cell; NaN for an empty cell."""
    _require(frame, factor_a, value)
    _require(frame, factor_b, value)
    if factor_a == factor_b:
        raise ValueError("an interaction needs two different factors")
    table = frame.pivot_table(index=factor_a, columns=factor_b, values=value, aggfunc="mean")
    rows = sorted(table.index, key=_sort_key)
    cols = sorted(table.columns, key=_sort_key)
    return table.loc[rows, cols]


def _require(frame: pd.DataFrame, factor: str, value: str) -> None:
    if factor not in frame.columns:
        raise KeyError(f"no factor column {factor!r}")
    if value not in frame.columns:
        raise KeyError(f"no value column {value!r}")


def boot_means(vals: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    picks = rng.integers(0, len(vals), size=(n_boot, len(vals)))
    means: np.ndarray = vals[picks].mean(axis=1)
    return means


def interval(samples: np.ndarray, ci: float) -> tuple[float, float]:
    tail = (1.0 - ci) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def _sort_key(level: Any) -> tuple[int, Any]:
    if isinstance(level, bool | int | float | np.integer | np.floating):
        return (0, float(level))
    return (1, str(level))
