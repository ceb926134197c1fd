"""Short comparison of a finished sweep by factor level: what `headspec run` prints at the end.

Reads only what it needs from the store: each variant's head metrics at its last probe step
and its final training loss.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from service.store import Store, Variant

SUMMARY_METRICS = ("induction", "prev_token", "specialization")


def variant_frame(variants: list[Variant]) -> pd.DataFrame:
    rows = [{"variant_id": v.id, "status": v.status, **_flat(v.factors)} for v in variants]
    return pd.DataFrame(rows)


def final_head_metrics(store: Store, sweep_id: int, metrics: tuple[str, ...]) -> pd.DataFrame:
    """Tidy head metrics at each variant's last probe step."""
    cols = store.read_head_metric_columns(sweep_id=sweep_id, metrics=list(metrics))
    frame = pd.DataFrame(cols)
    if frame.empty:
        return frame
    last = frame.groupby("variant_id")["step"].transform("max")
    return frame[frame["step"] == last]


def per_variant(store: Store, sweep_id: int, variants: list[Variant]) -> pd.DataFrame:
    """One row per variant: its factors, final train loss, max induction / prev-token score
    over heads, mean specialization index over heads."""
    base = variant_frame(variants)
    heads = final_head_metrics(store, sweep_id, SUMMARY_METRICS)
    if not heads.empty:
        agg = heads.pivot_table(index="variant_id", columns="metric", values="value", aggfunc="max")
        agg = agg.rename(columns={m: f"max_{m}" for m in agg.columns})
        spec = heads[heads["metric"] == "specialization"].groupby("variant_id")["value"].mean()
        agg["mean_specialization"] = spec
        agg = agg.drop(columns=["max_specialization"], errors="ignore")
        base = base.merge(agg, left_on="variant_id", right_index=True, how="left")
    scal = pd.DataFrame(store.read_scalar_metric_columns(sweep_id=sweep_id, names=["train_loss"]))
    if not scal.empty:
        final = scal.sort_values("step").groupby("variant_id")["value"].last().rename("train_loss")
        base = base.merge(final, left_on="variant_id", right_index=True, how="left")
    return base


def factor_summary(frame: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """Mean of every numeric column per level of each factor (long format)."""
    numeric = [c for c in frame.columns if c not in factors and c not in ("variant_id", "status")
               and pd.api.types.is_numeric_dtype(frame[c])]
    parts = []
    for factor in factors:
        grouped = frame.groupby(factor)[numeric].mean().reset_index()
        grouped.insert(0, "factor", factor)
        grouped = grouped.rename(columns={factor: "level"})
        grouped["level"] = grouped["level"].astype(str)
        grouped.insert(2, "n", frame.groupby(factor).size().values)
        parts.append(grouped)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _flat(factors: Any) -> dict[str, Any]:
    return dict(factors) if isinstance(factors, dict) else {}
