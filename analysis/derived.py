"""Per-variant derived quantities, one row per variant, at each variant's last probe step.

=====================  ======================================================================
column                 meaning
=====================  ======================================================================
max_induction          largest ``induction`` score over the variant's heads
mean_specialization    mean ``specialization`` index over its heads
frac_<role>            fraction of its heads whose ``role`` is <role>, for every role in
                       :data:`ROLE_NAMES` (0 when no head has it)
n_distinct_roles       number of distinct roles among its heads, ``none`` not counted
icl_score, train_loss  the scalar metric's value at its last recorded step
=====================  ======================================================================

A quantity whose metric the sweep never recorded is NaN. The ``role`` head metric is an
index into :data:`analysis.roles.ROLE_NAMES` (the one list the probes assign from).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.load import load_head_metrics, load_scalar_metrics, load_variants
from analysis.roles import ROLE_NAMES
from service.store import Store

HEAD_INPUTS = ("induction", "specialization", "role")
SCALAR_INPUTS = ("icl_score", "train_loss")
DERIVED = (
    "max_induction",
    "mean_specialization",
    *(f"frac_{r}" for r in ROLE_NAMES),
    "n_distinct_roles",
    *SCALAR_INPUTS,
)


def per_variant_derived(store: Store, sweep_id: int, variants: pd.DataFrame | None = None) -> pd.DataFrame:
    """``variant_id, seed, status, <factors...>`` plus every column of :data:`DERIVED`."""
    if variants is None:
        variants = load_variants(store, sweep_id)
    known = set(store.metric_names())
    head_metrics = [m for m in HEAD_INPUTS if m in known]
    heads = (
        load_head_metrics(store, sweep_id, metrics=head_metrics, last_step_only=True, variants=variants)
        if head_metrics else pd.DataFrame(columns=["variant_id", "metric", "value"])
    )
    scalar_names = [n for n in SCALAR_INPUTS if n in known]
    scalars = (
        load_scalar_metrics(store, sweep_id, names=scalar_names, last_step_only=True, variants=variants)
        if scalar_names else pd.DataFrame(columns=["variant_id", "name", "value"])
    )
    return variants.merge(derive(heads, scalars), left_on="variant_id", right_index=True, how="left")


def derive(heads: pd.DataFrame, scalars: pd.DataFrame) -> pd.DataFrame:
    """The :data:`DERIVED` columns indexed by variant id, from tidy head metrics already at
    the last probe step and scalar metrics already at their last step."""
    ids = sorted(set(heads["variant_id"].tolist()) | set(scalars["variant_id"].tolist()))
    out = pd.DataFrame(index=pd.Index(ids, name="variant_id", dtype="int64"), columns=list(DERIVED),
                       dtype="float64")
    by_metric = {m: g for m, g in heads.groupby("metric")} if not heads.empty else {}
    if "induction" in by_metric:
        out["max_induction"] = by_metric["induction"].groupby("variant_id")["value"].max()
    if "specialization" in by_metric:
        out["mean_specialization"] = by_metric["specialization"].groupby("variant_id")["value"].mean()
    if "role" in by_metric:
        roles = by_metric["role"]
        index = roles["value"].round().astype("int64")
        bad = sorted(set(index[(index < 0) | (index >= len(ROLE_NAMES))].tolist()))
        if bad:
            raise ValueError(f"role indexes {bad} outside 0..{len(ROLE_NAMES) - 1} ({ROLE_NAMES})")
        names = pd.Series(np.asarray(ROLE_NAMES, dtype=object)[index.to_numpy()], index=roles.index)
        counts = pd.crosstab(roles["variant_id"], names)
        fractions = counts.div(counts.sum(axis=1), axis=0)
        for role in ROLE_NAMES:
            out.loc[fractions.index, f"frac_{role}"] = fractions[role] if role in fractions else 0.0
        specific = counts.drop(columns=["none"], errors="ignore")
        out.loc[counts.index, "n_distinct_roles"] = (specific > 0).sum(axis=1)
    if not scalars.empty:
        final = scalars.pivot_table(index="variant_id", columns="name", values="value", aggfunc="last")
        for name in SCALAR_INPUTS:
            if name in final:
                out[name] = final[name]
    return out


EMERGENCE_PREFIX = "emergence."


def available_metrics(store: Store) -> list[str]:
    """What :func:`per_variant_metric` accepts: derived quantities, each role's emergence step
    (``emergence.<role>``), then stored metric names."""
    from analysis.emergence import ROLE_SCORE

    known = store.metric_names()
    emergence = [f"{EMERGENCE_PREFIX}{r}" for r, (metric, _) in ROLE_SCORE.items() if metric in known]
    return [*DERIVED, *emergence, *(m for m in known if m not in DERIVED)]


def per_variant_metric(
    store: Store, sweep_id: int, metric: str, variants: pd.DataFrame | None = None
) -> pd.DataFrame:
    """``variant_id, seed, status, <factors...>, <metric>``: a derived quantity (see the table
    above), a role's emergence step ``emergence.<role>`` (NaN where it never emerged), or a
    stored metric — a head metric as its mean over heads at the last probe step, a
    scalar metric as its final value. ``ValueError`` names the available metrics when
    ``metric`` is unknown or the sweep has no value of it."""
    if variants is None:
        variants = load_variants(store, sweep_id)
    if metric in DERIVED:
        frame = per_variant_derived(store, sweep_id, variants)
        values = frame.set_index("variant_id")[metric]
    elif metric.startswith(EMERGENCE_PREFIX):
        from analysis.emergence import ROLE_SCORE
        from analysis.training import role_emergence_frame

        role = metric.removeprefix(EMERGENCE_PREFIX)
        if role not in ROLE_SCORE:
            raise ValueError(f"unknown metric {metric!r}; available: {', '.join(available_metrics(store))}")
        emerged = role_emergence_frame(store, sweep_id, [role], variants[["variant_id"]])
        values = emerged.set_index("variant_id")["step"]
    else:
        if metric not in set(store.metric_names()):
            raise ValueError(f"unknown metric {metric!r}; available: {', '.join(available_metrics(store))}")
        heads = load_head_metrics(store, sweep_id, metrics=[metric], last_step_only=True, variants=variants)
        if not heads.empty:
            values = heads.groupby("variant_id")["value"].mean()
        else:
            scalars = load_scalar_metrics(store, sweep_id, names=[metric], last_step_only=True,
                                          variants=variants)
            values = scalars.groupby("variant_id")["value"].last()
    out = variants.merge(values.rename(metric).astype("float64"), left_on="variant_id", right_index=True,
                         how="left")
    if out[metric].isna().all():
        raise ValueError(f"sweep {sweep_id} has no value of metric {metric!r}; "
                         f"available: {', '.join(available_metrics(store))}")
    return out
