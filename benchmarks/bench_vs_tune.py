"""A whole sweep with all its tracking, through headspec and as Ray Tune trials, against bare training.

The variants of one sweep spec (default ``examples/quickstart.yaml``; ``--steps`` shortens
them), trained three ways in one run on this machine, wall-clock each:

- ``bare``:     no tracking at all. One process, one variant after another, each a plain
                ``workers.train.train_pack`` on a pack of one with the spec's model, data and
                training. Timed twice: with a prober that computes every probe of the spec
                and throws the results away (the baseline), and with no probes at all.
- ``headspec``: the sweep as ``headspec run`` does it, with all its tracking:
                ``run_sweep_ray`` (a local Ray started and stopped inside, one task per pack,
                every head metric and loss through the writer actors into a fresh SQLite
                store, checkpoints at the settings' default), then ``drain_to_mlflow`` into
                a fresh local MLflow store (``sqlite:///<tmp>/mlflow.db``). Both parts and
                their total are timed; creating the store's schema is not.
- ``tune``:     the same variants as Ray Tune trials: ``ray.tune.Tuner`` over a grid of the
                factor values x seeds, 1 CPU per trial (``tune.with_resources``), each trial
                running the same ``train_pack`` on a pack of one and reporting through
                ``ray.tune.report`` what headspec records: every probe's per-head metrics as
                ``L{l}.H{h}.{metric}`` floats (non-finite cells dropped, as headspec drops
                them) with the probe scalars, and the train loss every 10 steps. Ray's
                ``MLflowLoggerCallback`` logs them into a fresh ``sqlite:///<tmp>/tune_mlflow.db``.
                Timed from ``ray.init`` to ``ray.shutdown`` (headspec's time includes its Ray
                start and stop as well). Tune keeps its default CSV/JSON result loggers
                (turning them off, ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``, changed nothing
                measurable here); no TensorBoard logger, tensorboardX is not installed.

Prints each wall time, the ratios tune/headspec, headspec/bare and tune/bare, and the
metric values each one recorded (store rows, MLflow rows: head metrics, the probe scalars
and train losses), to show the same metrics were tracked. Tune's MLflow also holds the
bookkeeping metrics Tune adds to every result (``time_this_iter_s``, ...), counted apart.

    .venv/bin/python benchmarks/bench_vs_tune.py                      # quickstart, 400 steps
    .venv/bin/python benchmarks/bench_vs_tune.py --steps 100          # shorter
    .venv/bin/python benchmarks/bench_vs_tune.py --spec SPEC --skip tune
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from service.mirror import drain_to_mlflow, head_metric_key
from service.store import Store, schema
from service.sweeps.distributed import run_sweep_ray
from service.sweeps.plan import PlannedVariant, plan_variants
from service.sweeps.spec import SweepSpec, load_spec
from workers.data import DataConfig, make_stream, probe_batch
from workers.model import ModelConfig
from workers.probes import ProbeSettings, make_prober
from workers.train import ProbeResult, TrainConfig, VariantRun, train_pack

ROOT = Path(__file__).resolve().parents[1]
LOSS_EVERY = 10  # what workers.pack_runner.run_pack records: the train loss every 10 steps
PROBE_SCALARS = ("icl_score", "probe_loss", "syntactic_baseline")
SCALAR_KEYS = (*PROBE_SCALARS, "train_loss")


# -- one variant, as the workers train it ------------------------------------------------------


class _NullSink:
    def on_step(self, step: int, losses: torch.Tensor) -> None:
        pass

    def on_probe(self, step: int, result: object) -> None:
        pass


def _no_probe(model: object, step: int) -> ProbeResult:
    return ProbeResult(head={}, scalar={})


def train_variant(config: dict[str, Any], sink: Any, *, probes: bool = True) -> None:
    """Train one variant (a pack of one) exactly as ``workers.pack_runner`` sets it up."""
    model_cfg = ModelConfig.from_dict(config["model"])
    data_cfg = DataConfig.from_dict(config["data"])
    train_cfg = TrainConfig.from_dict(config["train"])
    seed = int(config["seed"])
    stream = make_stream(data_cfg, seed, 0)

    def next_batch(v: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = stream.next_batch(batch_size)
        return batch.tokens, batch.loss_mask

    prober = _no_probe
    if probes:
        settings = ProbeSettings.from_dict(config["probe"])
        prober = make_prober(probe_batch(data_cfg, train_cfg.probe_batch_size), settings)
    train_pack(model_cfg, train_cfg, [VariantRun(seed=seed, data_seed=seed, lr=train_cfg.lr)],
               next_batch, prober, sink, device="cpu")


def probe_metrics(result: Any) -> dict[str, float]:
    """Variant 0's probe as flat floats: ``L{l}.H{h}.{metric}`` per head, scalars by name."""
    out: dict[str, float] = {}
    for metric, grid in result.head.items():
        values = grid[0].detach().float().cpu()  # [L, H]
        for (layer, head), value in zip(itertools.product(*map(range, values.shape)),
                                        values.reshape(-1).tolist(), strict=True):
            if value == value and abs(value) != float("inf"):
                out[head_metric_key(layer, head, metric)] = value
    for name, value in result.scalar.items():
        v = float(value[0])
        if v == v and abs(v) != float("inf"):
            out[name] = v
    return out


# -- bare -----------------------------------------------------------------------------------


def run_bare(planned: list[PlannedVariant], *, probes: bool) -> float:
    start = time.perf_counter()
    for variant in planned:
        train_variant(variant.config, _NullSink(), probes=probes)
    return time.perf_counter() - start


# -- headspec -------------------------------------------------------------------------------


def run_headspec(spec: SweepSpec, tmp: Path, cpus: int | None) -> dict[str, Any]:
    store_url = f"sqlite:///{tmp / 'headspec.db'}"
    mlflow_uri = f"sqlite:///{tmp / 'mlflow.db'}"
    schema.upgrade(store_url, "head")  # setup, as `headspec db upgrade`: not timed
    start = time.perf_counter()
    outcome = run_sweep_ray(store_url, spec, artifact_dir=tmp / "artifacts", num_cpus=cpus)
    trained = time.perf_counter()
    with Store.open(store_url) as store:
        drained = drain_to_mlflow(store, mlflow_uri)
        done = time.perf_counter()
        ids = [v.id for v in outcome.variants]
        head_rows = store.count_head_metrics(sweep_id=outcome.sweep.id)
        scalar_rows = len(store.read_scalar_metric_columns(variant_ids=ids)["value"])
        pending = store.outbox_pending_count()
    if outcome.failed:
        raise SystemExit(f"headspec: {len(outcome.failed)} variant(s) failed: {outcome.failed[0].last_error}")
    return {"sweep": trained - start, "mirror": done - trained, "total": done - start,
            "store_head": head_rows, "store_scalar": scalar_rows, "mirrored": drained.metrics_logged,
            "outbox_pending": pending, "mlflow": mlflow_counts(tmp / "mlflow.db")}


# -- tune -----------------------------------------------------------------------------------


def _tune_grid(planned: list[PlannedVariant]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Tune's search space (a grid over each factor's values and the seeds) and the resolved
    config of each grid point, keyed as ``_grid_key`` names it."""
    from ray import tune

    factors = list(planned[0].factors)
    levels = {f: sorted({json.dumps(v.factors[f]) for v in planned}) for f in factors}
    seeds = sorted({v.seed for v in planned})
    space: dict[str, Any] = {f: tune.grid_search([json.loads(x) for x in xs]) for f, xs in levels.items()}
    space["seed"] = tune.grid_search(seeds)
    configs = {_grid_key({**v.factors, "seed": v.seed}, factors): v.config for v in planned}
    n_grid = len(seeds) * math.prod(len(x) for x in levels.values())
    if n_grid != len(planned):  # not a full grid (sampled factors): one grid point per variant
        space = {"variant": tune.grid_search(list(range(len(planned))))}
        configs = {str(i): v.config for i, v in enumerate(planned)}
    return space, configs


def _grid_key(config: dict[str, Any], factors: list[str]) -> str:
    if "variant" in config:
        return str(config["variant"])
    return json.dumps([config[f] for f in factors] + [config["seed"]])


def _make_trainable(configs: dict[str, dict[str, Any]], factors: list[str]) -> Any:
    def trainable(config: dict[str, Any]) -> None:
        from ray import tune

        variant = configs[_grid_key(config, factors)]
        probe_at = set(TrainConfig.from_dict(variant["train"]).probe_steps())

        class TuneSink:
            """Reports what headspec records; a probe step's loss goes with its probe."""

            def __init__(self) -> None:
                self.loss: dict[str, float] = {}

            def on_step(self, step: int, losses: torch.Tensor) -> None:
                if step % LOSS_EVERY:
                    return
                self.loss = {"train_loss": float(losses[0])}
                if step not in probe_at:
                    tune.report({"timesteps_total": step, **self.loss})
                    self.loss = {}

            def on_probe(self, step: int, result: Any) -> None:
                tune.report({"timesteps_total": step, **probe_metrics(result), **self.loss})
                self.loss = {}

        train_variant(variant, TuneSink())

    return trainable


def run_tune(planned: list[PlannedVariant], tmp: Path, cpus: int | None, name: str) -> dict[str, Any]:
    import ray
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    space, configs = _tune_grid(planned)
    factors = list(planned[0].factors)
    mlflow_db = tmp / "tune_mlflow.db"
    start = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
    try:
        tuner = tune.Tuner(
            tune.with_resources(_make_trainable(configs, factors), {"cpu": 1}),
            param_space=space,
            run_config=tune.RunConfig(
                name=f"bench-{name}",
                storage_path=str(tmp / "ray_results"),
                verbose=0,
                callbacks=[MLflowLoggerCallback(tracking_uri=f"sqlite:///{mlflow_db}",
                                                experiment_name=f"tune/{name}")],
            ),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    elapsed = time.perf_counter() - start
    if results.errors:
        raise SystemExit(f"tune: {len(results.errors)} trial(s) failed: {results.errors[0]}")
    return {"total": elapsed, "trials": len(results), "mlflow": mlflow_counts(mlflow_db)}


# -- counting -------------------------------------------------------------------------------


def mlflow_counts(db: Path) -> dict[str, int]:
    """Metric values in an MLflow SQLite store: per-head, the probe scalars and train loss
    (what both track), and anything else (Tune's bookkeeping); plus the runs."""
    with sqlite3.connect(db) as conn:
        keys = dict(conn.execute("SELECT key, COUNT(*) FROM metrics GROUP BY key").fetchall())
        runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    head = sum(n for k, n in keys.items() if k.startswith("L") and ".H" in k)
    scalar = sum(keys.get(k, 0) for k in SCALAR_KEYS)
    return {"head": head, "scalar": scalar, "other": sum(keys.values()) - head - scalar, "runs": runs}


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--spec", type=Path, default=ROOT / "examples" / "quickstart.yaml")
    parser.add_argument("--steps", type=int, default=None, help="override train.steps of every variant")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the local Rays (default: all)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["bare", "noprobe", "headspec", "tune"],
                        help="leave some measurements out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    spec = load_spec(args.spec)
    if args.steps is not None:
        base = spec.base.model_copy(update={"train": {**spec.base.train, "steps": args.steps}})
        spec = spec.model_copy(update={"base": base})
    planned = plan_variants(spec)
    train = planned[0].config["train"]
    print(f"spec {args.spec.name}: {len(planned)} variants, {train['steps']} steps each, probes every "
          f"{train['probe_every']}; {os.cpu_count()} CPUs; bare uses {torch.get_num_threads()} torch threads",
          flush=True)

    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-vs-tune-") as tmp_dir:
        tmp = Path(tmp_dir)
        if "bare" not in args.skip:
            times["bare"] = run_bare(planned, probes=True)
            print(f"bare (probes computed, discarded): {times['bare']:8.1f} s", flush=True)
        if "noprobe" not in args.skip:
            times["noprobe"] = run_bare(planned, probes=False)
            print(f"bare (no probes):                  {times['noprobe']:8.1f} s", flush=True)
        if "headspec" not in args.skip:
            hs = run_headspec(spec, tmp, args.cpus)
            times["headspec"] = hs["total"]
            m = hs["mlflow"]
            print(f"headspec: {hs['total']:8.1f} s  (Ray sweep into the store {hs['sweep']:.1f} s, "
                  f"MLflow drain {hs['mirror']:.1f} s)\n"
                  f"  store: {hs['store_head']} head-metric rows, {hs['store_scalar']} scalar rows; "
                  f"MLflow: {m['head']} head values, {m['scalar']} scalar values, {m['other']} other, "
                  f"{m['runs']} runs ({hs['mirrored']} sent; outbox pending {hs['outbox_pending']})",
                  flush=True)
        if "tune" not in args.skip:
            tu = run_tune(planned, tmp, args.cpus, spec.name)
            times["tune"] = tu["total"]
            m = tu["mlflow"]
            print(f"tune: {tu['total']:8.1f} s  ({tu['trials']} trials)\n"
                  f"  MLflow: {m['head']} head values, {m['scalar']} scalar values, {m['other']} other "
                  f"(Tune's bookkeeping), {m['runs']} runs", flush=True)

    print("ratios:")
    for num, den in (("tune", "headspec"), ("headspec", "bare"), ("tune", "bare"),
                     ("headspec", "noprobe"), ("tune", "noprobe"), ("bare", "noprobe")):
        if num in times and den in times:
            print(f"  {num + ' / ' + den:<20} {times[num] / times[den]:6.2f}x")


if __name__ == "__main__":
    main()
