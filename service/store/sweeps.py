"""Sweeps and their variants: creation, listing, and the status updates of the runner."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from service.store.base import StoreBase, chunks
from service.store.entities import (
    TERMINAL_STATUSES,
    NewVariant,
    Page,
    Sweep,
    SweepStatus,
    Variant,
    VariantStatus,
)
from service.store.errors import InvalidInput, NotFound
from service.store.models import (
    NAME_LEN,
    NODE_LEN,
    RUN_ID_LEN,
    HeadMetricRow,
    OutboxRow,
    SweepRow,
    VariantRow,
    utcnow,
)
from service.store.validation import (
    check_choice,
    check_id,
    check_ids,
    check_json,
    check_limit,
    check_str,
    clip_error,
    decode_cursor,
    encode_cursor,
)


def sweep_entity(row: SweepRow) -> Sweep:
    return Sweep(
        id=row.id,
        name=row.name,
        spec=row.spec,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        mlflow_run_id=row.mlflow_run_id,
    )


def variant_entity(row: VariantRow) -> Variant:
    return Variant(
        id=row.id,
        sweep_id=row.sweep_id,
        index=row.index,
        factors=row.factors,
        config=row.config,
        pack_key=row.pack_key,
        status=row.status,
        attempts=row.attempts,
        last_error=row.last_error,
        node=row.node,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        mlflow_run_id=row.mlflow_run_id,
    )


# Outbox kinds these status changes enqueue (the metric writes enqueue "head_metrics" and
# "scalar_metrics"); service.mirror consumes all four.
VARIANT_FINISHED = "variant_finished"
SWEEP_FINISHED = "sweep_finished"


def _outbox_row(kind: str, payload: dict[str, Any]) -> OutboxRow:
    now = utcnow()
    return OutboxRow(
        kind=kind, payload=payload, attempts=0, done=False, created_at=now, available_at=now
    )


def _check_new_variants(variants: Sequence[NewVariant]) -> list[NewVariant]:
    if isinstance(variants, str | bytes | dict):
        raise InvalidInput("variants must be a sequence of NewVariant")
    out = []
    for i, v in enumerate(variants):
        if not isinstance(v, NewVariant):
            raise InvalidInput(f"variants[{i}] must be a NewVariant, got {type(v).__name__}")
        if not isinstance(v.factors, dict) or not isinstance(v.config, dict):
            raise InvalidInput(f"variants[{i}].factors and .config must be dicts")
        check_json(v.factors, f"variants[{i}].factors")
        check_json(v.config, f"variants[{i}].config")
        check_str(v.pack_key, f"variants[{i}].pack_key", NAME_LEN)
        out.append(v)
    return out


class SweepsMixin(StoreBase):
    # -- sweeps ------------------------------------------------------------------------------

    def create_sweep(
        self, name: str, spec: Any, variants: Sequence[NewVariant] = ()
    ) -> tuple[Sweep, list[Variant]]:
        """A new pending sweep and its pending variants (indexes 0..n-1), in one transaction."""
        check_str(name, "name", NAME_LEN)
        check_json(spec, "spec")
        checked = _check_new_variants(variants)
        with self._session(write=True) as session:
            row = SweepRow(name=name, spec=spec, status=SweepStatus.PENDING.value)
            session.add(row)
            session.flush()
            created = self._add_variants(session, row.id, checked, start_index=0)
            return sweep_entity(row), created

    def add_variants(self, sweep_id: int, variants: Sequence[NewVariant]) -> list[Variant]:
        """Append pending variants to a sweep (indexes continue after the last one)."""
        sweep_id = check_id(sweep_id, "sweep_id")
        checked = _check_new_variants(variants)
        with self._session(write=True) as session:
            self._sweep_row(session, sweep_id)
            last = session.scalar(select(func.max(VariantRow.index)).where(VariantRow.sweep_id == sweep_id))
            start = 0 if last is None else last + 1
            return self._add_variants(session, sweep_id, checked, start_index=start)

    def _add_variants(
        self, session: Session, sweep_id: int, variants: list[NewVariant], start_index: int
    ) -> list[Variant]:
        rows = [
            VariantRow(
                sweep_id=sweep_id,
                index=start_index + i,
                factors=v.factors,
                config=v.config,
                pack_key=v.pack_key,
                status=VariantStatus.PENDING.value,
                attempts=0,
            )
            for i, v in enumerate(variants)
        ]
        session.add_all(rows)
        session.flush()
        return [variant_entity(r) for r in rows]

    def get_sweep(self, sweep_id: int) -> Sweep:
        with self._session() as session:
            return sweep_entity(self._sweep_row(session, check_id(sweep_id, "sweep_id")))

    def list_sweeps(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[Sweep]:
        """Sweeps, newest first, optionally filtered by status and exact name."""
        limit = check_limit(limit)
        after = decode_cursor(cursor, 1)
        stmt = select(SweepRow)
        if status is not None:
            stmt = stmt.where(SweepRow.status == check_choice(status, "status", SweepStatus))
        if name is not None:
            stmt = stmt.where(SweepRow.name == check_str(name, "name", NAME_LEN))
        if after is not None:
            stmt = stmt.where(SweepRow.id < after[0])
        with self._session() as session:
            rows = list(session.scalars(stmt.order_by(SweepRow.id.desc()).limit(limit + 1)))
        items = [sweep_entity(r) for r in rows[:limit]]
        return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)

    def set_sweep_status(self, sweep_id: int, status: str, *, mirror: bool = True) -> Sweep:
        """Set the status; ``running`` stamps started_at (once), a terminal one finished_at.
        With ``mirror``, a terminal status also enqueues a ``sweep_finished`` outbox item
        (``{"sweep_id", "status"}``) in the same transaction, for the MLflow mirror."""
        status = check_choice(status, "status", SweepStatus)
        with self._session(write=True) as session:
            row = self._sweep_row(session, check_id(sweep_id, "sweep_id"), lock=True)
            now = utcnow()
            row.status = status
            if status == SweepStatus.RUNNING and row.started_at is None:
                row.started_at = now
            if status in TERMINAL_STATUSES:
                row.finished_at = now
                if mirror:
                    session.add(_outbox_row(SWEEP_FINISHED, {"sweep_id": row.id, "status": status}))
            session.flush()
            return sweep_entity(row)

    def set_sweep_mlflow_run_id(self, sweep_id: int, run_id: str) -> Sweep:
        check_str(run_id, "run_id", RUN_ID_LEN)
        with self._session(write=True) as session:
            row = self._sweep_row(session, check_id(sweep_id, "sweep_id"))
            row.mlflow_run_id = run_id
            session.flush()
            return sweep_entity(row)

    def swap_sweep_mlflow_run_id(self, sweep_id: int, expected: str | None, run_id: str) -> Sweep:
        """Compare-and-swap: set the MLflow run id only if it is still ``expected``; returns
        the sweep as it is afterwards (compare its ``mlflow_run_id`` to see who won)."""
        check_str(run_id, "run_id", RUN_ID_LEN)
        with self._session(write=True) as session:
            row = self._sweep_row(session, check_id(sweep_id, "sweep_id"), lock=True)
            if row.mlflow_run_id == expected:
                row.mlflow_run_id = run_id
                session.flush()
            return sweep_entity(row)

    def delete_sweep(self, sweep_id: int) -> None:
        """Delete a sweep with its variants and their metrics."""
        with self._session(write=True) as session:
            row = self._sweep_row(session, check_id(sweep_id, "sweep_id"), lock=True)
            variant_ids = select(VariantRow.id).where(VariantRow.sweep_id == row.id)
            # head_metrics has no foreign keys (ingest speed), so no cascade either
            session.execute(delete(HeadMetricRow).where(HeadMetricRow.variant_id.in_(variant_ids)))
            session.delete(row)

    def _sweep_row(self, session: Session, sweep_id: int, *, lock: bool = False) -> SweepRow:
        row = session.get(SweepRow, sweep_id, with_for_update=lock or None)
        if row is None:
            raise NotFound(f"unknown sweep id {sweep_id}; list sweeps with list_sweeps()")
        return row

    # -- variants ----------------------------------------------------------------------------

    def get_variant(self, variant_id: int) -> Variant:
        variant_id = check_id(variant_id, "variant_id")
        with self._session() as session:
            row = session.get(VariantRow, variant_id)
            if row is None:
                raise NotFound(f"unknown variant id {variant_id}")
            return variant_entity(row)

    def list_variants(
        self,
        sweep_id: int | None = None,
        *,
        status: str | None = None,
        pack_key: str | None = None,
        cursor: str | None = None,
        limit: int = 500,
    ) -> Page[Variant]:
        """Variants ordered by id (within a sweep that is index order)."""
        limit = check_limit(limit)
        after = decode_cursor(cursor, 1)
        stmt = select(VariantRow)
        if sweep_id is not None:
            stmt = stmt.where(VariantRow.sweep_id == check_id(sweep_id, "sweep_id"))
        if status is not None:
            stmt = stmt.where(VariantRow.status == check_choice(status, "status", VariantStatus))
        if pack_key is not None:
            stmt = stmt.where(VariantRow.pack_key == check_str(pack_key, "pack_key", NAME_LEN))
        if after is not None:
            stmt = stmt.where(VariantRow.id > after[0])
        with self._session() as session:
            if sweep_id is not None:
                self._sweep_row(session, sweep_id)
            rows = list(session.scalars(stmt.order_by(VariantRow.id).limit(limit + 1)))
        items = [variant_entity(r) for r in rows[:limit]]
        return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)

    def start_variants(self, variant_ids: Sequence[int], node: str | None) -> list[Variant]:
        """Mark variants (a pack) running on ``node``: attempts += 1, started_at = now."""
        ids = check_ids(variant_ids, "variant_ids")
        if node is not None:
            check_str(node, "node", NODE_LEN)
        values = {
            "status": VariantStatus.RUNNING.value,
            "attempts": VariantRow.attempts + 1,
            "node": node,
            "started_at": utcnow(),
            "finished_at": None,
        }
        return self._update_variants(ids, values)

    def finish_variants(
        self,
        variant_ids: Sequence[int],
        status: str,
        error: str | None = None,
        *,
        mirror: bool = True,
    ) -> list[Variant]:
        """Mark variants succeeded / failed / cancelled. ``error`` (clipped to 20,000
        characters) is kept in last_error; a success leaves an earlier error in place.
        With ``mirror``, the same transaction enqueues one ``variant_finished`` outbox item
        (``{"variant_ids": [...], "status"}``) for the MLflow mirror (transactional outbox)."""
        ids = check_ids(variant_ids, "variant_ids")
        status = check_choice(status, "status", TERMINAL_STATUSES & set(VariantStatus))
        values: dict[str, Any] = {"status": status, "finished_at": utcnow()}
        if error is not None:
            values["last_error"] = clip_error(error)
        outbox = _outbox_row(VARIANT_FINISHED, {"variant_ids": ids, "status": status}) if mirror else None
        return self._update_variants(ids, values, outbox=outbox)

    def set_variant_status(
        self, variant_ids: Sequence[int], status: str, error: str | None = None
    ) -> list[Variant]:
        """Set any status (e.g. back to ``pending`` for a retry) without other stamps."""
        ids = check_ids(variant_ids, "variant_ids")
        values: dict[str, Any] = {"status": check_choice(status, "status", VariantStatus)}
        if error is not None:
            values["last_error"] = clip_error(error)
        return self._update_variants(ids, values)

    def set_variant_mlflow_run_id(self, variant_id: int, run_id: str) -> Variant:
        check_str(run_id, "run_id", RUN_ID_LEN)
        return self._update_variants([check_id(variant_id, "variant_id")], {"mlflow_run_id": run_id})[0]

    def swap_variant_mlflow_run_id(self, variant_id: int, expected: str | None, run_id: str) -> Variant:
        """Compare-and-swap: set the MLflow run id only if it is still ``expected``; returns
        the variant as it is afterwards. Two mirrors creating a variant's run at once thus
        agree on one (the loser deletes its own)."""
        check_str(run_id, "run_id", RUN_ID_LEN)
        variant_id = check_id(variant_id, "variant_id")
        current = VariantRow.mlflow_run_id
        matches = current.is_(None) if expected is None else current == expected
        with self._session(write=True) as session:
            session.execute(
                update(VariantRow)
                .where(VariantRow.id == variant_id, matches)
                .values(mlflow_run_id=run_id, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            row = session.get(VariantRow, variant_id, populate_existing=True)
            if row is None:
                raise NotFound(f"unknown variant id {variant_id}")
            return variant_entity(row)

    def variant_status_counts(self, sweep_id: int) -> dict[str, int]:
        """``{status: count}`` over a sweep's variants (statuses with no variant omitted)."""
        sweep_id = check_id(sweep_id, "sweep_id")
        with self._session() as session:
            self._sweep_row(session, sweep_id)
            rows = session.execute(
                select(VariantRow.status, func.count())
                .where(VariantRow.sweep_id == sweep_id)
                .group_by(VariantRow.status)
            ).all()
        return {status: int(n) for status, n in rows}

    def _update_variants(
        self, ids: list[int], values: dict[str, Any], *, outbox: OutboxRow | None = None
    ) -> list[Variant]:
        values = {**values, "updated_at": utcnow()}
        with self._session(write=True) as session:
            self._require_variants(session, ids)
            if outbox is not None:
                session.add(outbox)
            for chunk in chunks(ids):
                session.execute(
                    update(VariantRow)
                    .where(VariantRow.id.in_(chunk))
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
            rows: list[VariantRow] = []
            for chunk in chunks(ids):
                rows.extend(
                    session.scalars(
                        select(VariantRow)
                        .where(VariantRow.id.in_(chunk))
                        .execution_options(populate_existing=True)
                    )
                )
            return [variant_entity(r) for r in sorted(rows, key=lambda r: r.id)]
