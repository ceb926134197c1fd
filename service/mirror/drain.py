"""Drain the store's MLflow outbox into MLflow.

The store is written first; every write that changed something enqueued an outbox item in
the same transaction. ``drain`` claims items (oldest first, leased to ``owner``), mirrors
each and marks it done. Failures never lose anything:

* MLflow unreachable (refused, timeout, 502/503/504): the item and the rest of the claimed
  batch are marked failed with a retry delay and this drain stops; a later drain (after the
  next pack, at the end of the sweep, or ``headspec serve`` / ``headspec mirror drain``)
  picks them up.
* MLflow rejected the item: it is marked failed with a growing delay (capped) and the drain
  goes on with the others. It is never given up: MLflow may be fixed.
* The sweep or variant no longer exists in the store: nothing is left to mirror; the item
  is given up (done, with the error kept).

Doing an item twice (a lease ran out, a crash before ``mark_outbox_done``) is harmless:
runs are found or created idempotently (``layout``) and metrics carry deterministic
timestamps, so a re-sent metric is an exact duplicate that MLflow's SQL store skips.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from service.mirror.client import is_unreachable, open_client
from service.mirror.layout import (
    RUN_STATUS,
    ExperimentName,
    MlflowLayout,
    default_experiment_name,
    head_metric_key,
    metric_timestamp,
    millis,
    shape_of,
)
from service.mirror.plots import role_grid, write_role_map
from service.store import NotFound, OutboxItem, Store, StoreUnavailable, Variant

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

HEAD_METRICS = "head_metrics"
SCALAR_METRICS = "scalar_metrics"
VARIANT_FINISHED = "variant_finished"
SWEEP_FINISHED = "sweep_finished"
MIRROR_KINDS = (HEAD_METRICS, SCALAR_METRICS, VARIANT_FINISHED, SWEEP_FINISHED)
MAX_METRICS_PER_CALL = 1000  # MLflow's log_batch limit
ROLE_MAP_ARTIFACT = "role_map.png"


@dataclass(frozen=True)
class DrainResult:
    """``items``: outbox items mirrored and marked done; ``metrics_logged``: metric values
    sent to MLflow (re-sends included); ``failed``: items marked failed and left for a later
    drain; ``seconds``: wall time."""

    items: int = 0
    metrics_logged: int = 0
    failed: int = 0
    seconds: float = 0.0

    @property
    def metrics_per_second(self) -> float:
        return self.metrics_logged / self.seconds if self.seconds > 0 else 0.0


def default_owner() -> str:
    return f"mirror-{socket.gethostname()}-{os.getpid()}"


def drain(
    store: Store,
    client: MlflowClient,
    *,
    max_items: int | None = None,
    owner: str | None = None,
    experiment_name: ExperimentName = default_experiment_name,
    claim_batch: int = 20,
    lease_seconds: float = 300.0,
    retry_base_seconds: float = 5.0,
    retry_max_seconds: float = 300.0,
) -> DrainResult:
    """Mirror up to ``max_items`` outbox items (all that are due, by default) to MLflow.

    Never raises because of MLflow (see the module doc); ``StoreUnavailable`` propagates. A failed
    item is claimable again after ``retry_base_seconds · 2^(attempts-1)``, at most
    ``retry_max_seconds``. Call it as often as you like; it returns when nothing is due.
    """
    started = time.perf_counter()
    owner = owner or default_owner()
    layout = MlflowLayout(store, client, experiment_name)
    done = logged = failed = 0
    stop = False
    while not stop and (max_items is None or done + failed < max_items):
        limit = claim_batch if max_items is None else min(claim_batch, max_items - done - failed)
        claimed = store.claim_outbox(owner, limit=limit, kinds=MIRROR_KINDS, lease_seconds=lease_seconds)
        if not claimed:
            break
        finished: list[int] = []
        for n, item in enumerate(claimed):
            try:
                logged += _mirror_item(layout, item)
            except NotFound as exc:
                store.mark_outbox_failed(item.id, owner, f"gave up: {exc}", retry_in_seconds=None)
                log.warning("outbox item %s (%s) given up: %s", item.id, item.kind, exc)
                failed += 1
            except StoreUnavailable:  # the source of truth is down: nothing to do but stop
                raise
            except Exception as exc:
                delay = min(retry_base_seconds * 2 ** max(item.attempts - 1, 0), retry_max_seconds)
                error = f"{type(exc).__name__}: {exc}"
                store.mark_outbox_failed(item.id, owner, error, retry_in_seconds=delay)
                failed += 1
                if is_unreachable(exc):
                    log.warning("MLflow unreachable; %d item(s) left for later: %s",
                                len(claimed) - n, error)  # fmt: skip
                    failed += _release(store, owner, claimed[n + 1 :], error, delay)
                    stop = True
                    break
                log.warning("outbox item %s (%s) failed, retry in %.0f s: %s",
                            item.id, item.kind, delay, error)  # fmt: skip
            else:
                finished.append(item.id)
        if finished:
            done += store.mark_outbox_done(finished, owner)
    return DrainResult(done, logged, failed, time.perf_counter() - started)


def drain_to_mlflow(
    store: Store, tracking_uri: str | None = None, *, max_items: int | None = None
) -> DrainResult:
    """``drain`` into the MLflow at ``tracking_uri`` (default: settings'). For a runner to
    call after each pack and at the end of a sweep."""
    return drain(store, open_client(tracking_uri), max_items=max_items)


def _release(store: Store, owner: str, items: Sequence[OutboxItem], error: str, delay: float) -> int:
    for item in items:
        store.mark_outbox_failed(item.id, owner, f"not attempted: {error}", retry_in_seconds=delay)
    return len(items)


def _mirror_item(layout: MlflowLayout, item: OutboxItem) -> int:
    """Mirror one item; returns how many metric values it sent."""
    payload: Any = item.payload or {}
    if item.kind in (HEAD_METRICS, SCALAR_METRICS):
        return _mirror_metrics(layout, item.kind, payload.get("ranges", []))
    if item.kind == VARIANT_FINISHED:
        for variant_id in payload.get("variant_ids", []):
            _finish_variant(layout, int(variant_id))
        return 0
    if item.kind == SWEEP_FINISHED:
        _finish_sweep(layout, int(payload["sweep_id"]))
        return 0
    raise ValueError(f"unknown outbox kind {item.kind!r}")


def _mirror_metrics(layout: MlflowLayout, kind: str, ranges: list[dict[str, int]]) -> int:
    # a probe writes every variant of a pack at one step: one read per distinct step range
    by_range: dict[tuple[int, int], list[int]] = {}
    for r in ranges:
        by_range.setdefault((int(r["step_min"]), int(r["step_max"])), []).append(int(r["variant_id"]))
    existing = _existing_variants(layout, [v for ids in by_range.values() for v in ids])
    sent = 0
    for (lo, hi), variant_ids in by_range.items():
        ids = [v for v in variant_ids if v in existing]
        if not ids:
            continue
        if kind == HEAD_METRICS:
            cols = layout.store.read_head_metric_columns(variant_ids=ids, step_min=lo, step_max=hi)
            triples = zip(cols["layer"].tolist(), cols["head"].tolist(), cols["metric"].tolist(), strict=True)
            keys = [head_metric_key(layer, head, metric) for layer, head, metric in triples]
        else:
            cols = layout.store.read_scalar_metric_columns(variant_ids=ids, step_min=lo, step_max=hi)
            keys = cols["name"].tolist()
        sent += _log_metric_columns(layout, cols["variant_id"], cols["step"], keys, cols["value"])
    return sent


def _existing_variants(layout: MlflowLayout, variant_ids: list[int]) -> set[int]:
    """Variant ids that still exist (a deleted sweep's metrics are gone; skip them)."""
    out = set()
    for v in set(variant_ids):
        try:
            layout.variant_run(v)
        except NotFound:
            continue
        out.add(v)
    return out


def _log_metric_columns(
    layout: MlflowLayout, variant_ids: np.ndarray, steps: np.ndarray, keys: list[str], values: np.ndarray
) -> int:
    from mlflow.entities import Metric

    sent = 0
    step_list, value_list = steps.tolist(), values.tolist()
    for v in np.unique(variant_ids).tolist():
        rows = np.flatnonzero(variant_ids == v).tolist()
        sweep = layout.sweep(layout.variant(v).sweep_id)
        metrics = [
            Metric(keys[i], value_list[i], metric_timestamp(sweep, step_list[i]), step_list[i]) for i in rows
        ]
        run_id = layout.variant_run(v)
        for start in range(0, len(metrics), MAX_METRICS_PER_CALL):
            layout.client.log_batch(run_id, metrics=metrics[start : start + MAX_METRICS_PER_CALL])
        sent += len(metrics)
    return sent


def _finish_variant(layout: MlflowLayout, variant_id: int) -> None:
    try:
        variant = layout.store.get_variant(variant_id)
        run_id = layout.variant_run(variant_id)
    except NotFound:
        return
    sweep = layout.sweep(variant.sweep_id)
    maps = _role_maps(layout.store, variant)
    if maps is not None:
        step, role, specialization = maps
        title = (f"{sweep.name} · variant {variant.index} ({shape_of(variant.config)}) · "
                 f"step {step}\n{_factors_text(variant.factors)}")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="headspec-mirror-") as tmp:
            path = write_role_map(Path(tmp) / ROLE_MAP_ARTIFACT, role, specialization, title=title)
            layout.client.log_artifact(run_id, str(path))
    _terminate(layout, run_id, variant.status, variant.finished_at)


def _finish_sweep(layout: MlflowLayout, sweep_id: int) -> None:
    try:
        sweep = layout.store.get_sweep(sweep_id)
        run_id = layout.sweep_run(sweep_id)
    except NotFound:
        return
    _terminate(layout, run_id, sweep.status, sweep.finished_at)


def _terminate(layout: MlflowLayout, run_id: str, status: str, finished_at: datetime | None) -> None:
    """End an MLflow run with the status matching headspec's (non-terminal ones leave it open)."""
    run_status = RUN_STATUS.get(status)
    if run_status is not None:
        end = millis(finished_at) if finished_at else None
        layout.client.set_terminated(run_id, run_status, end_time=end)


def _role_maps(store: Store, variant: Variant) -> tuple[int, np.ndarray, np.ndarray] | None:
    """The variant's ``[L, H]`` role and specialization grids at its last probe step that
    has roles, or None when it has none (it failed before its first probe)."""
    names = set(store.metric_names())
    if "role" not in names:
        return None
    wanted = ["role", "specialization"] if "specialization" in names else ["role"]
    cols = store.read_head_metric_columns(variant_ids=[variant.id], metrics=wanted)
    is_role = cols["metric"] == "role"
    if not is_role.any():
        return None
    step = int(cols["step"][is_role].max())
    model = (variant.config or {}).get("model", {}) if isinstance(variant.config, dict) else {}
    at_step = cols["step"] == step
    shape = (
        int(model.get("n_layers") or cols["layer"][at_step].max() + 1),
        int(model.get("n_heads") or cols["head"][at_step].max() + 1),
    )
    grids = []
    for metric in ("role", "specialization"):
        sel = at_step & (cols["metric"] == metric)
        grids.append(role_grid(cols["layer"][sel], cols["head"][sel], cols["value"][sel], shape))
    return step, grids[0], grids[1]


def _factors_text(factors: Any) -> str:
    if not isinstance(factors, dict) or not factors:
        return "base configuration"
    return ", ".join(f"{k}={v}" for k, v in sorted(factors.items()))
