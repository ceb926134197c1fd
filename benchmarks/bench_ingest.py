"""Head-metric ingest: the SQL store (SQLite, PostgreSQL) against MLflow ``log_batch``.

    .venv/bin/python benchmarks/bench_ingest.py [--rows N] [--batch-rows B] [--mlflow-rows M]

Writes the same synthetic probe output (variants x steps x 4 layers x 8 heads x 4 metrics)
through ``Store.write_head_metrics`` in batches of B rows into a fresh SQLite file and a fresh
PostgreSQL database (``HEADSPEC_TEST_POSTGRES_URL``, default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``; a scratch database is created and
dropped), and the first M of those rows through ``MlflowClient.log_batch`` (1000 metrics per
call, MLflow's limit; keys ``L{layer}.H{head}.{metric}``) into its own SQLite tracking store.
Prints rows/s for each and the ratios, all measured in this run. MLflow's time covers only
the ``log_batch`` calls; the store's covers everything from numpy columns to commit.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scratch import scratch_postgres

from service.store import NewVariant, Store
from service.store.schema import upgrade

LAYERS, HEADS = 4, 8
METRICS = ("entropy", "prev_token", "induction", "first_token")
PER_STEP = LAYERS * HEADS * len(METRICS)
MLFLOW_BATCH = 1000


def synthetic_columns(rows: int, n_variants: int) -> dict[str, np.ndarray]:
    """``rows`` head metrics laid out as a probe produces them: per step, per variant."""
    steps = -(-rows // (n_variants * PER_STEP))
    v, s, m, la, h = np.meshgrid(
        np.arange(n_variants),
        np.arange(steps) * 10,
        np.arange(len(METRICS)),
        np.arange(LAYERS),
        np.arange(HEADS),
        indexing="ij",
    )
    # order rows step-major (what a writer buffering probe steps sends)
    order = np.lexsort((h.ravel(), la.ravel(), m.ravel(), v.ravel(), s.ravel()))[:rows]
    rng = np.random.default_rng(0)
    return {
        "variant_index": v.ravel()[order],
        "step": s.ravel()[order],
        "layer": la.ravel()[order],
        "head": h.ravel()[order],
        "metric": np.array(METRICS)[m.ravel()[order]],
        "value": rng.random(len(order)),
    }


def time_store(
    url: str, data: dict[str, np.ndarray], n_variants: int, batch_rows: int, retry: bool
) -> tuple[float, float | None]:
    """rows/s of a first write, and of writing the same rows again (the upsert path)."""
    upgrade(url)
    store = Store.open(url)
    try:
        _, variants = store.create_sweep(
            "bench", {}, [NewVariant({"i": i}, {}, "p") for i in range(n_variants)]
        )
        ids = np.array([v.id for v in variants])
        batch = {k: v for k, v in data.items() if k != "variant_index"}
        batch["variant_id"] = ids[data["variant_index"]]
        n = len(batch["value"])
        rates: list[float] = []
        for _ in range(2 if retry else 1):
            start = time.perf_counter()
            for lo in range(0, n, batch_rows):
                store.write_head_metrics({k: v[lo : lo + batch_rows] for k, v in batch.items()})
            rates.append(n / (time.perf_counter() - start))
            assert store.count_head_metrics() == n, "not every row arrived"
        return rates[0], (rates[1] if retry else None)
    finally:
        store.close()


def time_mlflow(tmp: Path, data: dict[str, np.ndarray], rows: int) -> float:
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = client.create_experiment("bench")
    runs: dict[int, str] = {}
    batches: list[tuple[str, list[Metric]]] = []
    by_variant: dict[int, list[Metric]] = {}
    for i in range(rows):
        v = int(data["variant_index"][i])
        key = f"L{data['layer'][i]}.H{data['head'][i]}.{data['metric'][i]}"
        metric = Metric(key, float(data["value"][i]), 1_700_000_000_000 + i, int(data["step"][i]))
        by_variant.setdefault(v, []).append(metric)
    for v, metrics in by_variant.items():
        runs[v] = client.create_run(experiment, run_name=f"variant-{v}").info.run_id
        for lo in range(0, len(metrics), MLFLOW_BATCH):
            batches.append((runs[v], metrics[lo : lo + MLFLOW_BATCH]))
    start = time.perf_counter()
    for run_id, metrics in batches:
        client.log_batch(run_id, metrics=metrics)
    return rows / (time.perf_counter() - start)


def _retry(rate: float | None) -> str:
    return "" if rate is None else f"  (same rows again: {rate:,.0f} rows/s)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="head-metric rows to write")
    parser.add_argument("--variants", type=int, default=64)
    parser.add_argument("--batch-rows", type=int, default=100_000, help="rows per store write")
    parser.add_argument("--mlflow-rows", type=int, default=20_000, help="rows for MLflow")
    parser.add_argument("--retry", action="store_true", help="also time writing the same rows again (upsert)")
    args = parser.parse_args()
    data = synthetic_columns(args.rows, args.variants)
    rows = len(data["value"])
    mlflow_rows = min(args.mlflow_rows, rows)
    print(
        f"{rows:,} head-metric rows ({args.variants} variants x {LAYERS} layers x {HEADS} heads "
        f"x {len(METRICS)} metrics x steps), store batches of {args.batch_rows:,} rows"
    )
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        rates["SQLite"], again = time_store(sqlite_url, data, args.variants, args.batch_rows, args.retry)
        print(f"  SQLite store       {rates['SQLite']:>12,.0f} rows/s{_retry(again)}")
        with scratch_postgres() as pg_url:
            if pg_url is not None:
                rates["PostgreSQL"], again = time_store(
                    pg_url, data, args.variants, args.batch_rows, args.retry
                )
                print(f"  PostgreSQL store   {rates['PostgreSQL']:>12,.0f} rows/s{_retry(again)}")
        rates["MLflow"] = time_mlflow(Path(tmp), data, mlflow_rows)
        print(
            f"  MLflow log_batch   {rates['MLflow']:>12,.0f} rows/s  "
            f"(first {mlflow_rows:,} rows, {MLFLOW_BATCH} per call, sqlite tracking store)"
        )
    for name in ("SQLite", "PostgreSQL"):
        if name in rates:
            print(f"  {name} / MLflow = {rates[name] / rates['MLflow']:.1f}x")
    if "PostgreSQL" in rates:
        met = rates["PostgreSQL"] >= 200_000 and rates["PostgreSQL"] >= 20 * rates["MLflow"]
        print(f"goal (PostgreSQL >= 200,000 rows/s and >= 20x MLflow): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
