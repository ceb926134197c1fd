"""A real `headspec serve` (uvicorn) on loopback for the API tests, in a subprocess.

    server = ApiServer(database_url, tmp_path).start()
    client = server.client(token)            # httpx.Client on the server's URL
    server.stop()                            # SIGTERM; server.log() is everything it printed

The server runs embedded drivers in their own process without Ray (``driver_local``), keeps
its artifacts (driver pid files and logs) under ``<workdir>/artifacts`` and mirrors to an
MLflow store of its own in ``workdir``. ``finish_drivers(workdir)`` waits for (then kills) any
driver still running, so no test leaves one writing into the next test's database.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.auth import issue_token
from service.store import Store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 120.0, what: str = "condition",
               every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def make_token(database_url: str, name: str = "tester") -> str:
    with Store.open(database_url, pool_size=1, max_overflow=0) as store:
        token, _ = issue_token(store, name)
    return token


class ApiServer:
    def __init__(self, database_url: str, workdir: Path, *, auth: bool = True, read_open: bool = False,
                 env: dict[str, str] | None = None) -> None:
        self.database_url = database_url
        self.workdir = Path(workdir)
        self.artifacts = self.workdir / "artifacts"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / f"serve-{self.port}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith("HEADSPEC_")}
        self.env = {
            **base,
            "HEADSPEC_DATABASE_URL": database_url,
            "HEADSPEC_ARTIFACT_DIR": str(self.artifacts),
            "HEADSPEC_MLFLOW_TRACKING_URI": f"sqlite:///{self.workdir / 'mlflow.db'}",
            "HEADSPEC_DRIVER_LOCAL": "true",
            "HEADSPEC_SCHEDULER_ENABLED": "false",
            "HEADSPEC_API_AUTH": "true" if auth else "false",
            "HEADSPEC_API_READ_OPEN": "true" if read_open else "false",
            "HEADSPEC_DATABASE_POOL_SIZE": "4",
            "HEADSPEC_DATABASE_MAX_OVERFLOW": "4",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ApiServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(cmd, cwd=self.workdir, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"headspec serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop(signal.SIGKILL)
        raise AssertionError(f"headspec serve did not answer within {timeout:.0f} s:\n{self.log()}")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        code = self.process.returncode
        self.process = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)


def driver_pid(artifacts: Path, sweep_id: int) -> int | None:
    try:
        return int(json.loads((artifacts / "drivers" / f"sweep-{sweep_id}.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def finish_drivers(workdir: Path, timeout: float = 90.0) -> None:
    """Wait for every driver the test's servers started to exit; kill those that do not."""
    records = list((Path(workdir) / "artifacts" / "drivers").glob("sweep-*.json"))
    pids = [int(json.loads(p.read_text())["pid"]) for p in records]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.3)
    for pid in pids:
        if pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)  # the driver leads its own process group
            except ProcessLookupError:
                pass


def driver_log(workdir: Path, sweep_id: int) -> str:
    path = Path(workdir) / "artifacts" / "drivers" / f"sweep-{sweep_id}.log"
    return path.read_text(errors="replace")[-4000:] if path.exists() else "(no driver log)"


@pytest.fixture
def serve(database_url: str, tmp_path: Path) -> Iterator[Callable[..., ApiServer]]:
    """``serve(**ApiServer options)`` starts a server on the test's database (SQLite and
    PostgreSQL); every one is stopped, and every driver finished, at the end of the test."""
    servers: list[ApiServer] = []

    def start(**options: Any) -> ApiServer:
        server = ApiServer(database_url, tmp_path / "service", **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    finish_drivers(tmp_path / "service")


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``client_env(url, token)`` points the CLI's client settings at a server (token None:
    no token in the environment)."""
    from service.settings import get_settings

    def set_env(url: str, token: str | None) -> None:
        monkeypatch.setenv("HEADSPEC_SERVICE_URL", url)
        if token is None:
            monkeypatch.delenv("HEADSPEC_API_TOKEN", raising=False)
        else:
            monkeypatch.setenv("HEADSPEC_API_TOKEN", token)
        get_settings.cache_clear()

    yield set_env
    get_settings.cache_clear()


def run_cli(*args: str) -> tuple[int, str, str]:
    """``headspec ARGS`` in this process: (exit code, stdout, stderr)."""
    from typer.testing import CliRunner

    from service.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr

