"""Short comparison of a finished sweep by factor level: what `headspec run` prints at the end.

Per-variant numbers come from :mod:`analysis.derived`; this module only averages them per
level of each factor (``headspec compare`` gives the confidence intervals).
"""

from __future__ import annotations

import pandas as pd

SUMMARY_COLUMNS = ("max_induction", "mean_specialization", "n_distinct_roles", "icl_score", "train_loss")


def factor_summary(
    frame: pd.DataFrame, factors: list[str], columns: tuple[str, ...] = SUMMARY_COLUMNS
) -> pd.DataFrame:
    """Mean of each of ``columns`` per level of each factor (long format: factor, level, n, ...)."""
    numeric = [c for c in columns if c in frame.columns]
    parts = []
    for factor in factors:
        grouped = frame.groupby(factor)[numeric].mean().reset_index()
        grouped.insert(0, "factor", factor)
        grouped = grouped.rename(columns={factor: "level"})
        grouped["level"] = grouped["level"].astype(str)
        grouped.insert(2, "n", frame.groupby(factor).size().values)
        parts.append(grouped)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
