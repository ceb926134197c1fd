"""Test support for a real `mlflow server` subprocess, and a check that MLflow holds exactly
the store's metrics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from service.store import Store


class MlflowServer:
    """`mlflow server` on a free loopback port with a SQLite backend and a local artifact
    store; stop() and start() again keep the port and the data."""

    def __init__(self, root: Path) -> None:
        self.root = root
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> None:
        command = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root / 'm.db'}",
            "--artifacts-destination", str(self.root / "artifacts"),
        ]  # fmt: skip
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(
            command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        tail = (self.root / "server.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"mlflow server did not come up on {self.uri}:\n{tail}")

    def stop(self) -> None:
        if self.process is None:
            return
        try:  # the server's own process group: uvicorn and its worker
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


def check_metrics(store: Store, client: MlflowClient, sweep_id: int) -> None:
    heads = pd.DataFrame(store.read_head_metric_columns(sweep_id=sweep_id))
    heads["key"] = "L" + heads.layer.astype(str) + ".H" + heads["head"].astype(str) + "." + heads.metric
    scalars = pd.DataFrame(store.read_scalar_metric_columns(sweep_id=sweep_id)).rename(
        columns={"name": "key"}
    )
    rows = pd.concat(
        [heads[["variant_id", "key", "step", "value"]], scalars[["variant_id", "key", "step", "value"]]]
    )
    assert {"L1.H0.role", "L0.H0.specialization", "icl_score"} <= set(rows.key)
    for variant_id, of_variant in rows.groupby("variant_id"):
        run_id = store.get_variant(int(variant_id)).mlflow_run_id
        assert run_id is not None
        assert set(client.get_run(run_id).data.metrics) == set(of_variant.key)
        for key, expected in of_variant.groupby("key"):
            history = client.get_metric_history(run_id, str(key))
            got = sorted((m.step, m.value) for m in history)
            assert got == sorted(zip(expected.step.tolist(), expected.value.tolist(), strict=True)), key
