"""Loading for comparisons from a big store: pushed-down reads against reading the whole table.

    .venv/bin/python benchmarks/bench_load.py [--rows N] [--repeats R] [--only sqlite|postgresql]
    .venv/bin/python benchmarks/bench_load.py --rows 200000          # a quick smoke run

Fills a fresh SQLite file (in a temporary directory) and a fresh PostgreSQL database
(``--postgres-url`` names the server; a scratch database ``headspec_bench_<hex>`` is created
there and dropped at the end, also on failure, unless ``--keep``) with about N head-metric
rows that look like a real sweep: the analysed sweep (``--variants``, default 384 = 8
``data.diversity`` levels x 3 ``optim.lr`` levels x 16 seeds) and an earlier, unrelated sweep
of a third as many variants, 2 layers x 4 heads x 20 head metrics (``induction``,
``specialization``, ``role`` as a float index 0..9, ...) per probe step, as many probe steps
(every 50 training steps) as it takes to reach N rows, plus the scalar metrics ``icl_score``
and ``train_loss`` per variant and probe step. Rows go through ``Store.write_head_metrics``
in columnar batches of whole probe steps (``--batch-rows``, default 100,000; no MLflow
outbox). Then, per database, the median of R runs of:

1. ``load_head_metrics(metrics=["induction"], last_step_only=True)``: the pushed-down read a
   comparison makes;
2. ``per_variant_derived``: the whole per-variant input of ``headspec compare``;
3. ``per_variant_metric("max_induction")`` + ``level_summary`` + ``effect_sizes`` over
   ``data.diversity``: ``headspec compare`` end to end (2000 bootstrap resamples);
4. ``load_head_metrics(metrics=["induction"])``: one metric's whole trajectory for the sweep;
5. the baseline: ``SELECT * FROM head_metrics`` (and ``metric_names``) into pandas with no
   pushdown, then filtered in pandas to the same frame as 1 (checked equal).

Prints rows returned and seconds per query, and baseline / pushed-down for 1 and 2, all
measured in this run on the same data. ``--explain`` also prints the plan of every
``head_metrics`` query that 1 and 4 send (``EXPLAIN (ANALYZE, BUFFERS)`` on PostgreSQL,
``EXPLAIN QUERY PLAN`` on SQLite).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scratch import DEFAULT_PG, scratch_postgres
from sqlalchemy import event, text

from analysis.compare import effect_sizes, level_summary
from analysis.derived import per_variant_derived, per_variant_metric
from analysis.load import HEAD_COLUMNS, load_head_metrics, load_variants
from service.store import NewVariant, Store
from service.store.schema import upgrade

LAYERS, HEADS = 2, 4
METRICS = (
    "induction", "specialization", "role", "prev_token", "positional", "duplicate", "syntactic",
    "keyword", "language", "sink", "broad", "entropy", "first_token", "importance", "ablation_loss",
    "attn_distance", "self_attention", "max_attention", "qk_norm", "ov_norm",
)
N_ROLES = 10
PROBE_EVERY = 50
DIVERSITY = (1, 2, 4, 8, 16, 32, 64, 128)
LRS = (3e-4, 1e-3, 3e-3)
FACTOR = "data.diversity"
PER_VARIANT_STEP = LAYERS * HEADS * len(METRICS)


@dataclass
class SweepData:
    """One sweep's variant ids and the per-variant knobs its synthetic metrics follow."""

    sweep_id: int
    variant_ids: np.ndarray
    peak: np.ndarray  # [V] induction score a variant's induction heads reach
    heads: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [V, L, H] in [0, 1]


def make_sweeps(store: Store, n_variants: int, rng: np.random.Generator) -> tuple[SweepData, SweepData]:
    """An earlier, unrelated sweep, then the analysed one (``n_variants``, a multiple of 24)."""
    other = [
        NewVariant({"model.n_layers": n_layers, "data.family": family},
                   {"seed": seed, "model": {"n_layers": n_layers}, "data": {"family": family}},
                   f"L{n_layers}-{family}")
        for n_layers in (1, 2) for family in ("repeated", "natural")
        for seed in range(max(1, n_variants // 3 // 4))
    ]
    seeds = max(1, n_variants // (len(DIVERSITY) * len(LRS)))
    main = [
        NewVariant({FACTOR: div, "optim.lr": lr},
                   {"seed": seed, "model": {"n_layers": LAYERS, "n_heads": HEADS},
                    "data": {"diversity": div}, "optim": {"lr": lr}},
                   f"div{div}")
        for div in DIVERSITY for lr in LRS for seed in range(seeds)
    ]
    out = []
    for name, variants in (("earlier-sweep", other), ("diversity-sweep", main)):
        sweep, created = store.create_sweep(name, {"bench": "bench_load"}, variants)
        ids = np.array([v.id for v in created], dtype=np.int64)
        div = np.array([v.factors.get(FACTOR, 8) for v in created], dtype=np.float64)
        peak = np.clip(0.1 + 0.1 * np.log2(div) + rng.normal(0, 0.05, len(ids)), 0.02, 0.98)
        heads = rng.random((len(ids), LAYERS, HEADS)) ** 3  # a few strong induction heads each
        out.append(SweepData(sweep.id, ids, peak, heads))
    return out[0], out[1]


def head_batch(sweep: SweepData, steps: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Columns for every head metric of every variant of ``sweep`` at ``steps``, laid out
    in primary-key order (variant, metric, step, layer, head)."""
    v, m, s, la, h = len(sweep.variant_ids), len(METRICS), len(steps), LAYERS, HEADS
    shape = (v, m, s, la, h)
    values = rng.random(shape)
    progress = 1.0 / (1.0 + np.exp(-(steps - 1500.0) / 300.0))  # [S]: induction emerges ~ step 1500
    induction = sweep.peak[:, None, None, None] * progress[None, :, None, None] * sweep.heads[:, None]
    values[:, 0] = np.clip(induction + rng.normal(0, 0.02, (v, s, la, h)), 0.0, 1.0)
    values[:, 2] = rng.integers(0, N_ROLES, (v, s, la, h)).astype(np.float64)
    grid = np.indices(shape, dtype=np.int64).reshape(5, -1)
    return {
        "variant_id": sweep.variant_ids[grid[0]],
        "metric": np.asarray(METRICS, dtype=object)[grid[1]],
        "step": steps[grid[2]],
        "layer": grid[3],
        "head": grid[4],
        "value": values.reshape(-1),
    }


def fill(store: Store, rows: int, n_variants: int, batch_rows: int) -> tuple[SweepData, int, float]:
    """Create both sweeps and write about ``rows`` head metrics; (analysed sweep, rows, s)."""
    rng = np.random.default_rng(0)
    other, main = make_sweeps(store, n_variants, rng)
    per_step = PER_VARIANT_STEP * (len(other.variant_ids) + len(main.variant_ids))
    n_steps = -(-rows // per_step)
    all_steps = np.arange(n_steps, dtype=np.int64) * PROBE_EVERY
    total = n_steps * per_step
    print(f"  filling: {len(main.variant_ids)} + {len(other.variant_ids)} variants x {n_steps} probe steps "
          f"x {LAYERS} layers x {HEADS} heads x {len(METRICS)} metrics = {total:,} head-metric rows")
    written, next_report = 0, total / 10
    start = time.perf_counter()
    for sweep in (other, main):
        k = max(1, -(-batch_rows // (PER_VARIANT_STEP * len(sweep.variant_ids))))
        for lo in range(0, n_steps, k):
            batch = head_batch(sweep, all_steps[lo : lo + k], rng)
            written += store.write_head_metrics(batch, mirror=False).rows
            if written >= next_report or written == total:
                elapsed = time.perf_counter() - start
                print(f"    {written:>12,} rows  {100 * written / total:5.1f}%  {elapsed:7.1f} s  "
                      f"{written / elapsed:>10,.0f} rows/s", flush=True)
                next_report += total / 10
        v, s = len(sweep.variant_ids), n_steps
        progress = 1.0 / (1.0 + np.exp(-(all_steps - 1500.0) / 300.0))
        icl = sweep.peak[:, None] * progress[None, :] + rng.normal(0, 0.01, (v, s))
        loss = 4.0 - 2.0 * progress[None, :] * (0.5 + sweep.peak[:, None]) + rng.normal(0, 0.01, (v, s))
        for name, grid in (("icl_score", icl), ("train_loss", loss)):
            store.write_scalar_metrics({"variant_id": np.repeat(sweep.variant_ids, s),
                                        "step": np.tile(all_steps, v), "name": name,
                                        "value": grid.reshape(-1)}, mirror=False)
    seconds = time.perf_counter() - start
    return main, written, seconds


# -- the baseline: no pushdown ---------------------------------------------------------------


def baseline_last_induction(store: Store, sweep_id: int) -> pd.DataFrame:
    """The answer of query 1 from the whole table read into pandas and filtered there."""
    everything = pd.read_sql(text("SELECT * FROM head_metrics"), store.engine)
    names = pd.read_sql(text("SELECT id AS metric_id, name AS metric FROM metric_names"), store.engine)
    frame = everything.merge(names, on="metric_id")
    variants = load_variants(store, sweep_id)
    frame = frame[(frame["metric"] == "induction") & frame["variant_id"].isin(variants["variant_id"])]
    frame = frame[frame["step"] == frame.groupby("variant_id")["step"].transform("max")]
    frame = frame.sort_values(["variant_id", "step", "layer", "head"])[list(HEAD_COLUMNS)]
    return frame.reset_index(drop=True).merge(variants.drop(columns=["status"]), on="variant_id", how="left")


def check_same(pushed: pd.DataFrame, baseline: pd.DataFrame) -> None:
    key = ["variant_id", "step", "layer", "head"]
    a = pushed.sort_values(key).reset_index(drop=True)
    b = baseline.sort_values(key).reset_index(drop=True)
    for col in ("variant_id", "step", "layer", "head"):
        a[col], b[col] = a[col].astype("int64"), b[col].astype("int64")
    pd.testing.assert_frame_equal(a[list(b.columns)], b, check_dtype=False)


# -- timing ----------------------------------------------------------------------------------


@dataclass
class Timing:
    label: str
    rows: int
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def timed(label: str, repeats: int, run: Callable[[], Any]) -> tuple[Timing, Any]:
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    rows = len(result[0] if isinstance(result, tuple) else result)
    return Timing(label, rows, seconds), result


def compare_end_to_end(store: Store, sweep_id: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = per_variant_metric(store, sweep_id, "max_induction")
    return level_summary(frame, FACTOR, "max_induction"), effect_sizes(frame, FACTOR, "max_induction")


def run_queries(store: Store, sweep_id: int, repeats: int) -> list[Timing]:
    out = []
    t, last = timed("1 induction, last step (pushed down)", repeats, lambda: load_head_metrics(
        store, sweep_id, metrics=["induction"], last_step_only=True))
    out.append(t)
    out.append(timed("2 per_variant_derived", repeats, lambda: per_variant_derived(store, sweep_id))[0])
    t, (levels, _) = timed("3 compare max_induction by " + FACTOR, repeats,
                           lambda: compare_end_to_end(store, sweep_id))
    out.append(t)
    out.append(timed("4 induction, whole trajectory", repeats, lambda: load_head_metrics(
        store, sweep_id, metrics=["induction"]))[0])
    t, base = timed("5 baseline: whole table, pandas filter", repeats,
                    lambda: baseline_last_induction(store, sweep_id))
    out.append(t)
    check_same(last, base)
    means = ", ".join(f"{lvl}: {m:.2f}" for lvl, m in zip(levels["level"], levels["mean"], strict=True))
    print(f"  compare (sanity): mean max_induction by {FACTOR}: {means}")
    return out


def print_table(name: str, timings: list[Timing], fill_rows: int, fill_s: float) -> None:
    print(f"\n{name}: {fill_rows:,} head-metric rows, filled in {fill_s:.1f} s "
          f"({fill_rows / fill_s:,.0f} rows/s)")
    print(f"  {'query':<42} {'rows':>11} {'median s':>10} {'runs s':>24}")
    for t in timings:
        runs = " ".join(f"{s:.3f}" for s in t.seconds)
        print(f"  {t.label:<42} {t.rows:>11,} {t.median:>10.3f} {runs:>24}")
    base = timings[4].median
    print(f"  baseline / 1 = {base / timings[0].median:,.0f}x   "
          f"baseline / 2 = {base / timings[1].median:,.0f}x")


# -- EXPLAIN ---------------------------------------------------------------------------------


@contextmanager
def captured_sql(store: Store) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        if "head_metrics" in statement and statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(store.engine, "before_cursor_execute", before)


_ID_LIST = re.compile(r"\{(\d+),[\d,]{40,},(\d+)\}")


def _short_ids(match: re.Match[str]) -> str:
    return f"{{{match[1]},...,{match[2]} ({match[0].count(',') + 1} ids)}}"


def explain(store: Store, sweep_id: int) -> None:
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if store.dialect == "postgresql" else "EXPLAIN QUERY PLAN "
    for label, run in (
        ("1", lambda: load_head_metrics(store, sweep_id, metrics=["induction"], last_step_only=True)),
        ("4", lambda: load_head_metrics(store, sweep_id, metrics=["induction"])),
    ):
        with captured_sql(store) as statements:
            run()
        for statement, params in statements:
            short = " ".join(statement.split())
            print(f"  -- query {label}: {short[:160]}{'...' if len(short) > 160 else ''}")
            raw = store.engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute(prefix + statement, params)
                for row in cur.fetchall():
                    line = str(row[0]) if store.dialect == "postgresql" else str(row[-1])
                    print("     " + _ID_LIST.sub(_short_ids, line))
                cur.close()
            finally:
                raw.close()


# -- databases -------------------------------------------------------------------------------


@contextmanager
def sqlite_dir(keep: bool) -> Iterator[Path]:
    if keep:
        path = Path(tempfile.mkdtemp(prefix="headspec_bench_"))
        yield path
        print(f"kept SQLite database: sqlite:///{path / 'bench.db'}")
        return
    with tempfile.TemporaryDirectory(prefix="headspec_bench_") as tmp:
        yield Path(tmp)


def bench_database(name: str, url: str, args: argparse.Namespace) -> list[Timing]:
    print(f"\n== {name} ==")
    upgrade(url, "head")
    store = Store.open(url)
    try:
        sweep, rows, seconds = fill(store, args.rows, args.variants, args.batch_rows)
        timings = run_queries(store, sweep.sweep_id, args.repeats)
        if args.explain:
            explain(store, sweep.sweep_id)
        print_table(name, timings, rows, seconds)
        return timings
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="head-metric rows to write (at least)")
    parser.add_argument("--variants", type=int, default=384, help="variants of the analysed sweep (x 24)")
    parser.add_argument("--batch-rows", type=int, default=100_000, help="rows per store write (whole steps)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per query; the median is reported")
    parser.add_argument("--only", choices=("sqlite", "postgresql"), help="one database only")
    parser.add_argument("--postgres-url", default=DEFAULT_PG, help="PostgreSQL server (a scratch DB is made)")
    parser.add_argument("--keep", action="store_true", help="keep the databases and print their URLs")
    parser.add_argument("--explain", action="store_true", help="print the plans of queries 1 and 4")
    args = parser.parse_args()
    if args.variants < 24 or args.variants % 24:
        parser.error("--variants must be a positive multiple of 24 (8 diversity levels x 3 lrs x seeds)")
    results: dict[str, list[Timing]] = {}
    if args.only in (None, "sqlite"):
        with sqlite_dir(args.keep) as tmp:
            results["SQLite"] = bench_database("SQLite", f"sqlite:///{tmp / 'bench.db'}", args)
    if args.only in (None, "postgresql"):
        with scratch_postgres(args.postgres_url, args.keep) as pg_url:
            if pg_url is not None:
                results["PostgreSQL"] = bench_database("PostgreSQL", pg_url, args)
    print()
    for name, t in results.items():
        print(f"summary {name}: comparison input (2) {t[1].median:.2f} s, last-step induction (1) "
              f"{t[0].median:.2f} s, whole table (5) {t[4].median:.2f} s = {t[4].median / t[1].median:,.0f}x "
              f"the comparison input")
    ok = all(t[1].median < 5.0 for t in results.values())
    print(f"goal (a comparison loads what it needs in seconds: per_variant_derived < 5 s): "
          f"{'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
