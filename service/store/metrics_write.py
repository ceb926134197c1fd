"""Bulk, idempotent writes of head metrics and scalar metrics.

Policy (the same for head and scalar metrics):

* **Upsert, later value wins.** Writing a key that exists — head metrics are keyed by
  (variant, metric, step, layer, head), scalar metrics by (variant, name, step) — replaces
  its value; rewriting the same value touches nothing, so a retried batch changes nothing
  (``WriteResult.changed == 0``). Within one batch, duplicate keys collapse to the last record.
* **NaN and ±inf are rejected.** PostgreSQL would store them but SQLite turns NaN into NULL,
  and one NaN poisons every AVG over a head; a diverged run is a variant status, not a
  metric value. A batch holding any non-finite value raises :class:`InvalidInput` naming
  the first one, and nothing of it is written.
* **All or nothing.** The batch is validated in full (types, ranges, names, finiteness,
  variant ids) before the one transaction that writes it; any error rolls it all back.
* **Mirroring.** With ``mirror=True`` (the default), when a batch changed anything, the same
  transaction enqueues one MLflow outbox item for it: ``kind="head_metrics"`` /
  ``"scalar_metrics"``, ``payload={"ranges": [{"variant_id", "step_min", "step_max"}, ...]}``
  (one range per variant in the batch). The mirror reads those rows back with
  ``read_head_metric_columns`` / ``read_scalar_metric_columns``.

Input forms: a mapping of columns (numpy arrays, CPU tensors, lists, or scalars broadcast
over the batch) — the fast path — or a sequence of records (entities or tuples in column
order). Head-metric columns: ``variant_id, step, layer, head, metric, value``; scalar-metric
columns: ``variant_id, step, name, value``.

Writing: the batch is sorted by primary key and streamed to PostgreSQL with binary ``COPY``
built straight from the numpy columns. When no stored row can collide with it (checked with
one primary-key probe per (variant, metric) step range; the usual case, new steps) it is
copied straight into the table; otherwise, or if a concurrent writer makes it collide, it is
copied into a temporary staging table and moved with one ``INSERT ... SELECT ... ON CONFLICT
DO UPDATE``. SQLite runs one ``executemany`` of ``INSERT ... ON CONFLICT DO UPDATE``.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from sqlalchemy import Table, column, select, table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from service.store.base import StoreBase
from service.store.columns import (
    HEAD_LAYOUT,
    SCALAR_LAYOUT,
    BatchLayout,
    prepare_batch,
)
from service.store.entities import WriteResult
from service.store.models import Base, HeadMetricRow, OutboxRow, ScalarMetricRow, utcnow

_PG_BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_PG_BINARY_TRAILER = b"\xff\xff"
_COPY_CHUNK_ROWS = 200_000


class _BulkTarget:
    """Per-table SQL for the bulk path, compiled once from SQLAlchemy constructs."""

    def __init__(self, layout: BatchLayout, model: type[Base], outbox_kind: str) -> None:
        self.layout = layout
        self.outbox_kind = outbox_kind
        target = cast(Table, model.__table__)
        self.table_name = target.name
        self.key_names = [k.name for k in layout.keys]
        self.columns = [*self.key_names, "value"]
        self.stage = f"headspec_stage_{target.name}"
        pg_types = {"int4": "integer", "int2": "smallint"}
        stage_cols = ", ".join(f"{k.name} {pg_types[k.pg_type]}" for k in layout.keys)
        self.pg_create_stage = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.stage} "
            f"({stage_cols}, value double precision) ON COMMIT DELETE ROWS"
        )
        column_list = ", ".join(self.columns)
        self.pg_copy = f"COPY {self.stage} ({column_list}) FROM STDIN (FORMAT BINARY)"
        self.pg_copy_direct = f"COPY {self.table_name} ({column_list}) FROM STDIN (FORMAT BINARY)"
        # key groups are contiguous because batches are sorted by (variant, metric, step, ...)
        self.pg_collide = (
            f"SELECT EXISTS (SELECT 1 FROM unnest(%s::int4[], %s::int2[], %s::int4[], %s::int4[]) "
            f"AS r(v, m, lo, hi) JOIN {self.table_name} t ON t.variant_id = r.v "
            "AND t.metric_id = r.m AND t.step BETWEEN r.lo AND r.hi)"
        )
        stage_table = table(self.stage, *[column(c) for c in self.columns])
        pg_stmt = pg_insert(target).from_select(self.columns, select(stage_table))
        pg_stmt = pg_stmt.on_conflict_do_update(
            index_elements=self.key_names,
            set_={"value": pg_stmt.excluded.value},
            where=target.c.value != pg_stmt.excluded.value,
        )
        self.pg_insert_select = str(pg_stmt.compile(dialect=postgresql.dialect()))
        sq_stmt = sqlite_insert(target)
        sq_stmt = sq_stmt.on_conflict_do_update(
            index_elements=self.key_names,
            set_={"value": sq_stmt.excluded.value},
            where=target.c.value != sq_stmt.excluded.value,
        )
        compiled = sq_stmt.compile(dialect=sqlite.dialect(), column_keys=self.columns)
        self.sqlite_upsert = str(compiled)
        self.sqlite_param_order = list(compiled.positiontup or [])
        # binary COPY rows: int16 field count, then (int32 length, big-endian value) per field
        fields: list[tuple[str, str]] = [("nfields", ">i2")]
        for k in layout.keys:
            width = ">i4" if k.pg_type == "int4" else ">i2"
            fields += [(f"len_{k.name}", ">i4"), (k.name, width)]
        fields += [("len_value", ">i4"), ("value", ">f8")]
        self.copy_dtype = np.dtype(fields)


_HEAD = _BulkTarget(HEAD_LAYOUT, HeadMetricRow, "head_metrics")
_SCALAR = _BulkTarget(SCALAR_LAYOUT, ScalarMetricRow, "scalar_metrics")


class MetricsWriteMixin(StoreBase):
    def write_head_metrics(self, batch: Any, *, mirror: bool = True) -> WriteResult:
        """Upsert a batch of head metrics (columns or records; see the module docstring)."""
        return self._write_metrics(batch, _HEAD, mirror)

    def write_scalar_metrics(self, batch: Any, *, mirror: bool = True) -> WriteResult:
        """Upsert a batch of scalar metrics (loss, lr, ...): columns
        ``variant_id, step, name, value`` or records of the same."""
        return self._write_metrics(batch, _SCALAR, mirror)

    def _write_metrics(self, batch: Any, target: _BulkTarget, mirror: bool) -> WriteResult:
        prepared = prepare_batch(batch, target.layout)
        if len(prepared) == 0:
            return WriteResult(rows=0, changed=0)
        variant_col = prepared.keys["variant_id"]
        variant_ids = np.unique(variant_col).tolist()
        with self._session(write=True) as session:
            self._require_variants(session, variant_ids)
            name_ids = self._metric_ids_for(session, prepared.names, create=True)
            lookup = np.array([name_ids[n] for n in prepared.names], dtype=np.int64)
            keys = dict(prepared.keys)
            keys["metric_id"] = lookup[keys["metric_id"]]
            if self.dialect == "postgresql":
                changed = self._copy_upsert(session, target, keys, prepared.values)
            else:
                changed = self._executemany_upsert(session, target, keys, prepared.values)
            if mirror and changed:
                self._enqueue_metric_ranges(session, target.outbox_kind, keys)
        self._remember_metric_ids(name_ids)
        return WriteResult(rows=len(prepared), changed=changed)

    def _copy_upsert(
        self,
        session: Session,
        target: _BulkTarget,
        keys: dict[str, np.ndarray],
        values: np.ndarray,
    ) -> int:
        """PostgreSQL: binary COPY straight into the table when the batch cannot collide
        with stored rows (the usual case: new steps), else COPY into a staging table and
        upsert from it. A collision that appears concurrently falls back to the upsert."""
        from psycopg.errors import UniqueViolation

        dbapi_conn: Any = session.connection().connection.driver_connection
        with dbapi_conn.cursor() as cur:
            if not self._may_collide(cur, target, keys):
                cur.execute("SAVEPOINT headspec_copy")
                try:
                    self._copy(cur, target.pg_copy_direct, target, keys, values)
                except UniqueViolation:
                    cur.execute("ROLLBACK TO SAVEPOINT headspec_copy")
                else:
                    cur.execute("RELEASE SAVEPOINT headspec_copy")
                    return len(values)
            cur.execute(target.pg_create_stage)
            self._copy(cur, target.pg_copy, target, keys, values)
            cur.execute(target.pg_insert_select)
            # the staging rows vanish at commit (ON COMMIT DELETE ROWS) or rollback
            return int(cur.rowcount)

    @staticmethod
    def _copy(
        cur: Any, sql: str, target: _BulkTarget, keys: dict[str, np.ndarray], values: np.ndarray
    ) -> None:
        n = len(values)
        with cur.copy(sql) as copy:
            copy.write(_PG_BINARY_SIGNATURE)
            for start in range(0, n, _COPY_CHUNK_ROWS):
                stop = min(n, start + _COPY_CHUNK_ROWS)
                copy.write(_binary_rows(target, keys, values, start, stop))
            copy.write(_PG_BINARY_TRAILER)

    @staticmethod
    def _may_collide(cur: Any, target: _BulkTarget, keys: dict[str, np.ndarray]) -> bool:
        """Whether any stored row has a (variant, metric) of the batch within the batch's
        step range for it: one primary-key probe per (variant, metric) pair."""
        variants, metrics, steps = keys["variant_id"], keys["metric_id"], keys["step"]
        new_group = np.r_[True, (variants[1:] != variants[:-1]) | (metrics[1:] != metrics[:-1])]
        starts = np.flatnonzero(new_group)
        if len(starts) > 10_000:  # not worth probing; the upsert handles it
            return True
        args = (
            variants[starts].tolist(),
            metrics[starts].tolist(),
            np.minimum.reduceat(steps, starts).tolist(),
            np.maximum.reduceat(steps, starts).tolist(),
        )
        cur.execute(target.pg_collide, args)
        return bool(cur.fetchone()[0])

    def _executemany_upsert(
        self,
        session: Session,
        target: _BulkTarget,
        keys: dict[str, np.ndarray],
        values: np.ndarray,
    ) -> int:
        columns = {**keys, "value": values}
        ordered = [columns[name].tolist() for name in target.sqlite_param_order]
        dbapi_conn: Any = session.connection().connection.driver_connection
        cur = dbapi_conn.cursor()
        try:
            cur.executemany(target.sqlite_upsert, zip(*ordered, strict=True))
            return int(cur.rowcount)
        finally:
            cur.close()

    def _enqueue_metric_ranges(self, session: Session, kind: str, keys: dict[str, np.ndarray]) -> None:
        variants, steps = keys["variant_id"], keys["step"]  # sorted by variant first
        starts = np.flatnonzero(np.r_[True, variants[1:] != variants[:-1]])
        ranges = [
            {"variant_id": v, "step_min": lo, "step_max": hi}
            for v, lo, hi in zip(
                variants[starts].tolist(),
                np.minimum.reduceat(steps, starts).tolist(),
                np.maximum.reduceat(steps, starts).tolist(),
                strict=True,
            )
        ]
        now = utcnow()
        session.add(
            OutboxRow(
                kind=kind,
                payload={"ranges": ranges},
                attempts=0,
                done=False,
                created_at=now,
                available_at=now,
            )
        )


def _binary_rows(
    target: _BulkTarget,
    keys: dict[str, np.ndarray],
    values: np.ndarray,
    start: int,
    stop: int,
) -> bytes:
    rows = np.empty(stop - start, dtype=target.copy_dtype)
    rows["nfields"] = len(target.columns)
    for k in target.layout.keys:
        rows[f"len_{k.name}"] = 4 if k.pg_type == "int4" else 2
        rows[k.name] = keys[k.name][start:stop]
    rows["len_value"] = 8
    rows["value"] = values[start:stop]
    return rows.tobytes()
