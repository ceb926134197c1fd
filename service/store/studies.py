"""Cron studies and their firings, with the exactly-once claim of a due firing.

A study fires at ``next_fire_at``. Scheduler replicas call :meth:`claim_due_firing`; for each
scheduled time exactly one of them gets the firing, on SQLite and PostgreSQL alike:

* candidates: unpaused studies due (``next_fire_at <= now``) whose lease is free (none,
  expired, or already the caller's) — on PostgreSQL picked with ``FOR UPDATE SKIP LOCKED``
  so replicas do not queue behind each other;
* the winner is whoever's conditional ``UPDATE studies SET next_fire_at = <next>, lease_owner
  = <me> ... WHERE id = ? AND next_fire_at = <seen> AND <lease free>`` changes the row (an
  atomic compare-and-set, so it holds without row locks on SQLite too);
* the firing row is unique per (study, scheduled_for), a second line of defence.

The study lease (owner + expiry) says which replica is driving the study's current firing:
renew it with :meth:`acquire_study_lease` while working, release it when done. A replica
that dies leaves the lease to expire; another may then take over the unfinished firing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from service.store.base import StoreBase
from service.store.entities import (
    FiringStatus,
    Page,
    Study,
    StudyFiring,
)
from service.store.errors import Conflict, InvalidInput, NotFound
from service.store.firings import firing_entity
from service.store.models import (
    CRON_LEN,
    NAME_LEN,
    OWNER_LEN,
    TIMEZONE_LEN,
    StudyFiringRow,
    StudyRow,
    utcnow,
)
from service.store.validation import (
    check_aware,
    check_finite,
    check_id,
    check_json,
    check_limit,
    check_opt_aware,
    check_str,
    decode_cursor,
    encode_cursor,
)

_UNSET: Any = object()


def study_entity(row: StudyRow) -> Study:
    return Study(
        id=row.id,
        name=row.name,
        spec=row.spec,
        cron=row.cron,
        timezone=row.timezone,
        next_fire_at=row.next_fire_at,
        paused=row.paused,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _check_timezone(tz: str) -> str:
    check_str(tz, "timezone", TIMEZONE_LEN)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown timezone {tz!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from None
    return tz


def _lease_free(owner: str, now: datetime) -> ColumnElement[bool]:
    return or_(
        StudyRow.lease_owner.is_(None),
        StudyRow.lease_expires_at < now,
        StudyRow.lease_owner == owner,
    )


def _lease(lease_seconds: float) -> timedelta:
    seconds = check_finite(lease_seconds, "lease_seconds")
    if seconds <= 0:
        raise InvalidInput(f"lease_seconds must be positive, got {seconds}")
    return timedelta(seconds=seconds)


class StudiesMixin(StoreBase):
    def create_study(
        self,
        name: str,
        spec: Any,
        cron: str,
        timezone: str = "UTC",
        *,
        next_fire_at: datetime | None,
        paused: bool = False,
    ) -> Study:
        """A study; ``next_fire_at`` is computed by the caller from ``cron`` (the store does
        not parse cron expressions). Raises Conflict when the name is taken."""
        check_str(name, "name", NAME_LEN)
        check_json(spec, "spec")
        check_str(cron, "cron", CRON_LEN)
        _check_timezone(timezone)
        check_opt_aware(next_fire_at, "next_fire_at")
        if not isinstance(paused, bool):
            raise InvalidInput(f"paused must be a bool, got {paused!r}")
        with self._session(write=True) as session:
            if session.scalar(select(StudyRow.id).where(StudyRow.name == name)) is not None:
                raise Conflict(f"a study named {name!r} exists; pick another name or update it")
            row = StudyRow(
                name=name, spec=spec, cron=cron, timezone=timezone,
                next_fire_at=next_fire_at, paused=paused,
            )  # fmt: skip
            session.add(row)
            session.flush()
            return study_entity(row)

    def get_study(self, study_id: int) -> Study:
        with self._session() as session:
            return study_entity(self._study_row(session, check_id(study_id, "study_id")))

    def get_study_by_name(self, name: str) -> Study:
        check_str(name, "name", NAME_LEN)
        with self._session() as session:
            row = session.scalar(select(StudyRow).where(StudyRow.name == name))
            if row is None:
                raise NotFound(f"no study named {name!r}; list studies with list_studies()")
            return study_entity(row)

    def list_studies(
        self, *, paused: bool | None = None, cursor: str | None = None, limit: int = 100
    ) -> Page[Study]:
        """Studies ordered by id."""
        limit = check_limit(limit)
        after = decode_cursor(cursor, 1)
        stmt = select(StudyRow)
        if paused is not None:
            stmt = stmt.where(StudyRow.paused.is_(bool(paused)))
        if after is not None:
            stmt = stmt.where(StudyRow.id > after[0])
        with self._session() as session:
            rows = list(session.scalars(stmt.order_by(StudyRow.id).limit(limit + 1)))
        items = [study_entity(r) for r in rows[:limit]]
        return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)

    def update_study(
        self,
        study_id: int,
        *,
        spec: Any = _UNSET,
        cron: str = _UNSET,
        timezone: str = _UNSET,
        next_fire_at: datetime | None = _UNSET,
        paused: bool = _UNSET,
    ) -> Study:
        """Change the given fields only (``next_fire_at=None`` means "never fire")."""
        values: dict[str, Any] = {}
        if spec is not _UNSET:
            values["spec"] = check_json(spec, "spec")
        if cron is not _UNSET:
            values["cron"] = check_str(cron, "cron", CRON_LEN)
        if timezone is not _UNSET:
            values["timezone"] = _check_timezone(timezone)
        if next_fire_at is not _UNSET:
            values["next_fire_at"] = check_opt_aware(next_fire_at, "next_fire_at")
        if paused is not _UNSET:
            if not isinstance(paused, bool):
                raise InvalidInput(f"paused must be a bool, got {paused!r}")
            values["paused"] = paused
        with self._session(write=True) as session:
            row = self._study_row(session, check_id(study_id, "study_id"), lock=True)
            for key, value in values.items():
                setattr(row, key, value)
            session.flush()
            return study_entity(row)

    def delete_study(self, study_id: int) -> None:
        with self._session(write=True) as session:
            session.delete(self._study_row(session, check_id(study_id, "study_id")))

    # -- claiming ----------------------------------------------------------------------------

    def claim_due_firing(
        self,
        owner: str,
        next_fire_at: Callable[[Study], datetime | None],
        *,
        now: datetime | None = None,
        lease_seconds: float = 300.0,
    ) -> StudyFiring | None:
        """Take one due firing, exactly once across processes (see the module docstring).

        ``next_fire_at(study)`` returns the study's next firing time after this one (from its
        cron and timezone; later than ``study.next_fire_at``), or None to stop firing. The
        winner also takes the study's lease for ``lease_seconds``. None when nothing is due.
        """
        check_str(owner, "owner", OWNER_LEN)
        now = utcnow() if now is None else check_aware(now, "now")
        lease = _lease(lease_seconds)
        with self._session(write=True) as session:
            candidates = (
                select(StudyRow)
                .where(
                    StudyRow.paused.is_(False),
                    StudyRow.next_fire_at <= now,
                    _lease_free(owner, now),
                )
                .order_by(StudyRow.next_fire_at, StudyRow.id)
                .limit(1)
            )
            if self.dialect == "postgresql":
                candidates = candidates.with_for_update(skip_locked=True)
            row = session.scalars(candidates).first()
            if row is None or row.next_fire_at is None:
                return None
            seen = row.next_fire_at
            following = next_fire_at(study_entity(row))
            if following is not None:
                check_aware(following, "next_fire_at(study)")
                if following <= seen:
                    raise InvalidInput(
                        f"next_fire_at(study) returned {following.isoformat()}, not after the "
                        f"firing being claimed ({seen.isoformat()}); return the next cron time"
                    )
            won = session.execute(
                update(StudyRow)
                .where(
                    StudyRow.id == row.id,
                    StudyRow.next_fire_at == seen,
                    _lease_free(owner, now),
                )
                .values(
                    next_fire_at=following,
                    lease_owner=owner,
                    lease_expires_at=now + lease,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            if won.rowcount != 1:  # type: ignore[attr-defined]
                return None
            stmt = (
                self._insert(StudyFiringRow)
                .values(
                    study_id=row.id,
                    scheduled_for=seen,
                    status=FiringStatus.RUNNING.value,
                    claimed_by=owner,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["study_id", "scheduled_for"])
                .returning(StudyFiringRow.id)
            )
            firing_id = session.scalar(stmt)
            if firing_id is None:
                return None
            firing = session.get(StudyFiringRow, firing_id)
            assert firing is not None
            return firing_entity(firing)

    def acquire_study_lease(
        self,
        study_id: int,
        owner: str,
        *,
        now: datetime | None = None,
        lease_seconds: float = 300.0,
    ) -> bool:
        """Take or renew the study's lease; False when another owner holds an unexpired one."""
        check_str(owner, "owner", OWNER_LEN)
        now = utcnow() if now is None else check_aware(now, "now")
        lease = _lease(lease_seconds)
        study_id = check_id(study_id, "study_id")
        with self._session(write=True) as session:
            self._study_row(session, study_id)
            result = session.execute(
                update(StudyRow)
                .where(StudyRow.id == study_id, _lease_free(owner, now))
                .values(lease_owner=owner, lease_expires_at=now + lease, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def release_study_lease(self, study_id: int, owner: str) -> bool:
        """Give the lease up; False when ``owner`` did not hold it."""
        check_str(owner, "owner", OWNER_LEN)
        study_id = check_id(study_id, "study_id")
        with self._session(write=True) as session:
            self._study_row(session, study_id)
            result = session.execute(
                update(StudyRow)
                .where(StudyRow.id == study_id, StudyRow.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def _study_row(self, session: Session, study_id: int, *, lock: bool = False) -> StudyRow:
        row = session.get(StudyRow, study_id, with_for_update=lock or None)
        if row is None:
            raise NotFound(f"unknown study id {study_id}; list studies with list_studies()")
        return row
