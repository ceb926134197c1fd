"""Loading, derived quantities, comparison and `headspec compare` on a store whose answer is
known, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from analysis.compare import effect_sizes
from analysis.derived import per_variant_derived, per_variant_metric
from analysis.load import load_head_metrics, load_variants
from service import cli_analysis
from service.store import NewVariant, Store

SEED_NOISE = [0.0, 0.04, -0.03, 0.02]
runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # keeps `compare` a subcommand
        pass

    cli_analysis.register(app)
    return app


def _fill(store: Store) -> int:
    """2 layers × 2 heads; factors depth (raises induction by 0.4) × lr (no effect); 4 seeds.
    Step 100 is the last probe step; step 50 holds decoys (induction 0.95) that must be ignored."""
    new = [NewVariant(factors={"model.n_layers": depth, "train.lr": lr},
                      config={"seed": seed, "train": {"lr": lr}}, pack_key=f"p{depth}")
           for depth in (1, 2) for lr in (0.001, 0.01) for seed in range(4)]
    sweep, variants = store.create_sweep("known", {"name": "known"}, new)
    cols: dict[str, list] = {k: [] for k in ("variant_id", "step", "layer", "head", "metric", "value")}

    def put(vid: int, step: int, metric: str, values: list[float]) -> None:
        for i, val in enumerate(values):
            for k, x in zip(cols, (vid, step, i // 2, i % 2, metric, val), strict=True):
                cols[k].append(x)

    scalars: dict[str, list] = {"variant_id": [], "step": [], "name": [], "value": []}
    for v in variants:
        top = 0.3 + 0.4 * (v.factors["model.n_layers"] == 2) + SEED_NOISE[v.config["seed"]]
        put(v.id, 50, "induction", [0.95] * 4)
        put(v.id, 100, "induction", [0.1, 0.05, top, 0.2])
        put(v.id, 100, "specialization", [0.2, 0.4, 0.6, 0.8])
        put(v.id, 100, "role", [1.0, 9.0, 0.0, 7.0])
        for step, loss in ((50, 3.0), (100, 2.0)):
            for k, x in zip(scalars, (v.id, step, "train_loss", loss), strict=True):
                scalars[k].append(x)
    store.write_head_metrics({k: np.asarray(c, dtype=object if k == "metric" else None)
                              for k, c in cols.items()}, mirror=False)
    store.write_scalar_metrics(scalars, mirror=False)
    return sweep.id


def test_load_pushes_down_and_joins_factors(store: Store) -> None:
    sweep = _fill(store)
    heads = load_head_metrics(store, sweep, metrics=["induction"], last_step_only=True)
    assert len(heads) == 16 * 4 and set(heads["step"]) == {100}
    assert {"seed", "model.n_layers", "train.lr"} <= set(heads.columns)
    early = load_head_metrics(store, sweep, metrics=["induction"], step_max=50)
    assert set(early["value"]) == {0.95}
    assert sorted(load_variants(store, sweep)["seed"].unique().tolist()) == [0, 1, 2, 3]


def test_derived_quantities(store: Store) -> None:
    frame = per_variant_derived(store, _fill(store)).set_index("variant_id")
    deep = frame[frame["model.n_layers"] == 2]
    assert np.allclose(deep["max_induction"], 0.7 + np.array(SEED_NOISE * 2))
    assert np.allclose(frame["mean_specialization"], 0.5)
    assert (frame["frac_induction"] == 0.25).all() and (frame["frac_none"] == 0.25).all()
    assert (frame["n_distinct_roles"] == 3).all()
    assert (frame["train_loss"] == 2.0).all() and frame["icl_score"].isna().all()


def test_effect_of_true_and_null_factor(store: Store) -> None:
    sweep = _fill(store)
    frame = per_variant_metric(store, sweep, "max_induction")
    depth = effect_sizes(frame, "model.n_layers", "max_induction", n_boot=500).iloc[0]
    assert depth["diff"] == pytest.approx(0.4) and depth["ci_low"] > 0
    lr = effect_sizes(frame, "train.lr", "max_induction", n_boot=500).iloc[0]
    assert lr["ci_low"] <= 0 <= lr["ci_high"]


def test_cli_json_csv_table(store: Store, database_url: str) -> None:
    sweep = _fill(store)
    base = ["compare", "--sweep", str(sweep), "--database-url", database_url, "--n-boot", "200"]
    res = runner.invoke(_app(), [*base, "--by", "model.n_layers", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [r["level"] for r in doc["levels"]] == [1, 2] and [r["n_units"] for r in doc["levels"]] == [4, 4]
    assert doc["effects"][0]["diff"] == pytest.approx(0.4) and doc["effects"][0]["ci_low"] > 0
    res = runner.invoke(_app(), [*base, "--by", "train.lr", "--metric", "induction", "--format", "csv"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["kind"] for r in rows] == ["level", "level", "effect"]
    assert [r["level"] for r in rows[:2]] == ["0.001", "0.01"]
    res = runner.invoke(_app(), [*base, "--by", "model.n_layers"])
    assert res.exit_code == 0 and "max_induction by model.n_layers" in res.stdout


def test_cli_errors(store: Store, database_url: str) -> None:
    sweep = _fill(store)
    url = ["--database-url", database_url]
    res = runner.invoke(_app(), ["compare", "--sweep", "999", "--by", "x", *url])
    assert res.exit_code == 2 and "unknown sweep id 999" in res.stderr
    res = runner.invoke(_app(), ["compare", "--sweep", str(sweep), "--by", "depth", *url])
    assert res.exit_code == 2 and "model.n_layers" in res.stderr and "train.lr" in res.stderr
    args = ["compare", "--sweep", str(sweep), "--by", "train.lr", "--metric", "nope", *url]
    res = runner.invoke(_app(), args)
    assert res.exit_code == 2 and "unknown metric 'nope'" in res.stderr and "max_induction" in res.stderr
