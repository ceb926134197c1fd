"""Store → pandas: tidy frames of a sweep's metrics, joined with each variant's factors and seed.

    from analysis.load import load_head_metrics, load_variants
    heads = load_head_metrics(store, sweep_id, metrics=["induction"], last_step_only=True)

Every filter is pushed down to SQL through the store's read functions (no SQL here):
sweep, metric names and step range go straight to ``Store.read_head_metric_columns``.
``last_step_only`` (each variant's last probe step) is pushed down in two phases: first
``Store.last_head_metric_steps`` (one index probe per variant) gives every variant's last
step of the first metric; then ``read_head_metric_columns(at_steps=...)`` reads each variant
at exactly its own step, so a variant that stopped early costs nothing extra. Without
``metrics`` there is no metric to ask about, so the whole step range is read and trimmed in
pandas.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from service.store import Store, Variant

HEAD_COLUMNS = ("variant_id", "step", "layer", "head", "metric", "value")
SCALAR_COLUMNS = ("variant_id", "step", "name", "value")
VARIANT_COLUMNS = ("variant_id", "seed")
RESERVED = frozenset(HEAD_COLUMNS + SCALAR_COLUMNS + VARIANT_COLUMNS + ("status",))


def sweep_variants(store: Store, sweep_id: int) -> list[Variant]:
    """All variants of a sweep in index order (raises ``NotFound`` for an unknown sweep)."""
    store.get_sweep(sweep_id)
    out: list[Variant] = []
    cursor: str | None = None
    while True:
        page = store.list_variants(sweep_id, cursor=cursor, limit=500)
        out.extend(page.items)
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


def factor_names(variants: Sequence[Variant]) -> list[str]:
    """Factor names of a sweep, in first-seen order."""
    names: dict[str, None] = {}
    for v in variants:
        if isinstance(v.factors, dict):
            names.update(dict.fromkeys(v.factors))
    return list(names)


def load_variants(store: Store, sweep_id: int, variants: Sequence[Variant] | None = None) -> pd.DataFrame:
    """One row per variant: ``variant_id, seed, status`` and one column per factor.

    ``seed`` is ``variant.config["seed"]`` (NA when absent). Factor values that are not
    scalars (lists, dicts) become their JSON text so they can be grouped on."""
    variants = list(variants) if variants is not None else sweep_variants(store, sweep_id)
    factors = factor_names(variants)
    clash = sorted(RESERVED.intersection(factors))
    if clash:
        raise ValueError(f"factor names {clash} clash with reserved columns {sorted(RESERVED)}")
    rows = []
    for v in variants:
        config = v.config if isinstance(v.config, dict) else {}
        given = v.factors if isinstance(v.factors, dict) else {}
        row: dict[str, Any] = {"variant_id": v.id, "seed": config.get("seed"), "status": v.status}
        row.update({f: _scalar(given.get(f)) for f in factors})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["variant_id", "seed", "status", *factors])
    frame["variant_id"] = frame["variant_id"].astype("int64")
    frame["seed"] = frame["seed"].astype("Int64")
    return frame


def load_head_metrics(
    store: Store,
    sweep_id: int,
    *,
    metrics: Sequence[str] | None = None,
    step_min: int | None = None,
    step_max: int | None = None,
    last_step_only: bool = False,
    variants: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Tidy head metrics: one row per variant/step/layer/head/metric with columns
    ``variant_id, step, layer, head, metric, value, seed, <factors...>``.

    ``last_step_only`` keeps each variant's last probe step (within the step range).
    ``variants`` is a frame from :func:`load_variants`, to avoid reading it twice."""
    metrics = list(metrics) if metrics is not None else None
    if last_step_only and metrics:
        last = store.last_head_metric_steps(sweep_id, metrics[0], step_min=step_min, step_max=step_max)
        if not last:
            return _join(_empty_heads(), store, sweep_id, variants)
        cols = store.read_head_metric_columns(at_steps=last, metrics=metrics)
    else:
        cols = store.read_head_metric_columns(
            sweep_id=sweep_id, metrics=metrics, step_min=step_min, step_max=step_max
        )
    frame = pd.DataFrame(cols, columns=list(HEAD_COLUMNS))
    if last_step_only and not metrics and not frame.empty:  # with metrics, at_steps did it
        frame = frame[frame["step"] == frame.groupby("variant_id")["step"].transform("max")]
    return _join(frame.reset_index(drop=True), store, sweep_id, variants)


def load_scalar_metrics(
    store: Store,
    sweep_id: int,
    *,
    names: Sequence[str] | None = None,
    step_min: int | None = None,
    step_max: int | None = None,
    last_step_only: bool = False,
    variants: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Tidy scalar metrics: ``variant_id, step, name, value, seed, <factors...>``.
    ``last_step_only`` keeps each variant's last step per name (the final value)."""
    cols = store.read_scalar_metric_columns(
        sweep_id=sweep_id, names=list(names) if names is not None else None,
        step_min=step_min, step_max=step_max,
    )
    frame = pd.DataFrame(cols, columns=list(SCALAR_COLUMNS))
    if last_step_only and not frame.empty:
        frame = frame[frame["step"] == frame.groupby(["variant_id", "name"])["step"].transform("max")]
    return _join(frame.reset_index(drop=True), store, sweep_id, variants)


def _join(frame: pd.DataFrame, store: Store, sweep_id: int, variants: pd.DataFrame | None) -> pd.DataFrame:
    if variants is None:
        variants = load_variants(store, sweep_id)
    return frame.merge(variants.drop(columns=["status"], errors="ignore"), on="variant_id", how="left")


def _empty_heads() -> pd.DataFrame:
    dtypes = {c: object if c == "metric" else "float64" if c == "value" else "int64" for c in HEAD_COLUMNS}
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})


def _scalar(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return value
