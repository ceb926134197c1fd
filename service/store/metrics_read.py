"""Reading head and scalar metrics back: keyset-paged listings for the REST API and
columnar reads (dicts of numpy arrays) for analysis and the MLflow mirror."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Select, and_, func, or_, select, tuple_
from sqlalchemy.orm import Session

from service.store.base import StoreBase
from service.store.entities import HeadMetric, Page, ScalarMetric
from service.store.errors import InvalidInput, NotFound
from service.store.models import (
    HeadMetricRow,
    MetricNameRow,
    ScalarMetricRow,
    SweepRow,
    VariantRow,
)
from service.store.validation import (
    check_id,
    check_ids,
    check_int,
    check_limit,
    check_str,
    decode_cursor,
    encode_cursor,
)

_S = TypeVar("_S", bound=Select)  # type: ignore[type-arg]
_HM = HeadMetricRow
# pages read plain rows of these columns (building ORM objects would cost more than the query)
_HEAD_ROW = (_HM.variant_id, _HM.metric_id, _HM.step, _HM.layer, _HM.head, _HM.value)
_SM = ScalarMetricRow


class MetricsReadMixin(StoreBase):
    def metric_names(self) -> list[str]:
        """Every metric name written so far (head and scalar), sorted."""
        with self._session() as session:
            return sorted(session.scalars(select(MetricNameRow.name)))

    def list_head_metrics(
        self,
        variant_id: int,
        *,
        step_min: int | None = None,
        step_max: int | None = None,
        metrics: Sequence[str] | None = None,
        layer: int | None = None,
        head: int | None = None,
        cursor: str | None = None,
        limit: int = 1000,
    ) -> Page[HeadMetric]:
        """One variant's head metrics in a step range, ordered by (metric id, step, layer,
        head) — the primary key's order. "All heads of a variant at a step" is
        ``step_min=step_max=s``."""
        variant_id = check_id(variant_id, "variant_id")
        limit = check_limit(limit)
        after = decode_cursor(cursor, 4)
        with self._session() as session:
            self._require_variants(session, [variant_id])
            stmt = select(*_HEAD_ROW).where(_HM.variant_id == variant_id)
            if metrics is None and (step_min is not None or step_max is not None):
                # turns "variant at steps" into primary-key probes, one per metric
                all_ids = list(session.scalars(select(MetricNameRow.id)))
                stmt = stmt.where(_HM.metric_id.in_(all_ids))
            stmt = self._head_filters(session, stmt, step_min, step_max, metrics, layer, head)
            order = (_HM.metric_id, _HM.step, _HM.layer, _HM.head)
            return self._head_page(session, stmt, order, after, limit)

    def list_sweep_head_metrics(
        self,
        sweep_id: int,
        metric: str,
        *,
        step_min: int | None = None,
        step_max: int | None = None,
        layer: int | None = None,
        head: int | None = None,
        cursor: str | None = None,
        limit: int = 1000,
    ) -> Page[HeadMetric]:
        """One metric across all variants of a sweep, ordered by (variant, step, layer,
        head); with ``layer`` and ``head`` it is "one head across steps" for every variant."""
        sweep_id = check_id(sweep_id, "sweep_id")
        limit = check_limit(limit)
        after = decode_cursor(cursor, 4)
        with self._session() as session:
            stmt = self._variant_scope(session, select(*_HEAD_ROW), _HM.variant_id, None, sweep_id)
            stmt = self._head_filters(session, stmt, step_min, step_max, [metric], layer, head)
            order = (_HM.variant_id, _HM.step, _HM.layer, _HM.head)
            return self._head_page(session, stmt, order, after, limit)

    def _head_page(
        self, session: Session, stmt: Select, order: tuple, after: Sequence[Any] | None, limit: int
    ) -> Page[HeadMetric]:
        """Keyset paging over ``order`` (a prefix-free tuple of columns): the page after the
        cursor's key, and the cursor of its last row when more rows follow.

        The page after a cursor is read as two index range scans: the rest of the cursor's
        ``order[0]`` group (``order[0] = a AND (order[1:]) > (...)``), then, if the page is not
        full yet, the groups after it (``order[0] > a``). One row comparison over all of
        ``order`` would bound the primary-key scan only on its first column where ``order``
        skips a key column (a sweep's listing orders by variant, step, ... for one metric), and
        PostgreSQL would read every earlier row of the cursor's variant: O(depth) per page."""
        if after is None:
            rows = list(session.execute(stmt.order_by(*order).limit(limit + 1)))
        else:
            head, rest = order[0], order[1:]
            same = stmt.where(head == after[0], tuple_(*rest) > tuple_(*after[1:]))
            rows = list(session.execute(same.order_by(*order).limit(limit + 1)))
            if len(rows) <= limit:
                later = stmt.where(head > after[0]).order_by(*order).limit(limit + 1 - len(rows))
                rows += list(session.execute(later))
        items = self._head_entities(session, rows[:limit])
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(*(getattr(last, column.key) for column in order))
        return Page(items, next_cursor)

    def read_head_metric_columns(
        self,
        *,
        variant_ids: Sequence[int] | None = None,
        sweep_id: int | None = None,
        metrics: Sequence[str] | None = None,
        step_min: int | None = None,
        step_max: int | None = None,
        at_steps: Mapping[int, int] | None = None,
    ) -> dict[str, np.ndarray]:
        """All matching head metrics as columns ``variant_id, step, layer, head, metric,
        value`` (metric as an object array of str), ordered by (variant, metric, step, layer,
        head). Give ``variant_ids`` or ``sweep_id`` — or ``at_steps`` ``{variant_id: step}``:
        each variant at its own step only (primary-key lookups, grouped by step)."""
        with self._session() as session:
            stmt = select(_HM.variant_id, _HM.step, _HM.layer, _HM.head, _HM.metric_id, _HM.value)
            if at_steps is not None:
                if variant_ids is not None or sweep_id is not None:
                    raise InvalidInput("give at_steps alone, without variant_ids or sweep_id")
                by_step: dict[int, list[int]] = {}
                for vid, step in at_steps.items():
                    step = check_int(step, "at_steps step")
                    by_step.setdefault(step, []).append(check_id(vid, "variant_id"))
                if not by_step:
                    return _columns([], ("variant_id", "step", "layer", "head", "metric", "value"), {})
                stmt = stmt.where(or_(*(and_(_HM.variant_id.in_(ids), _HM.step == step)
                                        for step, ids in by_step.items())))
            else:
                stmt = self._variant_scope(session, stmt, _HM.variant_id, variant_ids, sweep_id)
            stmt = self._head_filters(session, stmt, step_min, step_max, metrics, None, None)
            stmt = stmt.order_by(_HM.variant_id, _HM.metric_id, _HM.step, _HM.layer, _HM.head)
            rows = session.execute(stmt).all()
            names = self._metric_name_map(session, sorted({r[4] for r in rows}))
        return _columns(rows, ("variant_id", "step", "layer", "head", "metric", "value"), names)

    def read_scalar_metric_columns(
        self,
        *,
        variant_ids: Sequence[int] | None = None,
        sweep_id: int | None = None,
        names: Sequence[str] | None = None,
        step_min: int | None = None,
        step_max: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Scalar metrics as columns ``variant_id, step, name, value``, ordered by
        (variant, name id, step). Give ``variant_ids`` or ``sweep_id``."""
        with self._session() as session:
            stmt = select(_SM.variant_id, _SM.step, _SM.metric_id, _SM.value)
            stmt = self._variant_scope(session, stmt, _SM.variant_id, variant_ids, sweep_id)
            stmt = self._scalar_filters(session, stmt, names, step_min, step_max)
            rows = session.execute(stmt.order_by(_SM.variant_id, _SM.metric_id, _SM.step)).all()
            name_map = self._metric_name_map(session, sorted({r[2] for r in rows}))
        return _columns(rows, ("variant_id", "step", "name", "value"), name_map)

    def list_scalar_metrics(
        self,
        variant_id: int,
        *,
        names: Sequence[str] | None = None,
        step_min: int | None = None,
        step_max: int | None = None,
    ) -> list[ScalarMetric]:
        """One variant's scalar metrics, ordered by (name, step)."""
        cols = self.read_scalar_metric_columns(
            variant_ids=[variant_id], names=names, step_min=step_min, step_max=step_max
        )
        records = zip(cols["step"].tolist(), cols["name"].tolist(), cols["value"].tolist(), strict=True)
        out = [ScalarMetric(variant_id, s, n, v) for s, n, v in records]
        return sorted(out, key=lambda m: (m.name, m.step))

    def last_head_metric_steps(
        self, sweep_id: int, metric: str, *, step_min: int | None = None, step_max: int | None = None
    ) -> dict[int, int]:
        """Each variant's last step (within the range) at which ``metric`` was recorded for
        any head: ``{variant_id: step}`` (variants without one left out). A correlated
        ``max(step)`` per variant: one primary-key probe each, however long the runs are."""
        sweep_id = check_id(sweep_id, "sweep_id")
        with self._session() as session:
            if session.get(SweepRow, sweep_id) is None:
                raise NotFound(f"unknown sweep id {sweep_id}; list sweeps with list_sweeps()")
            last = select(func.max(_HM.step)).where(_HM.variant_id == VariantRow.id)
            last = self._head_filters(session, last, step_min, step_max, [metric], None, None)
            stmt = select(VariantRow.id, last.scalar_subquery()).where(VariantRow.sweep_id == sweep_id)
            return {int(v): int(s) for v, s in session.execute(stmt) if s is not None}

    def count_head_metrics(
        self, *, variant_ids: Sequence[int] | None = None, sweep_id: int | None = None
    ) -> int:
        """Number of head-metric rows of some variants or of a sweep (or all, given neither)."""
        with self._session() as session:
            stmt = select(func.count()).select_from(_HM)
            if variant_ids is not None or sweep_id is not None:
                stmt = self._variant_scope(session, stmt, _HM.variant_id, variant_ids, sweep_id)
            return int(session.scalar(stmt) or 0)

    # -- helpers -----------------------------------------------------------------------------

    def _variant_scope(
        self,
        session: Session,
        stmt: _S,
        variant_col: Any,
        variant_ids: Sequence[int] | None,
        sweep_id: int | None,
    ) -> _S:
        if (variant_ids is None) == (sweep_id is None):
            raise InvalidInput("give exactly one of variant_ids or sweep_id")
        if sweep_id is not None:
            sweep_id = check_id(sweep_id, "sweep_id")
            if session.get(SweepRow, sweep_id) is None:
                raise NotFound(f"unknown sweep id {sweep_id}; list sweeps with list_sweeps()")
            of_sweep = select(VariantRow.id).where(VariantRow.sweep_id == sweep_id)
            ids = list(session.scalars(of_sweep))
            # an explicit list makes PostgreSQL probe the primary key once per variant
            return stmt.where(variant_col.in_(ids if len(ids) <= 5_000 else of_sweep))
        ids = check_ids(variant_ids or [], "variant_ids")
        self._require_variants(session, ids)
        return stmt.where(variant_col.in_(ids))

    def _name_ids(self, session: Session, names: Sequence[str], field: str) -> list[int]:
        if isinstance(names, str):
            names = [names]
        wanted = [check_str(n, field, 100) for n in names]
        ids = self._metric_ids_for(session, wanted, create=False)
        unknown = [n for n in wanted if n not in ids]
        if unknown:
            known = sorted(session.scalars(select(MetricNameRow.name)))
            raise NotFound(f"unknown {field} {unknown}; metrics written so far: {known}")
        return [ids[n] for n in wanted]

    def _head_filters(
        self,
        session: Session,
        stmt: _S,
        step_min: int | None,
        step_max: int | None,
        metrics: Sequence[str] | None,
        layer: int | None,
        head: int | None,
    ) -> _S:
        if step_min is not None:
            stmt = stmt.where(_HM.step >= check_int(step_min, "step_min"))
        if step_max is not None:
            stmt = stmt.where(_HM.step <= check_int(step_max, "step_max"))
        if metrics is not None:
            stmt = stmt.where(_HM.metric_id.in_(self._name_ids(session, metrics, "metric")))
        if layer is not None:
            stmt = stmt.where(_HM.layer == check_int(layer, "layer", 0, 2**15 - 1))
        if head is not None:
            stmt = stmt.where(_HM.head == check_int(head, "head", 0, 2**15 - 1))
        return stmt

    def _scalar_filters(
        self,
        session: Session,
        stmt: _S,
        names: Sequence[str] | None,
        step_min: int | None,
        step_max: int | None,
    ) -> _S:
        if names is not None:
            stmt = stmt.where(_SM.metric_id.in_(self._name_ids(session, names, "name")))
        if step_min is not None:
            stmt = stmt.where(_SM.step >= check_int(step_min, "step_min"))
        if step_max is not None:
            stmt = stmt.where(_SM.step <= check_int(step_max, "step_max"))
        return stmt

    def _head_entities(self, session: Session, rows: Sequence[Any]) -> list[HeadMetric]:
        names = self._metric_name_map(session, sorted({r.metric_id for r in rows}))
        return [HeadMetric(r.variant_id, r.step, r.layer, r.head, names[r.metric_id], r.value) for r in rows]


def _columns(rows: Sequence[Any], fields: tuple[str, ...], names: dict[int, str]) -> dict[str, np.ndarray]:
    """Rows whose name column holds metric ids → columns with names as an object array."""
    name_field = fields[-2]
    db_order = [f for f in fields if f not in (name_field, "value")] + [name_field, "value"]
    if not rows:
        return {
            f: np.empty(0, dtype=object if f == name_field else np.float64 if f == "value" else np.int64)
            for f in fields
        }
    transposed = list(zip(*rows, strict=True))
    out: dict[str, np.ndarray] = {}
    for f, col in zip(db_order, transposed, strict=True):
        if f == name_field:
            out[f] = np.array([names[m] for m in col], dtype=object)
        elif f == "value":
            out[f] = np.asarray(col, dtype=np.float64)
        else:
            out[f] = np.asarray(col, dtype=np.int64)
    return {f: out[f] for f in fields}
