"""Cron times in a study's time zone (DST included) and the missed-firing policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from service.studies.schedule import (
    ScheduleError,
    latest_fire_time,
    next_fire_time,
    normalize_cron,
    plan_claim,
)

BERLIN = "Europe/Berlin"  # 2024: clocks jump 02:00 → 03:00 on 31 March, fall 03:00 → 02:00 on 27 October


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def walk(cron: str, timezone: str, start: datetime, n: int) -> list[datetime]:
    out, current = [], start
    for _ in range(n):
        current = next_fire_time(cron, timezone, current)
        out.append(current)
    return out


def test_plain_times_are_aware_utc_and_strictly_after() -> None:
    t = next_fire_time("*/15 * * * *", "UTC", utc(2024, 1, 1, 10, 0))
    assert t == utc(2024, 1, 1, 10, 15) and t.tzinfo is UTC
    assert next_fire_time("*/15 * * * *", "UTC", utc(2024, 1, 1, 10, 7, 30)) == utc(2024, 1, 1, 10, 15)
    assert next_fire_time("@daily", "UTC", utc(2024, 1, 1, 10)) == utc(2024, 1, 2)
    # an `after` in another zone is the same instant
    tokyo = utc(2024, 1, 1, 10).astimezone(ZoneInfo("Asia/Tokyo"))
    assert next_fire_time("0 * * * *", "UTC", tokyo) == utc(2024, 1, 1, 11)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire_time("0 * * * *", "UTC", datetime(2024, 1, 1))


def test_wall_clock_time_is_kept_across_dst() -> None:
    """09:00 Berlin is 08:00 UTC in winter and 07:00 UTC in summer."""
    assert walk("0 9 * * *", BERLIN, utc(2024, 3, 29, 12), 3) == [
        utc(2024, 3, 30, 8), utc(2024, 3, 31, 7), utc(2024, 4, 1, 7)]


def test_spring_forward_a_missing_time_fires_when_the_clock_jumps() -> None:
    # 02:30 does not exist on 31 March: fires at 03:30 CEST (01:30 UTC)
    assert walk("30 2 * * *", BERLIN, utc(2024, 3, 29, 12), 3) == [
        utc(2024, 3, 30, 1, 30), utc(2024, 3, 31, 1, 30), utc(2024, 4, 1, 0, 30)]
    # hourly: 02:00 would land on 03:00, which fires anyway: once
    assert walk("0 * * * *", BERLIN, utc(2024, 3, 30, 23, 30), 3) == [
        utc(2024, 3, 31, 0), utc(2024, 3, 31, 1), utc(2024, 3, 31, 2)]


def test_fall_back_a_fixed_time_fires_once_a_wildcard_hour_at_both() -> None:
    # 02:30 happens twice on 27 October: a daily study fires once, at the first (CEST) one
    assert walk("30 2 * * *", BERLIN, utc(2024, 10, 25, 12), 3) == [
        utc(2024, 10, 26, 0, 30), utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)]
    # an hourly study fires every hour, the repeated 02:00 included
    assert walk("0 * * * *", BERLIN, utc(2024, 10, 26, 23, 30), 4) == [
        utc(2024, 10, 27, 0), utc(2024, 10, 27, 1), utc(2024, 10, 27, 2), utc(2024, 10, 27, 3)]


@pytest.mark.parametrize(("cron", "message"), [
    ("* * * *", "has 4 fields"),
    ("0 0 * * * *", "has 6 fields"),
    ("61 * * * *", "not a valid cron"),
    ("0 0 31 2 *", "never fires"),
    ("R * * * *", "random"),
])
def test_bad_cron(cron: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        normalize_cron(cron)


def test_unknown_zone() -> None:
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Olympus'"):
        next_fire_time("0 * * * *", "Mars/Olympus", utc(2024, 1, 1))


def test_latest_fire_time_over_a_long_outage_is_quick() -> None:
    at = utc(2024, 6, 1, 12, 34, 56)
    assert latest_fire_time("* * * * *", "UTC", at, not_before=utc(2024, 1, 1)) == utc(2024, 6, 1, 12, 34)
    assert latest_fire_time("0 0 29 2 *", "UTC", at, not_before=utc(2020, 1, 1)) == utc(2024, 2, 29)
    assert latest_fire_time("0 0 29 2 *", "UTC", at, not_before=utc(2024, 3, 1)) is None


def test_a_late_tick_is_not_a_missed_firing() -> None:
    claim = plan_claim("*/5 * * * *", "UTC", utc(2024, 1, 1, 0, 0), utc(2024, 1, 1, 0, 4, 59), "skip")
    assert claim.fire and claim.following == utc(2024, 1, 1, 0, 5) and claim.note is None


def test_missed_catch_up_once_fires_once_for_the_latest_missed_time() -> None:
    # due at 00:00, service down until 00:17: 00:05, 00:10 and 00:15 passed too
    claim = plan_claim("*/5 * * * *", "UTC", utc(2024, 1, 1, 0, 0), utc(2024, 1, 1, 0, 17), "catch_up_once")
    assert not claim.fire and claim.following == utc(2024, 1, 1, 0, 15)
    assert claim.note is not None and "catch_up_once" in claim.note and "00:15" in claim.note
    # the scheduler's next claim of the study: 00:15 is now not missed, and fires
    again = plan_claim("*/5 * * * *", "UTC", claim.following, utc(2024, 1, 1, 0, 17), "catch_up_once")
    assert again.fire and again.following == utc(2024, 1, 1, 0, 20)


def test_missed_skip_carries_on_from_the_future() -> None:
    claim = plan_claim("*/5 * * * *", "UTC", utc(2024, 1, 1, 0, 0), utc(2024, 1, 1, 0, 17), "skip")
    assert not claim.fire and claim.following == utc(2024, 1, 1, 0, 20)
    assert claim.note is not None and "policy skip" in claim.note


def test_missed_daily_study_across_a_dst_change() -> None:
    # due 30 March 02:30 CET; down until 2 April 12:00 → the latest missed time is 2 April 02:30 CEST
    due = utc(2024, 3, 30, 1, 30)
    claim = plan_claim("30 2 * * *", BERLIN, due, utc(2024, 4, 2, 12), "catch_up_once")
    assert claim.following == utc(2024, 4, 2, 0, 30)
    skip = plan_claim("30 2 * * *", BERLIN, due, utc(2024, 4, 2, 12), "skip")
    assert skip.following == utc(2024, 4, 3, 0, 30)
    assert next_fire_time("30 2 * * *", BERLIN, due + timedelta(seconds=1)) == utc(2024, 3, 31, 1, 30)
