"""Creating and steering studies: what ``POST /studies`` and its siblings do, so routes stay
thin and tests can drive the same steps without HTTP.

    study = create_study(store, spec)          # next_fire_at from the cron, in the study's zone
    pause_study(store, study.id); resume_study(store, study.id)
    run_now(store, study.id)                   # due now: the next scheduler tick fires it
    report = firing_report(store, firing_id)   # the firing's comparison report
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from service.store import Conflict, FiringStatus, NotFound, Report, Store, Study, StudyFiring
from service.studies.schedule import next_fire_time
from service.studies.spec import FixedBaseline, StudySpec


class StudyFieldError(ValueError):
    """A study spec that is well-formed but names something that does not exist."""

    def __init__(self, loc: tuple[str, ...], msg: str) -> None:
        super().__init__(f"{'.'.join(loc)}: {msg}")
        self.loc = loc
        self.msg = msg


def _now(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else now


def create_study(
    store: Store, spec: StudySpec, *, now: datetime | None = None, paused: bool = False
) -> Study:
    """Record a study; it first fires at the cron's first time after ``now``. Raises
    :class:`Conflict` when the name is taken, :class:`StudyFieldError` for a fixed baseline
    that does not exist."""
    if isinstance(spec.baseline, FixedBaseline):
        _check_baseline(store, spec.baseline)
    first = next_fire_time(spec.schedule.cron, spec.schedule.timezone, _now(now))
    return store.create_study(spec.name, spec.model_dump(mode="json"), spec.schedule.cron,
                              spec.schedule.timezone, next_fire_at=first, paused=paused)


def _check_baseline(store: Store, baseline: FixedBaseline) -> None:
    try:
        if baseline.firing is not None:
            firing = store.get_firing(baseline.firing)
            if firing.sweep_id is None:
                raise StudyFieldError(("baseline", "firing"),
                                      f"firing {firing.id} has no sweep to compare against")
        elif baseline.sweep is not None:
            store.get_sweep(baseline.sweep)
    except NotFound as exc:
        field = "firing" if baseline.firing is not None else "sweep"
        raise StudyFieldError(("baseline", field), str(exc)) from None


def find_study(store: Store, name_or_id: str | int) -> Study:
    """A study by id (digits) or name."""
    text = str(name_or_id)
    if text.isdigit():
        return store.get_study(int(text))
    return store.get_study_by_name(text)


def study_named(store: Store, name: str) -> Study | None:
    """The study called ``name``, or None."""
    try:
        return store.get_study_by_name(name)
    except NotFound:
        return None


def pause_study(store: Store, study_id: int) -> Study:
    """No new firings until resumed; a firing already running finishes."""
    return store.update_study(study_id, paused=True)


def resume_study(store: Store, study_id: int, *, now: datetime | None = None) -> Study:
    """Fire again from the cron's next time: the times passed while paused are not missed
    firings (they do not fire on resume)."""
    study = store.get_study(study_id)
    if not study.paused:
        return study
    return store.update_study(study_id, paused=False,
                              next_fire_at=next_fire_time(study.cron, study.timezone, _now(now)))


def run_now(store: Store, study_id: int, *, now: datetime | None = None) -> Study:
    """Make the study due now: the scheduler's next tick fires it (then the cron goes on).
    A paused study is a :class:`Conflict` (resume it first)."""
    study = store.get_study(study_id)
    if study.paused:
        raise Conflict(f"study {study.name!r} is paused; resume it first (POST /studies/{study.id}/resume)")
    now = _now(now)
    if study.next_fire_at is not None and study.next_fire_at <= now:
        return study  # already due
    return store.update_study(study_id, next_fire_at=now)


def firing_report(store: Store, firing_id: int) -> Report:
    """The firing's report, or :class:`NotFound` saying why there is none yet."""
    firing = store.get_firing(firing_id)
    if firing.report_id is None:
        raise NotFound(f"study firing {firing_id} has no report: {_why_no_report(firing)}")
    return store.get_report(firing.report_id)


def _why_no_report(firing: StudyFiring) -> str:
    if firing.status in (FiringStatus.RUNNING, FiringStatus.ANALYSING):
        where = f"its sweep {firing.sweep_id} is" if firing.sweep_id else "it is"
        return f"{where} still {'being analysed' if firing.status == FiringStatus.ANALYSING else 'running'}"
    return f"it {firing.status}" + (f" ({firing.error})" if firing.error else "")


def iter_firings(
    store: Store, study_id: int | None = None, status: str | None = None
) -> Iterator[StudyFiring]:
    """Every firing (newest first), page by page."""
    cursor: str | None = None
    while True:
        page = store.list_firings(study_id, status=status, cursor=cursor, limit=500)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
