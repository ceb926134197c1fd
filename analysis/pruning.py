"""Pruning curves (Michel et al. 2019): eval loss against the fraction of heads removed,
least-important-first vs random order.

The workers measure them at each variant's last probe and store scalar metrics named
``prune.<order>.f<fraction>`` (``order`` is ``importance`` or ``random``, the fraction with
two decimals): the probe-batch loss with that share of heads masked.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from analysis.compare import CI, N_BOOT, RNG_SEED, boot_means, interval, units
from analysis.load import load_scalar_metrics
from service.store import Store

NAME_RE = re.compile(r"^prune\.(importance|random)\.f(\d+(?:\.\d+)?)$")
ORDERS = ("importance", "random")


def pruning_frame(store: Store, sweep_id: int, variants: pd.DataFrame | None = None) -> pd.DataFrame:
    """``variant_id, order, fraction, loss`` plus seed and factors; empty when the sweep has
    no pruning metrics."""
    names = [n for n in store.metric_names() if NAME_RE.match(n)]
    columns = ["variant_id", "order", "fraction", "loss"]
    if not names:
        return pd.DataFrame(columns=columns)
    scalars = load_scalar_metrics(store, sweep_id, names=names, last_step_only=True, variants=variants)
    parsed = scalars["name"].str.extract(NAME_RE)
    frame = scalars.assign(order=parsed[0], fraction=parsed[1].astype(float), loss=scalars["value"])
    return frame.drop(columns=["name", "value", "step"])


def pruning_curves(
    frame: pd.DataFrame, factor: str | None = None, *, n_boot: int = N_BOOT, ci: float = CI
) -> pd.DataFrame:
    """Mean loss per (level of ``factor``, order, fraction) over seeds with its bootstrap CI:
    ``level, order, fraction, n_units, loss, ci_low, ci_high`` (level ``all`` without a factor)."""
    rng = np.random.default_rng(RNG_SEED)
    data = frame.assign(_level="all") if factor is None else frame.rename(columns={factor: "_level"})
    rows = []
    for (order, fraction), group in data.groupby(["order", "fraction"], sort=True):
        for level, vals in units(group, "_level", "loss").items():
            low, high = interval(boot_means(vals, n_boot, rng), ci) if len(vals) >= 2 else (np.nan, np.nan)
            rows.append({"level": level, "order": order, "fraction": fraction, "n_units": len(vals),
                         "loss": float(vals.mean()), "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["level", "order", "fraction", "n_units", "loss", "ci_low", "ci_high"])


def importance_advantage(frame: pd.DataFrame) -> pd.DataFrame:
    """Per fraction: mean over variants of (random-order loss − importance-order loss);
    positive means removing the least important heads first costs less (Finding 3)."""
    wide = frame.pivot_table(index=["variant_id", "fraction"], columns="order", values="loss")
    if not set(ORDERS) <= set(wide.columns):
        return pd.DataFrame(columns=["fraction", "advantage", "share_variants_better"])
    gap = (wide["random"] - wide["importance"]).rename("gap").reset_index()
    grouped = gap.groupby("fraction")["gap"]
    better = grouped.apply(lambda g: float((g >= 0).mean()))
    return pd.DataFrame({"advantage": grouped.mean(), "share_variants_better": better}).reset_index()
