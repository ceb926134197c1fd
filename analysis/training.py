"""Specialization over training, per variant of a sweep: role scores at every probe step and
each role's emergence (the rule lives in :mod:`analysis.emergence`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.emergence import DEFAULT_ABRUPT_FRACTION, EMERGENCE_COLUMNS, ROLE_SCORE, emergence_step
from analysis.load import load_head_metrics, load_variants, sweep_variants
from service.store import Store


def role_score_series(store: Store, sweep_id: int, roles: Sequence[str] | None = None) -> pd.DataFrame:
    """Per variant, role and probe step the role score (max over heads): columns
    ``variant_id, role, step, score``, for the roles whose metric the sweep recorded."""
    roles = list(roles) if roles is not None else list(ROLE_SCORE)
    unknown = [r for r in roles if r not in ROLE_SCORE]
    if unknown:
        raise ValueError(f"no emergence for roles {unknown}; available: {', '.join(ROLE_SCORE)}")
    known = set(store.metric_names())
    wanted = {ROLE_SCORE[r][0]: r for r in roles if ROLE_SCORE[r][0] in known}
    if not wanted:
        return pd.DataFrame(columns=["variant_id", "role", "step", "score"])
    ids = load_variants(store, sweep_id)[["variant_id"]]
    heads = load_head_metrics(store, sweep_id, metrics=list(wanted), variants=ids)
    series = heads.groupby(["variant_id", "metric", "step"], as_index=False)["value"].max()
    series["role"] = series["metric"].map(wanted)
    return series.rename(columns={"value": "score"})[["variant_id", "role", "step", "score"]]


def role_emergence_frame(
    store: Store, sweep_id: int, roles: Sequence[str] | None = None, variants: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per variant and role: :data:`EMERGENCE_COLUMNS` (``step`` NaN when the role
    never emerged), joined with the variant's seed and factors."""
    thresholds = {v.id: _thresholds(v.config) for v in sweep_variants(store, sweep_id)}
    rows = []
    series = role_score_series(store, sweep_id, roles)
    for (variant_id, role), group in series.groupby(["variant_id", "role"]):
        group = group.sort_values("step")
        field_thresholds, abrupt_fraction = thresholds.get(int(variant_id), ({}, DEFAULT_ABRUPT_FRACTION))
        threshold = field_thresholds.get(ROLE_SCORE[str(role)][1])
        if threshold is None:
            continue  # the run did not record a threshold for this role
        found = emergence_step(group["step"].tolist(), group["score"].to_numpy(), threshold, abrupt_fraction)
        rows.append({
            "variant_id": int(variant_id), "role": role,
            "step": np.nan if found is None else found.step,
            "jump": np.nan if found is None or found.jump is None else found.jump,
            "jump_fraction": np.nan if found is None or found.jump_fraction is None else found.jump_fraction,
            "abrupt": None if found is None else found.abrupt,
            "final_score": float(group["score"].iloc[-1]),
        })
    frame = pd.DataFrame(rows, columns=list(EMERGENCE_COLUMNS))
    if variants is None:
        variants = load_variants(store, sweep_id)
    return frame.merge(variants, on="variant_id", how="left")


def _thresholds(config: object) -> tuple[dict[str, float], float]:
    probe = config.get("probe", {}) if isinstance(config, dict) else {}
    thresholds = probe.get("thresholds", {}) if isinstance(probe, dict) else {}
    fields = {k: float(v) for k, v in thresholds.items() if isinstance(v, int | float)}
    return fields, fields.get("abrupt_fraction", DEFAULT_ABRUPT_FRACTION)
