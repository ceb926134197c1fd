"""Head-metric pages over the REST API on a large PostgreSQL store: latency of a page, first
and deep, against the same page from the store without HTTP and against OFFSET paging.

    .venv/bin/python benchmarks/bench_api_pages.py [--rows 10000000] [--requests 40] [--limit 1000]

Fills a scratch PostgreSQL database (``HEADSPEC_TEST_POSTGRES_URL``, default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``; created and dropped here) with
``--rows`` head metrics (variants x probe steps x 4 layers x 8 heads x 8 metrics) through
``Store.write_head_metrics``, starts a real ``headspec serve`` (uvicorn, tokens on) on
loopback, and times ``--requests`` page requests of ``--limit`` rows for each endpoint:

* ``GET /sweeps/{id}/head-metrics?metric=M`` (one metric across the sweep) and
* ``GET /variants/{id}/head-metrics`` (everything of one variant),

each as the first page and as deep pages (real cursors, spread evenly over the listing).
Baselines measured in the same run on the same pages: the store call without HTTP
(``Store.list_sweep_head_metrics`` / ``list_head_metrics``, in this process) and the same
page as ``OFFSET k LIMIT n`` SQL. Prints p50 / p95 in ms and the ratios; goal: p95 < 100 ms
for every HTTP page.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from scratch import scratch_postgres
from sqlalchemy import text

from service.api.auth import issue_token
from service.store import NewVariant, Store
from service.store.schema import upgrade

LAYERS, HEADS = 4, 8
METRICS = ("induction", "prev_token", "positional", "sink", "entropy", "specialization", "importance", "role")
PER_VARIANT_STEP = LAYERS * HEADS * len(METRICS)
PROBE_EVERY = 10
GOAL_MS = 100.0


def fill(store: Store, rows: int, n_variants: int, batch_rows: int) -> tuple[int, list[int], float]:
    """A sweep of ``n_variants`` with ``rows`` head metrics written step by step; returns the
    sweep id, the variant ids and the write rate."""
    sweep, variants = store.create_sweep("bench-pages", {"name": "bench-pages"},
                                         [NewVariant({"i": i}, {"seed": i}, "p") for i in range(n_variants)])
    ids = np.array([v.id for v in variants])
    per_step = n_variants * PER_VARIANT_STEP
    steps = -(-rows // per_step)
    steps_per_batch = max(1, batch_rows // per_step)
    v, m, la, h = (a.ravel() for a in np.meshgrid(ids, np.arange(len(METRICS)), np.arange(LAYERS),
                                                   np.arange(HEADS), indexing="ij"))
    names = np.array(METRICS, dtype=object)[m]
    rng = np.random.default_rng(0)
    written, started = 0, time.perf_counter()
    for first in range(0, steps, steps_per_batch):
        chunk = range(first, min(first + steps_per_batch, steps))
        n = len(chunk) * per_step
        take = min(n, rows - written)
        batch = {
            "variant_id": np.tile(v, len(chunk))[:take],
            "step": np.repeat(np.array(chunk) * PROBE_EVERY, per_step)[:take],
            "layer": np.tile(la, len(chunk))[:take],
            "head": np.tile(h, len(chunk))[:take],
            "metric": np.tile(names, len(chunk))[:take],
            "value": rng.random(take),
        }
        store.write_head_metrics(batch, mirror=False)
        written += take
        print(f"\r  writing: {written:,} / {rows:,} rows", end="", flush=True)
    rate = written / (time.perf_counter() - started)
    print(f"\r  wrote {written:,} rows at {rate:,.0f} rows/s")
    return sweep.id, [int(i) for i in ids], rate


def walk(page: Callable[[str | None], tuple[int, str | None]]) -> tuple[list[tuple[int, str]], int]:
    """Every (depth, cursor) of a listing walked page by page, and its length."""
    out: list[tuple[int, str]] = []
    cursor: str | None = None
    depth = 0
    while True:
        n, cursor = page(cursor)
        depth += n
        if cursor is None:
            return out, depth
        out.append((depth, cursor))


def spread(points: list[tuple[int, str]], k: int) -> list[tuple[int, str]]:
    if len(points) <= k:
        return points
    return [points[int(i)] for i in np.linspace(0, len(points) - 1, k)]


def timed(calls: list[Callable[[], object]]) -> list[float]:
    out = []
    for call in calls:
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1000)
    return out


def summary(ms: list[float]) -> tuple[float, float]:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return statistics.median(ordered), p95


class Server:
    def __init__(self, url: str, workdir: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEADSPEC_")}
        env |= {"HEADSPEC_DATABASE_URL": url, "HEADSPEC_ARTIFACT_DIR": str(workdir / "artifacts"),
                "HEADSPEC_SCHEDULER_ENABLED": "false"}
        self.log = open(workdir / "serve.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port),
             "--log-level", "warning"],
            env=env, cwd=workdir, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"headspec serve exited: {(workdir / 'serve.log').read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("headspec serve did not start within 60 s")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.log.close()


def measure(http: httpx.Client, store: Store, listing: dict[str, Any], requests: int, limit: int,
            walk_limit: int) -> list[tuple[str, float, float]]:
    """(mode, p50, p95) of one listing: HTTP first and deep pages, store call, OFFSET SQL."""
    fetch: Callable[[str | None, int], Any] = listing["store"]

    def page(cursor: str | None) -> tuple[int, str | None]:
        p = fetch(cursor, walk_limit)
        return len(p.items), p.next_cursor

    all_points, total = walk(page)
    points = spread(all_points, requests)
    print(f"  {listing['name']} listing: {total:,} rows; {len(points)} deep pages at depths "
          f"{points[0][0]:,} .. {points[-1][0]:,}")
    path, params = listing["path"], {**listing["params"], "limit": limit}

    def get(cursor: str | None = None) -> None:
        http.get(path, params={**params, "cursor": cursor} if cursor else params).raise_for_status()

    def offset(k: int) -> None:
        with store.engine.connect() as conn:
            conn.execute(listing["offset_sql"], {**listing["offset_params"], "k": k, "n": limit}).all()

    for _ in range(3):  # warm the connection pools and caches
        get()
    modes = {
        "HTTP first page": timed([get for _ in range(requests)]),
        "HTTP deep pages (cursor)": timed([partial(get, c) for _, c in points]),
        "store call, deep (no HTTP)": timed([partial(fetch, c, limit) for _, c in points]),
        "OFFSET SQL, deep": timed([partial(offset, k) for k, _ in points]),
    }
    return [(mode, *summary(ms)) for mode, ms in modes.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="head-metric rows in the store")
    parser.add_argument("--variants", type=int, default=64)
    parser.add_argument("--requests", type=int, default=40, help="timed requests per endpoint and mode")
    parser.add_argument("--limit", type=int, default=1000, help="rows per page")
    parser.add_argument("--batch-rows", type=int, default=100_000, help="rows per store write while filling")
    args = parser.parse_args()
    metric = "induction"
    results: dict[str, list[tuple[str, float, float]]] = {}
    with scratch_postgres() as url, tempfile.TemporaryDirectory() as tmp:
        if url is None:
            return 1
        upgrade(url)
        store = Store.open(url, pool_size=2, max_overflow=0)
        print(f"{args.rows:,} head-metric rows: {args.variants} variants x probe steps x {LAYERS} layers "
              f"x {HEADS} heads x {len(METRICS)} metrics (scratch PostgreSQL database)")
        sweep_id, variant_ids, _ = fill(store, args.rows, args.variants, args.batch_rows)
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        token, _ = issue_token(store, "bench")
        server = Server(url, Path(tmp))
        http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        variant = variant_ids[len(variant_ids) // 2]
        listings: list[dict[str, Any]] = [
            {
                "name": "sweep",
                "path": f"/sweeps/{sweep_id}/head-metrics",
                "params": {"metric": metric},
                "store": lambda c, n: store.list_sweep_head_metrics(sweep_id, metric, cursor=c, limit=n),
                "offset_sql": text(
                    "SELECT variant_id, step, layer, head, value FROM head_metrics "
                    "WHERE variant_id = ANY(:ids) AND metric_id = :m "
                    "ORDER BY variant_id, step, layer, head OFFSET :k LIMIT :n"),
                "offset_params": {"ids": variant_ids, "m": _metric_id(store, metric)},
            },
            {
                "name": "variant",
                "path": f"/variants/{variant}/head-metrics",
                "params": {},
                "store": lambda c, n: store.list_head_metrics(variant, cursor=c, limit=n),
                "offset_sql": text(
                    "SELECT metric_id, step, layer, head, value FROM head_metrics WHERE variant_id = :v "
                    "ORDER BY metric_id, step, layer, head OFFSET :k LIMIT :n"),
                "offset_params": {"v": variant},
            },
        ]
        try:
            for listing in listings:
                results[listing["name"]] = measure(http, store, listing, args.requests, args.limit,
                                                   walk_limit=args.limit)
        finally:
            http.close()
            server.stop()
            store.close()
    print(f"\npage = {args.limit} rows; p50 / p95 over {args.requests} requests each "
          "(PostgreSQL, uvicorn on loopback, tokens on)")
    print(f"  {'endpoint':<9} {'mode':<28} {'p50 ms':>8} {'p95 ms':>8}")
    for name, rows in results.items():
        for mode, p50, p95 in rows:
            print(f"  {name:<9} {mode:<28} {p50:>8.1f} {p95:>8.1f}")
    ok = True
    for name, rows in results.items():
        by_mode = {mode: (p50, p95) for mode, p50, p95 in rows}
        deep, raw = by_mode["HTTP deep pages (cursor)"], by_mode["store call, deep (no HTTP)"]
        off = by_mode["OFFSET SQL, deep"]
        print(f"  {name}: HTTP / store call (p50) = {deep[0] / raw[0]:.2f}x; "
              f"OFFSET / HTTP cursor (p50) = {off[0] / deep[0]:.1f}x")
        ok &= all(p95 < GOAL_MS for mode, (_, p95) in by_mode.items() if mode.startswith("HTTP"))
    print(f"goal (p95 < {GOAL_MS:.0f} ms for every HTTP page): {'met' if ok else 'NOT met'}")
    return 0


def _metric_id(store: Store, name: str) -> int:
    with store.engine.connect() as conn:
        found = conn.execute(text("SELECT id FROM metric_names WHERE name = :n"), {"n": name}).scalar_one()
    return int(found)


if __name__ == "__main__":
    sys.exit(main())
