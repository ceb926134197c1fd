"""analysis.compare and analysis.derived on hand-made frames (no database)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.compare import effect_sizes, interaction_table, level_summary, units
from analysis.derived import derive
from analysis.roles import ROLE_NAMES
from workers.probes.roles import ROLES


def test_role_names_equal_workers_roles() -> None:
    assert ROLE_NAMES == ROLES


def _frame(effect: float) -> pd.DataFrame:
    rows = []
    noise = [0.0, 0.03, -0.02, 0.05, -0.04]
    for seed, eps in enumerate(noise):
        for a in (1, 2):
            for b in ("x", "y"):
                rows.append({"variant_id": len(rows) + 1, "seed": seed, "a": a, "b": b,
                             "v": 0.2 + effect * (a == 2) + eps + (0.01 if b == "y" else 0.0)})
    return pd.DataFrame(rows)


def test_units_average_other_factors_per_seed() -> None:
    u = units(_frame(0.5), "a", "v")
    assert list(u) == [1, 2]
    assert len(u[1]) == 5
    np.testing.assert_allclose(u[2] - u[1], 0.5)


def test_effect_ci_above_zero_for_real_effect_and_contains_zero_without() -> None:
    eff = effect_sizes(_frame(0.5), "a", "v", n_boot=500).iloc[0]
    assert eff["diff"] == pytest.approx(0.5)
    assert eff["ci_low"] > 0 and eff["cohens_d"] > 3
    null = effect_sizes(_frame(0.0), "a", "v", n_boot=500).iloc[0]
    assert null["ci_low"] <= 0 <= null["ci_high"]


def test_bootstrap_is_deterministic_and_brackets_mean() -> None:
    first = level_summary(_frame(0.5), "a", "v", n_boot=300)
    again = level_summary(_frame(0.5), "a", "v", n_boot=300)
    pd.testing.assert_frame_equal(first, again)
    assert ((first["ci_low"] <= first["mean"]) & (first["mean"] <= first["ci_high"])).all()
    assert first["n_units"].tolist() == [5, 5]


def test_single_unit_level_has_no_interval() -> None:
    frame = pd.DataFrame({"variant_id": [1, 2], "seed": [0, 0], "a": [1, 2], "v": [0.1, 0.2]})
    assert level_summary(frame, "a", "v")["ci_low"].isna().all()
    assert effect_sizes(frame, "a", "v")["cohens_d"].isna().all()


def test_interaction_table_means_per_cell() -> None:
    table = interaction_table(_frame(0.5), "a", "b", "v")
    assert list(table.index) == [1, 2] and list(table.columns) == ["x", "y"]
    assert table.loc[2, "y"] - table.loc[1, "y"] == pytest.approx(0.5)
    assert table.loc[1, "y"] - table.loc[1, "x"] == pytest.approx(0.01)
    with pytest.raises(ValueError):
        interaction_table(_frame(0.5), "a", "a", "v")
    with pytest.raises(KeyError):
        interaction_table(_frame(0.5), "a", "nope", "v")


def test_derive_roles_and_scalars() -> None:
    heads = pd.DataFrame({
        "variant_id": [7] * 8, "metric": ["role"] * 4 + ["induction"] * 4,
        "value": [0.0, 1.0, 9.0, 9.0, 0.1, 0.7, 0.2, 0.3],
    })
    scalars = pd.DataFrame({"variant_id": [7], "name": ["train_loss"], "value": [1.5]})
    out = derive(heads, scalars).loc[7]
    assert out["max_induction"] == pytest.approx(0.7)
    assert out["frac_induction"] == 0.25 and out["frac_previous_token"] == 0.25
    assert out["frac_none"] == 0.5 and out["frac_sink"] == 0.0
    assert out["n_distinct_roles"] == 2
    assert out["train_loss"] == 1.5 and np.isnan(out["icl_score"]) and np.isnan(out["mean_specialization"])


def test_derive_rejects_bad_role_index() -> None:
    heads = pd.DataFrame({"variant_id": [1], "metric": ["role"], "value": [42.0]})
    with pytest.raises(ValueError, match="role indexes"):
        derive(heads, pd.DataFrame(columns=["variant_id", "name", "value"]))
