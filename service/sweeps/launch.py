"""Submission: who runs a recorded sweep's driver (``headspec driver SWEEP_ID``).

The sweep, its variants and their status live in the store; a launcher only starts, finds
and stops the driver process that runs the sweep's unfinished packs. Two launchers:

* :class:`EmbeddedLauncher` — the driver is a child process of ``headspec serve`` on this
  machine (in its own session, so it outlives a restart of the service). Its pid is kept in
  ``<artifact_dir>/drivers/sweep-<id>.json`` so a restarted service finds it again.
* :class:`RayJobLauncher` — the driver is a Ray Job on a cluster, submitted through Ray's
  ``JobSubmissionClient`` with the deterministic submission id ``headspec-sweep-<id>-<n>``,
  so a restarted service asks Ray about the job instead of submitting it twice.

``reconcile`` (run when the service starts) looks at every sweep the store says is pending
or running: a live driver is adopted; a sweep without one is submitted again, and its new
driver resumes where the old one stopped (succeeded packs are skipped, the others resume
from their checkpoints, and the store's idempotent writes absorb repeated steps).
This module and ``workers.ray_exec`` are the only ones that import ``ray``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from service.settings import Settings
from service.store import Store, SweepStatus

log = logging.getLogger(__name__)
ACTIVE = (SweepStatus.PENDING, SweepStatus.RUNNING)


class SweepLauncher(Protocol):
    def submit(self, sweep_id: int) -> str:
        """Start the sweep's driver; returns a description of where it runs."""
        ...

    def is_running(self, sweep_id: int) -> bool:
        """Whether a driver of this sweep is alive."""
        ...

    def stop(self, sweep_id: int, timeout: float = 30.0) -> None:
        """Stop the sweep's driver (it records its unfinished variants as cancelled)."""
        ...


# settings a driver started elsewhere (a Ray Job) needs from the service that submits it
JOB_SETTINGS = ("mlflow_tracking_uri", "artifact_dir", "writers", "checkpoint_every", "database_pool_size",
                "database_max_overflow")


def job_env(settings: Settings) -> dict[str, str]:
    """``HEADSPEC_*`` variables carrying :data:`JOB_SETTINGS` (never tokens)."""
    return {f"HEADSPEC_{name.upper()}": str(getattr(settings, name)) for name in JOB_SETTINGS}


def driver_command(sweep_id: int, *, local: bool) -> list[str]:
    cmd = [sys.executable, "-m", "service.cli", "driver", str(sweep_id)]
    return cmd + ["--local"] if local else cmd


@dataclass
class EmbeddedLauncher:
    """Drivers as child processes on this machine (``local``: packs in the driver's own
    process, no Ray; otherwise each driver starts a local Ray or joins ``RAY_ADDRESS``)."""

    database_url: str
    artifact_dir: str | Path
    local: bool = False

    def __post_init__(self) -> None:
        self.dir = Path(self.artifact_dir).resolve() / "drivers"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def submit(self, sweep_id: int) -> str:
        if self.is_running(sweep_id):
            record = self._record(sweep_id) or {}
            return f"pid {record.get('pid', '?')} (already running)"
        env = {**os.environ, "HEADSPEC_DATABASE_URL": self.database_url}
        with open(self.dir / f"sweep-{sweep_id}.log", "ab") as out:
            proc = subprocess.Popen(driver_command(sweep_id, local=self.local), env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self._children[sweep_id] = proc
        self._pid_file(sweep_id).write_text(json.dumps(
            {"pid": proc.pid, "host": socket.gethostname(), "started": time.time()}))
        return f"pid {proc.pid} on {socket.gethostname()}"

    def is_running(self, sweep_id: int) -> bool:
        proc = self._children.get(sweep_id)
        if proc is not None:
            return proc.poll() is None  # poll() also reaps a finished child
        record = self._record(sweep_id)
        if record is None or record.get("host") != socket.gethostname():
            return False
        return _is_driver(int(record["pid"]), sweep_id)

    def stop(self, sweep_id: int, timeout: float = 30.0) -> None:
        record = self._record(sweep_id)
        if record is None or not self.is_running(sweep_id):
            return
        pid = int(record["pid"])
        _signal_group(pid, signal.SIGINT)  # KeyboardInterrupt: the driver cancels its variants
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.is_running(sweep_id):
            time.sleep(0.2)
        if self.is_running(sweep_id):
            _signal_group(pid, signal.SIGKILL)
            proc = self._children.get(sweep_id)
            if proc is not None:
                proc.wait(timeout=10)

    def _pid_file(self, sweep_id: int) -> Path:
        return self.dir / f"sweep-{sweep_id}.json"

    def _record(self, sweep_id: int) -> dict | None:
        try:
            return json.loads(self._pid_file(sweep_id).read_text())
        except (OSError, ValueError):
            return None


def _is_driver(pid: int, sweep_id: int) -> bool:
    """Whether ``pid`` is alive and is this sweep's driver (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        state = "?"
    return state != "Z" and b"driver" in cmdline and str(sweep_id).encode() in cmdline


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


class RayJobLauncher:
    """Drivers as Ray Jobs on a cluster (``address``: its dashboard, http://head:8265).

    The job's environment carries the store URL; the store and the artifact directory must
    be reachable from the cluster's nodes, and headspec installed there (deploy/ does both).
    """

    def __init__(self, address: str, database_url: str, *, env: dict[str, str] | None = None) -> None:
        from ray.job_submission import JobSubmissionClient

        self.client = JobSubmissionClient(address)
        self.database_url = database_url
        self.env = dict(env or {})

    def submit(self, sweep_id: int) -> str:
        jobs = self._jobs(sweep_id)
        live = [j for j in jobs if not _terminal(j.status)]
        if live:
            return f"ray job {live[0].submission_id} (already running)"
        submission_id = f"headspec-sweep-{sweep_id}-{len(jobs) + 1}"
        self.client.submit_job(
            entrypoint=f"headspec driver {sweep_id}",
            submission_id=submission_id,
            runtime_env={"env_vars": {**self.env, "HEADSPEC_DATABASE_URL": self.database_url}},
            metadata={"headspec_sweep": str(sweep_id)},
        )
        return f"ray job {submission_id}"

    def is_running(self, sweep_id: int) -> bool:
        return any(not _terminal(j.status) for j in self._jobs(sweep_id))

    def stop(self, sweep_id: int, timeout: float = 30.0) -> None:
        for job in self._jobs(sweep_id):
            if not _terminal(job.status):
                self.client.stop_job(job.submission_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.is_running(sweep_id):
            time.sleep(0.5)

    def _jobs(self, sweep_id: int) -> list:  # type: ignore[type-arg]
        prefix = f"headspec-sweep-{sweep_id}-"
        return [j for j in self.client.list_jobs() if (j.submission_id or "").startswith(prefix)]


def _terminal(status: object) -> bool:
    return str(getattr(status, "value", status)) in ("STOPPED", "SUCCEEDED", "FAILED")


def active_sweeps(store: Store) -> Iterator[int]:
    for status in ACTIVE:
        cursor: str | None = None
        while True:
            page = store.list_sweeps(status=status, cursor=cursor, limit=500)
            yield from (s.id for s in page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor


def reconcile(store: Store, launcher: SweepLauncher) -> dict[int, str]:
    """After a (re)start: adopt each active sweep's live driver, resubmit the others."""
    out: dict[int, str] = {}
    for sweep_id in list(active_sweeps(store)):
        if launcher.is_running(sweep_id):
            out[sweep_id] = "adopted"
        else:
            out[sweep_id] = "resubmitted: " + launcher.submit(sweep_id)
        log.info("sweep %s: %s", sweep_id, out[sweep_id])
    return out
