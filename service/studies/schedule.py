"""When a study fires: cron times in the study's own time zone, and the missed-firing policy.

Cron expressions are the standard five fields (``minute hour day-of-month month day-of-week``)
or one of ``@hourly @daily @midnight @weekly @monthly @yearly``. They are matched against the
**wall clock of the study's IANA time zone**, so ``0 9 * * *`` in ``Europe/Berlin`` fires at
09:00 Berlin time in summer and in winter (07:00 and 08:00 UTC). Every time returned is an
aware UTC datetime. Around daylight-saving changes (the rules of cronie's ``cron``):

* a wall time that does not exist (clocks jump 02:00 → 03:00) fires when the clock jumps: a
  daily ``30 2 * * *`` fires at 03:30 that night; a time that then coincides with another
  firing (hourly ``0 * * * *``: 02:00 → 03:00) fires once;
* a wall time that occurs twice (clocks fall back 03:00 → 02:00) fires once, at its first
  occurrence, when the expression names a fixed minute and hour (``30 2 * * *``); with a ``*``
  in the minute or hour field (``0 * * * *``, ``*/15 * * * *``) it fires at both, so an hourly
  study still fires every hour.

Missed firings (:func:`plan_claim`). A study is *missed* when the scheduler finds its
``next_fire_at`` more than one period in the past, i.e. the cron time after it has also
passed — no scheduler ran for a while (every replica was down), or a tick took longer than
the study's period. What happens then is the study's ``missed`` policy:

* ``catch_up_once`` (the default): fire once, for the most recent missed time, then carry
  on from the first time in the future. The older missed times do not fire;
* ``skip``: do not fire for any missed time; carry on from the first time in the future.

Either way the oldest missed time is recorded as a firing with status ``skipped`` and an
error that says which times were missed, so a gap in the history is visible. A study that
is merely late (its next time has not come yet, e.g. a poll that came a few seconds after
its time) is not missed: it fires normally.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# DST changes move the wall clock by at most 2 h anywhere (Antarctica/Troll); this margin
# around a change covers every instant whose order the change can disturb
_MARGIN = timedelta(hours=6)
_MAX_STEPS = 100_000
_RANDOM = re.compile(r"(?<![A-Za-z])[RrHh](?![A-Za-z])")


class MissedPolicy(StrEnum):
    CATCH_UP_ONCE = "catch_up_once"
    SKIP = "skip"


class ScheduleError(ValueError):
    """A cron expression or time zone that cannot be used; the message says why."""


def normalize_cron(cron: str) -> str:
    """The five-field form of ``cron`` (aliases expanded, whitespace collapsed), or
    :class:`ScheduleError` when it is not a valid expression that ever fires."""
    if not isinstance(cron, str):
        raise ScheduleError(f"a cron expression is a string, got {type(cron).__name__}")
    text = " ".join(cron.split())
    text = ALIASES.get(text.lower(), text)
    fields = text.split(" ")
    if len(fields) != 5:
        raise ScheduleError(
            f"cron {cron!r} has {len(fields)} fields; use five (minute hour day-of-month month "
            "day-of-week), e.g. '0 3 * * *' for 03:00 every day, or @hourly/@daily/@weekly"
        )
    if _RANDOM.search(text):
        raise ScheduleError(f"cron {cron!r}: random (R) and hashed (H) fields are not supported; every "
                            "replica must compute the same times")
    if not croniter.is_valid(text):
        raise ScheduleError(f"cron {cron!r} is not a valid cron expression, e.g. '*/15 * * * *'")
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except (CroniterBadDateError, CroniterBadCronError):
        raise ScheduleError(f"cron {cron!r} never fires (no date matches it)") from None
    return text


def zone(timezone: str) -> ZoneInfo:
    """The IANA zone ``timezone``, or :class:`ScheduleError`."""
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleError(
            f"unknown time zone {timezone!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from None


def next_fire_time(cron: str, timezone: str, after: datetime) -> datetime:
    """The first firing time strictly after ``after`` (aware), as an aware UTC datetime."""
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError(f"after must be timezone-aware, got naive {after.isoformat()}")
    return _next(normalize_cron(cron), zone(timezone), after.astimezone(UTC))


def latest_fire_time(cron: str, timezone: str, at: datetime, *, not_before: datetime) -> datetime | None:
    """The last firing time at or before ``at`` and not before ``not_before``, or None."""
    text, tz = normalize_cron(cron), zone(timezone)
    at, not_before = at.astimezone(UTC), not_before.astimezone(UTC)
    # look back over growing windows, so a dense schedule never walks a long outage minute by minute
    for back in (timedelta(hours=2), timedelta(days=2), timedelta(days=40), timedelta(days=400), None):
        start = not_before if back is None or at - back < not_before else at - back
        latest = None
        current = start - timedelta(microseconds=1)
        for _ in range(_MAX_STEPS):
            following = _next(text, tz, current)
            if following > at:
                break
            latest = current = following
        if latest is not None or back is None or at - back <= not_before:
            return latest
    return None


@dataclass(frozen=True)
class Claim:
    """What to do with a due study whose ``next_fire_at`` is ``scheduled``.

    ``fire``: run a firing for ``scheduled`` (else record it ``skipped`` with ``note``);
    ``following``: the study's next ``next_fire_at``."""

    fire: bool
    following: datetime
    note: str | None = None


def plan_claim(cron: str, timezone: str, scheduled: datetime, now: datetime, missed: str) -> Claim:
    """The missed-firing policy (see the module docstring) for a study due at ``scheduled``."""
    text, tz = normalize_cron(cron), zone(timezone)
    scheduled, now = scheduled.astimezone(UTC), now.astimezone(UTC)
    after = _next(text, tz, scheduled)
    if after > now:
        return Claim(fire=True, following=after)
    policy = MissedPolicy(missed)
    latest = latest_fire_time(text, timezone, now, not_before=after) or after
    upcoming = _next(text, tz, now)
    window = f"{_iso(scheduled)}" + (f" to {_iso(latest)}" if latest > scheduled else "")
    if policy is MissedPolicy.CATCH_UP_ONCE:
        note = (f"missed: no scheduler fired the times from {window}; policy catch_up_once fires "
                f"once, for {_iso(latest)}")
        return Claim(fire=False, following=latest, note=note)
    note = (f"missed: no scheduler fired the times from {window}; policy skip: next firing at "
            f"{_iso(upcoming)}")
    return Claim(fire=False, following=upcoming, note=note)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- the wall-clock arithmetic ---------------------------------------------------------------


def _wall(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


def _steady(tz: ZoneInfo, moment: datetime) -> bool:
    """No UTC offset change within the margin around ``moment``."""
    return (moment - _MARGIN).astimezone(tz).utcoffset() == (moment + _MARGIN).astimezone(tz).utcoffset()


@lru_cache(maxsize=256)
def _repeats_folds(cron: str) -> bool:
    minute, hour = cron.split(" ")[:2]
    return "*" in minute or "*" in hour


def _instants(wall: datetime, tz: ZoneInfo, repeat: bool) -> list[datetime]:
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    if _wall(first, tz) != wall:  # does not exist: fold 0 reads it with the offset before the jump
        return [first]
    return [first, second] if repeat else [first]  # occurs twice


def _next(cron: str, tz: ZoneInfo, after: datetime) -> datetime:
    if _steady(tz, after):
        try:
            wall = croniter(cron, _wall(after, tz)).get_next(datetime)
        except CroniterBadDateError:
            raise ScheduleError(f"cron {cron!r} never fires after {after.isoformat()}") from None
        candidate = wall.replace(tzinfo=tz).astimezone(UTC)
        if candidate > after and _steady(tz, candidate):
            return candidate
    return _next_near_change(cron, tz, after)


def _next_near_change(cron: str, tz: ZoneInfo, after: datetime) -> datetime:
    """Near a DST change wall times and instants are not in the same order: walk every
    matching wall time from a margin before ``after`` and keep the earliest instant after it."""
    repeat = _repeats_folds(cron)
    times = croniter(cron, _wall(after - _MARGIN, tz))
    best: datetime | None = None
    for _ in range(_MAX_STEPS):
        try:
            wall = times.get_next(datetime)
        except CroniterBadDateError:
            break
        instants = _instants(wall, tz, repeat)
        if best is not None and instants[0] - _MARGIN > best:
            break
        for instant in instants:
            if instant > after and (best is None or instant < best):
                best = instant
    if best is None:
        raise ScheduleError(f"cron {cron!r} never fires after {after.isoformat()}")
    return best
