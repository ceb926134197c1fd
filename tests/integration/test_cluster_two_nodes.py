"""A real two-node Ray cluster on this machine (`ray start --head`, then a second `ray start
--address=...` node with its own name), `headspec serve` pointed at it with the Ray Jobs
launcher, a sweep submitted over HTTP: packs run on both nodes, every metric lands in
PostgreSQL and in an `mlflow server`; and with the worker node killed mid-sweep the sweep still
completes on the head, with exact row counts.

Each node has one CPU and each pack asks for one, so two packs run one per node. The node a
pack ran on is the ``HEADSPEC_NODE_NAME`` its `ray start` had (workers inherit it). Ray's
node health check is shortened so a killed node is declared dead in seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from service.store import Store
from service.store.schema import upgrade
from tests.integration.api_support import ApiServer, free_port, make_token, wait_until
from tests.integration.mlflow_support import MlflowServer, check_metrics

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")
STEPS, PROBE_EVERY = 40, 10
N_PROBES = STEPS // PROBE_EVERY + 1


def _spec(name: str, steps: int = STEPS) -> dict:
    return {
        "name": name,
        "base": {
            "model": {"n_layers": 2, "n_heads": 2, "d_model": 16, "vocab_size": 40, "n_ctx": 17,
                      "attn_only": True},
            "data": {"families": {"repeated": 1.0}},
            "train": {"steps": steps, "batch_size": 4, "probe_every": PROBE_EVERY, "warmup_steps": 1,
                      "probe_batch_size": 4},
        },
        "factors": {"model.n_heads": [1, 2]},  # two packs
        "seeds": 2,
        "resources": {"cpus": 1, "max_retries": 3},
    }


class Cluster:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port, self.dashboard = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith(("HEADSPEC_", "RAY_"))},
                    "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
                    "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
                    "RAY_health_check_initial_delay_ms": "1000", "OMP_NUM_THREADS": "1",
                    # a throwaway cluster on loopback: no token auth, nodes on 127.0.0.1
                    "RAY_AUTH_MODE": "disabled"}
        self.worker: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        subprocess.run([RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}",
                        "--num-cpus=1",
                        "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                        f"--dashboard-port={self.dashboard}", "--disable-usage-stats"],
                       env={**self.env, "HEADSPEC_NODE_NAME": "head"}, check=True, capture_output=True)
        log = open(self.workdir / "worker-node.log", "wb")  # noqa: SIM115 (kept open for the node)
        self.worker = subprocess.Popen(
            [RAY, "start", "--node-ip-address=127.0.0.1", f"--address={self.address}", "--num-cpus=1",
             "--block", "--disable-usage-stats"],
            env={**self.env, "HEADSPEC_NODE_NAME": "worker"}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        wait_until(lambda: self.alive_nodes() == 2, timeout=120, what="two live Ray nodes", every=2)

    def alive_nodes(self) -> int:
        code = (f"import ray; ray.init(address='{self.address}', logging_level='ERROR'); "
                "print(sum(n['Alive'] for n in ray.nodes()))")
        out = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True)
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0

    def kill_worker(self) -> None:
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=30)

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.kill_worker()
        subprocess.run([RAY, "stop", "--force"], env=self.env, capture_output=True)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def postgres_url(new_postgres_database) -> str:  # type: ignore[no-untyped-def]
    url: str = new_postgres_database()
    upgrade(url)
    return url


def _serve(cluster: Cluster, url: str, tmp_path: Path, mlflow: MlflowServer) -> ApiServer:
    return ApiServer(url, tmp_path / "service", env={
        "HEADSPEC_LAUNCHER": "ray-jobs",
        "HEADSPEC_RAY_DASHBOARD_ADDRESS": f"http://127.0.0.1:{cluster.dashboard}",
        "HEADSPEC_MLFLOW_TRACKING_URI": mlflow.uri,
        "HEADSPEC_DRIVER_LOCAL": "false",
        "HEADSPEC_CHECKPOINT_EVERY": "10",
        "PATH": cluster.env["PATH"],
        "RAY_AUTH_MODE": "disabled",
    }).start()


def _submit(server: ApiServer, token: str, spec: dict) -> int:
    with server.client(token) as http:
        response = http.post("/sweeps", json={"spec": spec})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])


def _wait_done(server: ApiServer, token: str, sweep_id: int, timeout: float = 400) -> dict:
    def done() -> dict | None:
        with server.client(token) as http:
            body = http.get(f"/sweeps/{sweep_id}").json()
        return body if body["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_until(done, timeout=timeout, what=f"sweep {sweep_id} to finish", every=2)


def _mirrored(url: str) -> None:
    """The driver mirrors to MLflow after it records the sweep's end: wait for the outbox."""
    with Store.open(url) as store:
        wait_until(lambda: store.outbox_pending_count() == 0, timeout=180, what="the MLflow mirror", every=1)


def _check_rows(store: Store, sweep_id: int, steps: int) -> None:
    heads = pd.DataFrame(store.read_head_metric_columns(sweep_id=sweep_id))
    for v in store.list_variants(sweep_id).items:
        rows = heads[heads.variant_id == v.id]
        per_metric = rows.groupby("metric").size()
        n_probes = steps // PROBE_EVERY + 1
        expected = n_probes * 2 * v.config["model"]["n_heads"]
        # role/specialization and the pattern metrics at every probe; nothing missing or doubled
        assert (per_metric[per_metric.index != "importance"] <= expected).all()
        assert per_metric["entropy"] == expected and per_metric["induction"] == expected, per_metric
        assert not rows.duplicated(["step", "layer", "head", "metric"]).any()


def test_a_sweep_submitted_over_http_runs_on_both_nodes(cluster: Cluster, postgres_url: str, tmp_path: Path,
                                                        mlflow_server: MlflowServer) -> None:
    token = make_token(postgres_url)
    server = _serve(cluster, postgres_url, tmp_path, mlflow_server)
    try:
        sweep_id = _submit(server, token, _spec("two-nodes"))
        body = _wait_done(server, token, sweep_id)
        assert body["status"] == "succeeded", server.log()[-3000:]
        _mirrored(postgres_url)
    finally:
        server.stop()
    with Store.open(postgres_url) as store:
        variants = store.list_variants(sweep_id).items
        assert {v.node for v in variants} == {"head", "worker"}
        assert all(v.status == "succeeded" for v in variants)
        _check_rows(store, sweep_id, STEPS)
        check_metrics(store, MlflowClient(mlflow_server.uri), sweep_id)


def test_the_sweep_completes_when_the_worker_node_dies(cluster: Cluster, postgres_url: str, tmp_path: Path,
                                                       mlflow_server: MlflowServer) -> None:
    token = make_token(postgres_url)
    server = _serve(cluster, postgres_url, tmp_path, mlflow_server)
    steps = 400
    try:
        sweep_id = _submit(server, token, _spec("lose-a-node", steps=steps))
        with Store.open(postgres_url) as store:

            def worker_pack_checkpointed() -> bool:
                on_worker = [v.id for v in store.list_variants(sweep_id).items if v.node == "worker"]
                if not on_worker:
                    return False
                cols = store.read_scalar_metric_columns(variant_ids=on_worker, names=["train_loss"]) \
                    if "train_loss" in store.metric_names() else {"step": []}
                return len(cols["step"]) > 0 and max(cols["step"]) >= 20

            wait_until(worker_pack_checkpointed, timeout=300, what="the worker node's pack to checkpoint",
                       every=1)
            cluster.kill_worker()
        body = _wait_done(server, token, sweep_id, timeout=600)
        with Store.open(postgres_url) as store:
            errors = [(v.id, v.node, v.attempts, (v.last_error or "")[-1500:])
                      for v in store.list_variants(sweep_id).items if v.status != "succeeded"]
        assert body["status"] == "succeeded", errors
        _mirrored(postgres_url)
    finally:
        server.stop()
    with Store.open(postgres_url) as store:
        variants = store.list_variants(sweep_id).items
        assert {v.node for v in variants} == {"head"}  # the lost pack was retried on the head
        assert max(v.attempts for v in variants) == 2
        _check_rows(store, sweep_id, steps)
        check_metrics(store, MlflowClient(mlflow_server.uri), sweep_id)
