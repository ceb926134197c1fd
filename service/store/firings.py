"""Study firings: one row per (study, scheduled time), created by
:meth:`Store.claim_due_firing` (studies.py) and driven to a terminal status here."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.store.base import StoreBase
from service.store.entities import TERMINAL_STATUSES, FiringStatus, Page, StudyFiring
from service.store.errors import NotFound
from service.store.models import ReportRow, StudyFiringRow, StudyRow, SweepRow, utcnow
from service.store.validation import (
    check_choice,
    check_id,
    check_limit,
    clip_error,
    decode_cursor,
    encode_cursor,
)


def firing_entity(row: StudyFiringRow) -> StudyFiring:
    return StudyFiring(
        id=row.id,
        study_id=row.study_id,
        scheduled_for=row.scheduled_for,
        status=row.status,
        claimed_by=row.claimed_by,
        sweep_id=row.sweep_id,
        report_id=row.report_id,
        error=row.error,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


class FiringsMixin(StoreBase):
    def get_firing(self, firing_id: int) -> StudyFiring:
        with self._session() as session:
            return firing_entity(self._firing_row(session, check_id(firing_id, "firing_id")))

    def list_firings(
        self,
        study_id: int | None = None,
        *,
        status: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[StudyFiring]:
        """Firings, newest scheduled first (ties by id)."""
        limit = check_limit(limit)
        after = decode_cursor(cursor, 1)
        stmt = select(StudyFiringRow)
        if study_id is not None:
            stmt = stmt.where(StudyFiringRow.study_id == check_id(study_id, "study_id"))
        if status is not None:
            stmt = stmt.where(StudyFiringRow.status == check_choice(status, "status", FiringStatus))
        if after is not None:
            stmt = stmt.where(StudyFiringRow.id < after[0])
        with self._session() as session:
            if study_id is not None:
                if session.get(StudyRow, study_id) is None:
                    raise NotFound(f"unknown study id {study_id}; list studies with list_studies()")
            rows = list(session.scalars(stmt.order_by(StudyFiringRow.id.desc()).limit(limit + 1)))
        items = [firing_entity(r) for r in rows[:limit]]
        return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)

    def previous_firing(
        self, firing_id: int, *, status: str | None = FiringStatus.SUCCEEDED.value
    ) -> StudyFiring | None:
        """The same study's latest firing scheduled before this one (with ``status``)."""
        with self._session() as session:
            current = self._firing_row(session, check_id(firing_id, "firing_id"))
            stmt = select(StudyFiringRow).where(
                StudyFiringRow.study_id == current.study_id,
                StudyFiringRow.scheduled_for < current.scheduled_for,
            )
            if status is not None:
                stmt = stmt.where(StudyFiringRow.status == check_choice(status, "status", FiringStatus))
            row = session.scalars(stmt.order_by(StudyFiringRow.scheduled_for.desc()).limit(1)).first()
            return None if row is None else firing_entity(row)

    def update_firing(
        self,
        firing_id: int,
        *,
        status: str | None = None,
        sweep_id: int | None = None,
        report_id: int | None = None,
        error: str | None = None,
    ) -> StudyFiring:
        """Record progress; a terminal status (succeeded/failed/skipped) stamps finished_at."""
        firing_id = check_id(firing_id, "firing_id")
        if status is not None:
            status = check_choice(status, "status", FiringStatus)
        with self._session(write=True) as session:
            row = self._firing_row(session, firing_id, lock=True)
            if sweep_id is not None:
                if session.get(SweepRow, check_id(sweep_id, "sweep_id")) is None:
                    raise NotFound(f"unknown sweep id {sweep_id}")
                row.sweep_id = sweep_id
            if report_id is not None:
                if session.get(ReportRow, check_id(report_id, "report_id")) is None:
                    raise NotFound(f"unknown report id {report_id}")
                row.report_id = report_id
            if error is not None:
                row.error = clip_error(error)
            if status is not None:
                row.status = status
                if status in TERMINAL_STATUSES:
                    row.finished_at = utcnow()
            session.flush()
            return firing_entity(row)

    def _firing_row(self, session: Session, firing_id: int, *, lock: bool = False) -> StudyFiringRow:
        row = session.get(StudyFiringRow, firing_id, with_for_update=lock or None)
        if row is None:
            raise NotFound(f"unknown study firing id {firing_id}")
        return row
