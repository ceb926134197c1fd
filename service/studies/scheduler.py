"""The study scheduler that runs inside ``headspec serve`` (any number of replicas).

Every ``scheduler_poll_seconds`` a replica runs one :meth:`Scheduler.tick`:

1. **claim** — every due study is claimed through ``Store.claim_due_firing``, which hands each
   (study, scheduled time) to exactly one replica (a compare-and-set on the study row plus a
   unique firing row; see ``service/store/studies.py``) and gives it the study's lease. The
   missed-firing policy (``schedule.plan_claim``) decides whether the claimed time fires or is
   recorded ``skipped``. A firing that fires gets its sweep, named ``<study>-firing-<id>``:
   recorded (``create_sweep``), then its id on the firing, then submitted to the launcher;
2. **advance** — every unfinished firing (``running`` or ``analysing``) of a study whose lease
   this replica holds or can take: its lease is renewed; a sweep whose driver is gone is
   submitted again; a finished sweep is compared with the baseline (the previous successful
   firing by default) through ``analysis.history.study_report``, and the report stored and
   set on the firing, which then ``succeeded``. A failed or cancelled sweep, or a comparison
   that raises, makes the firing ``failed`` with the reason;
3. **release** — the lease of every study this replica holds with nothing left to do.

All state is in the store, so a restarted service (or another replica) carries on where the
last one stopped: a replica that stops gives its leases back (another takes the firings over
at once), one that dies leaves them to expire after ``scheduler_lease_seconds``. Overlapping
firings of one study (a sweep that outlasts the period) are allowed; each compares against
the latest firing that had succeeded when it finished. With the embedded launcher a taken-over
sweep's driver is found only on the same host (its pid file); elsewhere the sweep is submitted
again and its new driver resumes it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from service.settings import Settings
from service.store import (
    FiringStatus,
    NotFound,
    Store,
    StoreError,
    Study,
    StudyFiring,
    Sweep,
    SweepStatus,
    VariantStatus,
)
from service.studies.manage import iter_firings
from service.studies.schedule import Claim, plan_claim
from service.studies.spec import FixedBaseline, StudySpec
from service.sweeps.launch import SweepLauncher
from service.sweeps.local import create_sweep

log = logging.getLogger(__name__)
REPORT_KIND = "study"
UNFINISHED = (FiringStatus.RUNNING, FiringStatus.ANALYSING)
_MAX_CLAIMS = 1000  # per tick: a bound, never reached by a sane schedule


def _utcnow() -> datetime:
    return datetime.now(UTC)


def sweep_name(study: Study, firing: StudyFiring) -> str:
    return f"{study.name}-firing-{firing.id}"


@dataclass
class TickResult:
    """What one tick did (firing ids)."""

    started: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    succeeded: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    resubmitted: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)  # study ids


class _Planner:
    """The ``next_fire_at`` callback of a claim: applies the study's missed-firing policy and
    remembers what it decided (a :class:`Claim`, or why the study cannot be scheduled)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.decided: dict[int, Claim | str] = {}

    def __call__(self, study: Study) -> datetime | None:
        assert study.next_fire_at is not None
        try:
            missed = (study.spec or {}).get("missed", "catch_up_once")
            claim = plan_claim(study.cron, study.timezone, study.next_fire_at, self.now, missed)
        except Exception as exc:  # noqa: BLE001 - recorded on the firing; the study stops firing
            self.decided[study.id] = (f"study {study.name!r} cannot be scheduled ({exc}); it stops firing "
                                      "until its schedule is fixed")
            return None
        self.decided[study.id] = claim
        return claim.following


class Scheduler:
    """Fires due studies and follows their firings to a report; see the module docstring.

    ``owner`` names this replica in leases and firings (default: host, pid and a random
    suffix); ``clock`` returns the current aware time (tests pass a fake one)."""

    def __init__(
        self,
        store: Store,
        launcher: SweepLauncher,
        settings: Settings,
        *,
        owner: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.launcher = launcher
        self.poll_seconds = settings.scheduler_poll_seconds
        self.lease_seconds = settings.scheduler_lease_seconds
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.clock = clock or _utcnow
        self._tick_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the loop ----------------------------------------------------------------------------

    def start(self) -> None:
        """Tick every ``scheduler_poll_seconds`` in a daemon thread until :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"headspec-scheduler-{self.owner}",
                                        daemon=True)
        self._thread.start()
        log.info("study scheduler %s started (every %.1f s)", self.owner, self.poll_seconds)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop ticking, then give this replica's study leases back so another replica (or
        the next start) takes its unfinished firings over at once. Their sweeps keep running."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("scheduler %s: a tick is still running; its leases will expire", self.owner)
                return
        try:
            for study in self._held_studies():
                self.store.release_study_lease(study.id, self.owner)
        except StoreError as exc:
            log.warning("scheduler %s could not give its leases back (they expire): %s", self.owner, exc)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:  # a store outage or a bug: log it, try again next poll
                log.exception("study scheduler tick failed; retrying in %.1f s", self.poll_seconds)
            self._stopping.wait(self.poll_seconds)

    def tick(self) -> TickResult:
        """One pass: claim due firings, advance unfinished ones, release idle leases."""
        with self._tick_lock:
            result = TickResult()
            now = self.clock()
            self._claim_due(now, result)
            self._advance(now, result)
            self._release_idle(result)
            return result

    # -- 1. claim ----------------------------------------------------------------------------

    def _claim_due(self, now: datetime, result: TickResult) -> None:
        for _ in range(_MAX_CLAIMS):
            planner = _Planner(now)
            firing = self.store.claim_due_firing(self.owner, planner, now=now,
                                                 lease_seconds=self.lease_seconds)
            if firing is None:
                if not planner.decided:
                    return  # nothing due (or every due study is leased to a live replica)
                continue  # another replica won that study: look for the next one
            decision = planner.decided[firing.study_id]
            if isinstance(decision, str):
                self.store.update_firing(firing.id, status=FiringStatus.FAILED, error=decision)
                result.failed.append(firing.id)
            elif not decision.fire:
                self.store.update_firing(firing.id, status=FiringStatus.SKIPPED, error=decision.note)
                result.skipped.append(firing.id)
                log.info("study %s: %s", firing.study_id, decision.note)
            else:
                try:
                    self._start(firing, result)
                except NotFound:  # the study was deleted right after the claim
                    continue

    def _start(self, firing: StudyFiring, result: TickResult) -> None:
        """Record the firing's sweep, set it on the firing, submit it."""
        study = self.store.get_study(firing.study_id)
        try:
            spec = StudySpec.model_validate(study.spec)
            sweep_spec = spec.sweep.model_copy(update={"name": sweep_name(study, firing)})
            sweep, _, _ = create_sweep(self.store, sweep_spec)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - an invalid stored spec fails the firing
            self._fail(firing, f"could not create the study's sweep: {exc}", result)
            return
        self.store.update_firing(firing.id, sweep_id=sweep.id)
        self._submit(firing, sweep.id)
        result.started.append(firing.id)
        log.info("study %s fired (firing %s, scheduled %s): sweep %s", study.name, firing.id,
                 firing.scheduled_for.isoformat(), sweep.id)

    def _submit(self, firing: StudyFiring, sweep_id: int) -> None:
        try:
            where = self.launcher.submit(sweep_id)
        except Exception as exc:  # noqa: BLE001 - the sweep stays pending; the next tick retries
            log.warning("firing %s: sweep %s could not be started (%s); retrying next tick",
                        firing.id, sweep_id, exc)
        else:
            log.info("firing %s: sweep %s driver %s", firing.id, sweep_id, where)

    # -- 2. advance --------------------------------------------------------------------------

    def _advance(self, now: datetime, result: TickResult) -> None:
        by_study: dict[int, list[StudyFiring]] = {}
        for status in UNFINISHED:
            for firing in iter_firings(self.store, status=status):
                by_study.setdefault(firing.study_id, []).append(firing)
        for study_id, firings in by_study.items():
            try:
                # holding (or taking over) the study's lease makes this replica the one that drives it
                if not self.store.acquire_study_lease(study_id, self.owner, now=now,
                                                      lease_seconds=self.lease_seconds):
                    continue
                for firing in sorted(firings, key=lambda f: f.scheduled_for):
                    self._drive_one(firing, result)
            except NotFound:  # the study was deleted meanwhile (its firings with it)
                continue

    def _drive_one(self, firing: StudyFiring, result: TickResult) -> None:
        try:
            self._drive(firing, result)
        except StoreError:
            raise  # NotFound included: the caller skips the study; an outage ends the tick
        except Exception:  # a launcher or analysis bug: leave the firing for the next tick
            log.exception("firing %s: could not advance it; trying again next tick", firing.id)

    def _drive(self, firing: StudyFiring, result: TickResult) -> None:
        if firing.sweep_id is None:
            self._adopt_or_start(firing, result)
            return
        sweep = self.store.get_sweep(firing.sweep_id)
        if sweep.status in (SweepStatus.PENDING, SweepStatus.RUNNING):
            if not self.launcher.is_running(sweep.id):
                sweep = self.store.get_sweep(sweep.id)  # it may have just finished
                if sweep.status in (SweepStatus.PENDING, SweepStatus.RUNNING):
                    log.info("firing %s: sweep %s has no driver; submitting it again", firing.id, sweep.id)
                    self._submit(firing, sweep.id)
                    result.resubmitted.append(firing.id)
            return
        if sweep.status == SweepStatus.SUCCEEDED:
            self._analyse(firing, sweep, result)
        elif sweep.status == SweepStatus.CANCELLED:
            self._fail(firing, f"sweep {sweep.id} was cancelled; no comparison was made", result)
        else:
            self._fail(firing, self._sweep_failure(sweep), result)

    def _adopt_or_start(self, firing: StudyFiring, result: TickResult) -> None:
        """A firing whose replica stopped before setting its sweep: adopt the sweep it may
        have recorded (found by its name), or start one."""
        study = self.store.get_study(firing.study_id)
        found = self.store.list_sweeps(name=sweep_name(study, firing), limit=1).items
        if not found:
            self._start(firing, result)
            return
        self.store.update_firing(firing.id, sweep_id=found[0].id)
        self._drive(self.store.get_firing(firing.id), result)

    def _sweep_failure(self, sweep: Sweep) -> str:
        counts = self.store.variant_status_counts(sweep.id)
        bad = sum(n for status, n in counts.items() if status != VariantStatus.SUCCEEDED)
        failed = self.store.list_variants(sweep.id, status=VariantStatus.FAILED, limit=1).items
        first = ""
        if failed and failed[0].last_error:
            lines = [line for line in failed[0].last_error.strip().splitlines() if line.strip()]
            first = f"; first error (variant {failed[0].id}): {lines[-1] if lines else ''}"
        return (f"sweep {sweep.id} failed: {bad} of {sum(counts.values())} variants did not succeed"
                f"{first}; no comparison was made")

    def _analyse(self, firing: StudyFiring, sweep: Sweep, result: TickResult) -> None:
        study = self.store.get_study(firing.study_id)
        if firing.status != FiringStatus.ANALYSING:
            self.store.update_firing(firing.id, status=FiringStatus.ANALYSING)
        try:
            spec = StudySpec.model_validate(study.spec)
            baseline, against = self._baseline(firing, spec)
            when = firing.scheduled_for.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
            title = f"{study.name}: firing {firing.id} ({when}) {against}"
            from analysis.history import study_report  # heavy (pandas, matplotlib): only when needed

            title, html = study_report(self.store, sweep.id, baseline, spec.by, spec.compare.metrics, title)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a metric the sweep never recorded
            self._fail(firing, f"comparison of sweep {sweep.id} failed: {exc}", result)
            return
        if not self._still_mine(firing):
            return
        existing = self.store.list_reports(firing_id=firing.id, kind=REPORT_KIND, limit=1).items
        report = existing[0] if existing else self.store.create_report(
            REPORT_KIND, sweep_id=sweep.id, firing_id=firing.id, title=title[:200], content=html)
        self.store.update_firing(firing.id, status=FiringStatus.SUCCEEDED, report_id=report.id)
        result.succeeded.append(firing.id)
        log.info("study %s: firing %s succeeded, report %s", study.name, firing.id, report.id)

    def _baseline(self, firing: StudyFiring, spec: StudySpec) -> tuple[int | None, str]:
        """The sweep to compare against (None: a first firing) and how the title says it."""
        if isinstance(spec.baseline, FixedBaseline):
            if spec.baseline.sweep is not None:
                sweep = self.store.get_sweep(spec.baseline.sweep)
                label = f"vs sweep {sweep.id}"
            else:
                assert spec.baseline.firing is not None
                fixed = self.store.get_firing(spec.baseline.firing)
                if fixed.sweep_id is None:
                    raise ValueError(f"the baseline firing {fixed.id} has no sweep")
                sweep = self.store.get_sweep(fixed.sweep_id)
                label = f"vs firing {fixed.id}"
            if sweep.status != SweepStatus.SUCCEEDED:
                raise ValueError(f"the baseline sweep {sweep.id} is {sweep.status}, not succeeded")
            return sweep.id, label
        previous = self.store.previous_firing(firing.id, status=FiringStatus.SUCCEEDED)
        if previous is None or previous.sweep_id is None:
            return None, "(first firing)"
        return previous.sweep_id, f"vs firing {previous.id}"

    def _fail(self, firing: StudyFiring, error: str, result: TickResult) -> None:
        if not self._still_mine(firing):
            return
        self.store.update_firing(firing.id, status=FiringStatus.FAILED, error=error)
        result.failed.append(firing.id)
        log.warning("firing %s failed: %s", firing.id, error)

    def _still_mine(self, firing: StudyFiring) -> bool:
        """Renew the lease before a final write; False (and nothing written) when another
        replica took the study over while this one was busy past its lease."""
        if self.store.acquire_study_lease(firing.study_id, self.owner, now=self.clock(),
                                          lease_seconds=self.lease_seconds):
            return True
        log.warning("firing %s: another replica took study %s over; leaving it", firing.id, firing.study_id)
        return False

    # -- 3. release --------------------------------------------------------------------------

    def _held_studies(self) -> list[Study]:
        held: list[Study] = []
        cursor: str | None = None
        while True:
            page = self.store.list_studies(cursor=cursor, limit=500)
            held.extend(s for s in page.items if s.lease_owner == self.owner)
            if page.next_cursor is None:
                return held
            cursor = page.next_cursor

    def _release_idle(self, result: TickResult) -> None:
        for study in self._held_studies():
            if not any(self.store.list_firings(study.id, status=s, limit=1).items for s in UNFINISHED):
                try:
                    if self.store.release_study_lease(study.id, self.owner):
                        result.released.append(study.id)
                except NotFound:  # deleted meanwhile
                    pass
