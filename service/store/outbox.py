"""The MLflow outbox (what is still to be mirrored) and analysis reports.

Outbox life cycle: ``enqueue_outbox`` (or a metric write with ``mirror=True``) → a mirror
process ``claim_outbox``-es a few items, which leases them to it for ``lease_seconds``
(attempts += 1) → ``mark_outbox_done`` or ``mark_outbox_failed`` (retry later, or give up).
An item whose lease ran out unfinished is claimable again, so a crashed mirror loses
nothing; the mirror must therefore tolerate doing an item twice. Claims use
``FOR UPDATE SKIP LOCKED`` on PostgreSQL and a conditional ``UPDATE ... RETURNING`` on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update

from service.store.base import StoreBase, chunks
from service.store.entities import OutboxItem, Page, Report
from service.store.errors import InvalidInput, NotFound
from service.store.models import (
    DEDUPE_KEY_LEN,
    KIND_LEN,
    NAME_LEN,
    OWNER_LEN,
    PATH_LEN,
    OutboxRow,
    ReportRow,
    StudyFiringRow,
    SweepRow,
    utcnow,
)
from service.store.validation import (
    check_aware,
    check_finite,
    check_id,
    check_ids,
    check_json,
    check_limit,
    check_opt_str,
    check_str,
    clip_error,
    decode_cursor,
    encode_cursor,
)


def outbox_entity(row: OutboxRow) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        kind=row.kind,
        payload=row.payload,
        dedupe_key=row.dedupe_key,
        attempts=row.attempts,
        last_error=row.last_error,
        created_at=row.created_at,
        available_at=row.available_at,
        claimed_by=row.claimed_by,
        claimed_until=row.claimed_until,
        done=row.done,
        done_at=row.done_at,
    )


def report_entity(row: ReportRow) -> Report:
    return Report(
        id=row.id,
        kind=row.kind,
        sweep_id=row.sweep_id,
        firing_id=row.firing_id,
        title=row.title,
        content=row.content,
        path=row.path,
        created_at=row.created_at,
    )


def _claimable(now: datetime) -> ColumnElement[bool]:
    return (
        OutboxRow.done.is_(False)
        & (OutboxRow.available_at <= now)
        & or_(OutboxRow.claimed_until.is_(None), OutboxRow.claimed_until < now)
    )


def _seconds(value: float, field: str) -> timedelta:
    seconds = check_finite(value, field)
    if seconds < 0:
        raise InvalidInput(f"{field} must not be negative, got {seconds}")
    return timedelta(seconds=seconds)


class OutboxMixin(StoreBase):
    def enqueue_outbox(self, kind: str, payload: Any, *, dedupe_key: str | None = None) -> OutboxItem | None:
        """Add work for the mirror. With a ``dedupe_key`` that is already queued (done or
        not) nothing is added and None is returned."""
        check_str(kind, "kind", KIND_LEN)
        check_json(payload, "payload")
        check_opt_str(dedupe_key, "dedupe_key", DEDUPE_KEY_LEN)
        now = utcnow()
        values = {
            "kind": kind, "payload": payload, "dedupe_key": dedupe_key, "attempts": 0,
            "done": False, "created_at": now, "available_at": now,
        }  # fmt: skip
        with self._session(write=True) as session:
            stmt = self._insert(OutboxRow).values(**values)
            if dedupe_key is not None:
                stmt = stmt.on_conflict_do_nothing(index_elements=["dedupe_key"])
            item_id = session.scalar(stmt.returning(OutboxRow.id))
            if item_id is None:
                return None
            row = session.get(OutboxRow, item_id)
            assert row is not None
            return outbox_entity(row)

    def claim_outbox(
        self,
        owner: str,
        *,
        limit: int = 10,
        kinds: Sequence[str] | None = None,
        now: datetime | None = None,
        lease_seconds: float = 120.0,
    ) -> list[OutboxItem]:
        """Lease up to ``limit`` claimable items (oldest first) to ``owner``."""
        check_str(owner, "owner", OWNER_LEN)
        limit = check_limit(limit)
        now = utcnow() if now is None else check_aware(now, "now")
        lease = _seconds(lease_seconds, "lease_seconds")
        with self._session(write=True) as session:
            pick = select(OutboxRow.id).where(_claimable(now))
            if kinds is not None:
                pick = pick.where(OutboxRow.kind.in_([check_str(k, "kind", KIND_LEN) for k in kinds]))
            pick = pick.order_by(OutboxRow.id).limit(limit)
            if self.dialect == "postgresql":
                pick = pick.with_for_update(skip_locked=True)
            ids = list(session.scalars(pick))
            if not ids:
                return []
            stmt = (
                update(OutboxRow)
                .where(OutboxRow.id.in_(ids), _claimable(now))
                .values(
                    claimed_by=owner,
                    claimed_until=now + lease,
                    attempts=OutboxRow.attempts + 1,
                )
                .returning(OutboxRow)
                .execution_options(synchronize_session=False, populate_existing=True)
            )
            rows = list(session.scalars(stmt))
            return sorted((outbox_entity(r) for r in rows), key=lambda i: i.id)

    def mark_outbox_done(self, item_ids: Sequence[int], owner: str) -> int:
        """Mark items done; only those still leased to ``owner`` count. Returns how many."""
        ids = check_ids(item_ids, "item_ids")
        check_str(owner, "owner", OWNER_LEN)
        now = utcnow()
        done = 0
        with self._session(write=True) as session:
            for chunk in chunks(ids):
                result = session.execute(
                    update(OutboxRow)
                    .where(
                        OutboxRow.id.in_(chunk),
                        OutboxRow.claimed_by == owner,
                        OutboxRow.done.is_(False),
                    )
                    .values(done=True, done_at=now, claimed_until=None)
                    .execution_options(synchronize_session=False)
                )
                done += int(result.rowcount)  # type: ignore[attr-defined]
        return done

    def mark_outbox_failed(
        self,
        item_id: int,
        owner: str,
        error: str,
        *,
        retry_in_seconds: float | None = 30.0,
    ) -> OutboxItem:
        """Record a failed attempt: claimable again after ``retry_in_seconds``, or with
        ``None`` given up for good (done, with the error kept)."""
        item_id = check_id(item_id, "item_id")
        check_str(owner, "owner", OWNER_LEN)
        now = utcnow()
        values: dict[str, Any] = {"last_error": clip_error(error), "claimed_until": None}
        if retry_in_seconds is None:
            values.update(done=True, done_at=now)
        else:
            values["available_at"] = now + _seconds(retry_in_seconds, "retry_in_seconds")
        with self._session(write=True) as session:
            row = session.get(OutboxRow, item_id, with_for_update=True)
            if row is None:
                raise NotFound(f"unknown outbox item id {item_id}")
            if row.claimed_by != owner or row.done:
                raise InvalidInput(
                    f"outbox item {item_id} is not leased to {owner!r} (claimed by "
                    f"{row.claimed_by!r}, done={row.done}); claim it first"
                )
            for key, value in values.items():
                setattr(row, key, value)
            session.flush()
            return outbox_entity(row)

    def outbox_pending_count(self, kinds: Sequence[str] | None = None) -> int:
        """Items not done yet (claimed or not)."""
        stmt = select(func.count()).select_from(OutboxRow).where(OutboxRow.done.is_(False))
        if kinds is not None:
            stmt = stmt.where(OutboxRow.kind.in_(list(kinds)))
        with self._session() as session:
            return int(session.scalar(stmt) or 0)

    def list_outbox(
        self,
        *,
        done: bool | None = None,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[OutboxItem]:
        """Outbox items ordered by id."""
        limit = check_limit(limit)
        after = decode_cursor(cursor, 1)
        stmt = select(OutboxRow)
        if done is not None:
            stmt = stmt.where(OutboxRow.done.is_(bool(done)))
        if kind is not None:
            stmt = stmt.where(OutboxRow.kind == check_str(kind, "kind", KIND_LEN))
        if after is not None:
            stmt = stmt.where(OutboxRow.id > after[0])
        with self._session() as session:
            rows = list(session.scalars(stmt.order_by(OutboxRow.id).limit(limit + 1)))
        items = [outbox_entity(r) for r in rows[:limit]]
        return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)

    # -- reports -----------------------------------------------------------------------------

    def create_report(
        self,
        kind: str,
        *,
        sweep_id: int | None = None,
        firing_id: int | None = None,
        title: str | None = None,
        content: str | None = None,
        path: str | None = None,
    ) -> Report:
        """A report (HTML/markdown ``content`` and/or an artifact ``path``)."""
        check_str(kind, "kind", KIND_LEN)
        check_opt_str(title, "title", NAME_LEN)
        check_opt_str(path, "path", PATH_LEN)
        if content is not None and not isinstance(content, str):
            raise InvalidInput(f"content must be a string, got {type(content).__name__}")
        if content is None and path is None:
            raise InvalidInput("a report needs content or a path (or both)")
        with self._session(write=True) as session:
            if sweep_id is not None and session.get(SweepRow, check_id(sweep_id, "sweep_id")) is None:
                raise NotFound(f"unknown sweep id {sweep_id}")
            if firing_id is not None and (
                session.get(StudyFiringRow, check_id(firing_id, "firing_id")) is None
            ):
                raise NotFound(f"unknown study firing id {firing_id}")
            row = ReportRow(
                kind=kind, sweep_id=sweep_id, firing_id=firing_id, title=title,
                content=content, path=path,
            )  # fmt: skip
            session.add(row)
            session.flush()
            return report_entity(row)

    def get_report(self, report_id: int) -> Report:
        report_id = check_id(report_id, "report_id")
        with self._session() as session:
            row = session.get(ReportRow, report_id)
            if row is None:
                raise NotFound(f"unknown report id {report_id}")
            return report_entity(row)

    def list_reports(
        self,
        *,
        sweep_id: int | None = None,
        firing_id: int | None = None,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[Report]:
        """Reports, newest first."""
        limit = check_limit(limit)
        after = decode_cursor(cursor, 1)
        stmt = select(ReportRow)
        if sweep_id is not None:
            stmt = stmt.where(ReportRow.sweep_id == check_id(sweep_id, "sweep_id"))
        if firing_id is not None:
            stmt = stmt.where(ReportRow.firing_id == check_id(firing_id, "firing_id"))
        if kind is not None:
            stmt = stmt.where(ReportRow.kind == check_str(kind, "kind", KIND_LEN))
        if after is not None:
            stmt = stmt.where(ReportRow.id < after[0])
        with self._session() as session:
            rows = list(session.scalars(stmt.order_by(ReportRow.id.desc()).limit(limit + 1)))
        items = [report_entity(r) for r in rows[:limit]]
        return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)
