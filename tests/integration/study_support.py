"""Helpers of the study scheduler tests, and a scheduler replica to run as its own process.

    clock = FakeClock(T0)                              # the scheduler's injected clock
    launcher = InstantLauncher(store)                  # sweeps end at once, no training
    study = add_study(store, "s", cron="* * * * *", now=T0 - SECOND)

As a process (the two-process claim test): ``python -m tests.integration.study_support URL
OWNER CLOCK_FILE ACK_FILE`` ticks one :class:`Scheduler` at fake minute ``k`` each time the
test writes ``k`` into CLOCK_FILE, acknowledges it in ACK_FILE with the firings it started,
and exits when CLOCK_FILE says ``stop``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from service.settings import Settings
from service.store import Store, Study, SweepStatus
from service.studies.manage import create_study
from service.studies.scheduler import Scheduler
from service.studies.spec import StudySpec
from tests.integration.specs import tiny_spec

T0 = datetime(2030, 1, 1, 3, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class InstantLauncher:
    """A :class:`SweepLauncher` whose sweeps end as soon as they are submitted — recorded
    ``cancelled`` in the store, nothing trained — so a claim test runs the scheduler's whole
    loop (claim, submit, follow, finish, release) in milliseconds."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.submitted: list[int] = []

    def submit(self, sweep_id: int) -> str:
        self.submitted.append(sweep_id)
        self.store.set_sweep_status(sweep_id, SweepStatus.CANCELLED, mirror=False)
        return "instantly"

    def is_running(self, sweep_id: int) -> bool:
        return False

    def stop(self, sweep_id: int, timeout: float = 30.0) -> None:
        pass


def scheduler_settings(**fields: Any) -> Settings:
    return Settings(**{"scheduler_poll_seconds": 0.1, "scheduler_lease_seconds": 300.0, **fields})


def study_spec(name: str, *, cron: str = "* * * * *", missed: str = "catch_up_once",
               **fields: Any) -> StudySpec:
    sweep = tiny_spec(f"{name}-sweep", factors={"model.n_layers": [1, 2]}, seeds=2)
    return StudySpec.model_validate({
        "name": name, "schedule": {"cron": cron, "timezone": "UTC"}, "sweep": sweep,
        "compare": {"by": ["model.n_layers"]}, "missed": missed, **fields,
    })


def add_study(store: Store, name: str, *, now: datetime, **fields: Any) -> Study:
    return create_study(store, study_spec(name, **fields), now=now)


def _replica(url: str, owner: str, clock_file: Path, ack_file: Path) -> None:
    store = Store.open(url, pool_size=2, max_overflow=2)
    clock = FakeClock(T0)
    scheduler = Scheduler(store, InstantLauncher(store), scheduler_settings(), owner=owner, clock=clock)
    started: list[int] = []
    done = -1
    while True:
        text = clock_file.read_text().strip() if clock_file.exists() else ""
        if text == "stop":
            break
        if text and int(text) > done:
            done = int(text)
            clock.now = T0 + done * MINUTE
            result = scheduler.tick()
            started.extend(result.started)
            tmp = ack_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"minute": done, "started": started}))
            os.replace(tmp, ack_file)
        time.sleep(0.005)
    store.close()


if __name__ == "__main__":
    _replica(sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
