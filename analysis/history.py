"""Against an earlier run of the same study: what moved beyond its confidence interval.

For each factor level and metric, the previous sweep's mean with its bootstrap interval over
seeds and the current sweep's mean with its interval (:mod:`analysis.compare`'s units and
resampling), and the difference current − previous with its own bootstrap interval
(the two sweeps' units resampled independently). ``moved`` is True when the current mean
lies outside the previous sweep's interval; ``significant`` when the difference's interval
excludes 0 (the stricter of the two). A sweep without factors is compared as one level
(``factor="(all)"``, ``level="all"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.compare import CI, N_BOOT, RNG_SEED, boot_means, interval, units
from analysis.derived import per_variant_metric
from service.store import Store

HISTORY_COLUMNS = (
    "factor", "level", "metric", "previous_mean", "previous_low", "previous_high", "current_mean",
    "current_low", "current_high", "diff", "diff_low", "diff_high", "moved", "significant",
)
ALL = "(all)"


def compare_sweeps(
    store: Store,
    current_sweep_id: int,
    previous_sweep_id: int,
    by: Sequence[str],
    metrics: Sequence[str],
    *,
    n_boot: int = N_BOOT,
    ci: float = CI,
) -> pd.DataFrame:
    """:data:`HISTORY_COLUMNS`, one row per (factor, level, metric) present in both sweeps."""
    rows = []
    for metric in metrics:
        current = per_variant_metric(store, current_sweep_id, metric)
        previous = per_variant_metric(store, previous_sweep_id, metric)
        for factor in list(by) or [ALL]:
            if factor == ALL:
                current, previous = current.assign(**{ALL: "all"}), previous.assign(**{ALL: "all"})
            for name, frame in (("current", current), ("previous", previous)):
                if factor not in frame.columns:
                    raise ValueError(f"the {name} sweep has no factor {factor!r}")
            rows.extend(_compare(units(previous, factor, metric), units(current, factor, metric),
                                 factor, metric, n_boot, ci))
    return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))


def _compare(
    previous: dict, current: dict, factor: str, metric: str, n_boot: int, ci: float
) -> list[dict]:
    rng = np.random.default_rng(RNG_SEED)
    rows = []
    for level in [lv for lv in previous if lv in current]:
        p, c = previous[level], current[level]
        p_boot = boot_means(p, n_boot, rng) if len(p) >= 2 else None
        c_boot = boot_means(c, n_boot, rng) if len(c) >= 2 else None
        p_low, p_high = interval(p_boot, ci) if p_boot is not None else (np.nan, np.nan)
        c_low, c_high = interval(c_boot, ci) if c_boot is not None else (np.nan, np.nan)
        if p_boot is not None and c_boot is not None:
            d_low, d_high = interval(c_boot - p_boot, ci)
        else:
            d_low = d_high = np.nan
        cur_mean = float(c.mean())
        rows.append({
            "factor": factor, "level": level, "metric": metric,
            "previous_mean": float(p.mean()), "previous_low": p_low, "previous_high": p_high,
            "current_mean": cur_mean, "current_low": c_low, "current_high": c_high,
            "diff": cur_mean - float(p.mean()), "diff_low": d_low, "diff_high": d_high,
            "moved": bool(not np.isnan(p_low) and not p_low <= cur_mean <= p_high),
            "significant": bool(not np.isnan(d_low) and (d_low > 0 or d_high < 0)),
        })
    return rows


def study_report(
    store: Store,
    current_sweep_id: int,
    previous_sweep_id: int | None,
    by: Sequence[str],
    metrics: Sequence[str],
    title: str,
    *,
    n_boot: int = N_BOOT,
) -> tuple[str, str]:
    """``(title, html)``: how specialization moved against the previous firing's sweep (or,
    for a first firing, where each metric stands per factor level)."""
    from analysis.compare import level_summary
    from analysis.html import Document
    from analysis.plots import level_means, movement

    doc = Document(title)
    if previous_sweep_id is None:
        doc.paragraph(f"First firing (sweep {current_sweep_id}): no earlier firing to compare against. "
                      "Where each metric stands:")
        for metric in metrics:
            frame = per_variant_metric(store, current_sweep_id, metric)
            for factor in list(by):
                summary = level_summary(frame, factor, metric, n_boot=n_boot)
                doc.table(summary, caption=f"{metric} by {factor}")
                doc.figure(level_means(summary, factor=factor, metric=metric), f"{metric}-{factor}",
                           f"{metric} per level of {factor}, sweep {current_sweep_id}")
        return title, doc.render()
    history = compare_sweeps(store, current_sweep_id, previous_sweep_id, by, metrics, n_boot=n_boot)
    moved = history[history["moved"]]
    doc.paragraph(
        f"Sweep {current_sweep_id} against the previous firing's sweep {previous_sweep_id}: "
        f"{len(moved)} of {len(history)} (factor level, metric) pairs moved beyond the previous "
        f"firing's 95% confidence interval"
        + (": " + "; ".join(f"{r.metric} at {r.factor}={r.level} {r.previous_mean:.3f} → "
                            f"{r.current_mean:.3f}" for r in moved.itertuples()) if len(moved) else ".")
    )
    doc.table(history, caption="previous vs current firing (means over seeds, bootstrap CIs)")
    for metric in metrics:
        doc.figure(movement(history, metric=metric, factors=list(by) or [ALL]), f"moved-{metric}",
                   f"{metric}: previous and current firing per factor level")
    return title, doc.render()
