"""Roles, specialization index, emergence and the stored settings, on ideal heads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workers.probes import (
    ROLES,
    SPECIALIZATION_INDEX_VERSION,
    ProbeSettings,
    RoleThresholds,
    assign_roles,
    emergence_step,
    head_scores,
    role_emergence,
    specialization_index,
)

S = 101


def varied_period_batch(periods: list[int], seed: int = 0) -> torch.Tensor:
    """BOS + distinct filler + a segment of length P twice, P varying per sequence: [B, S]."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for p in periods:
        fresh = torch.randperm(1000, generator=g)[: S - 1 - p] + 4
        filler, seg = fresh[: S - 1 - 2 * p], fresh[S - 1 - 2 * p :]
        rows.append(torch.cat([torch.zeros(1, dtype=torch.long), filler, seg, seg]))
    return torch.stack(rows)


def ideal_heads(tokens: torch.Tensor) -> torch.Tensor:
    """[B, 1, 6, S, S]: induction, previous-token, uniform, sink, offset-2 positional, duplicate."""
    B = tokens.shape[0]
    out = torch.zeros(B, 6, S, S, dtype=torch.float64)
    rows = torch.arange(S)
    for b in range(B):
        t = tokens[b].tolist()
        last: dict[int, int] = {}
        for i, tok in enumerate(t):
            j = last.get(tok)
            out[b, 0, i, j + 1 if j is not None else 0] = 1  # induction
            out[b, 5, i, j if j is not None else 0] = 1  # duplicate
            last[tok] = i
    out[:, 1, rows, (rows - 1).clamp(min=0)] = 1  # previous token
    out[:, 2] = torch.tril(torch.ones(S, S, dtype=torch.float64))
    out[:, 2] /= out[:, 2].sum(-1, keepdim=True)  # uniform causal
    out[:, 3, :, 0] = 1  # sink
    out[:, 4, rows, (rows - 2).clamp(min=0)] = 1  # positional, offset 2
    return out[:, None]


@pytest.fixture(scope="module")
def scores() -> dict[str, torch.Tensor]:
    tokens = varied_period_batch([30, 35, 40, 45, 50])
    return head_scores(ideal_heads(tokens), tokens)  # [1, 6]


def test_roles_of_ideal_heads(scores) -> None:
    roles = [ROLES[i] for i in assign_roles(scores)[0].tolist()]
    assert roles == ["induction", "previous_token", "broad", "sink", "positional", "duplicate"]


def test_specialization_index_of_ideal_heads(scores) -> None:
    si = specialization_index(scores)[0].tolist()
    assert si == pytest.approx([1.0, 1.0, 0.0, 0.0, 1.0, 1.0], abs=1e-9)
    assert SPECIALIZATION_INDEX_VERSION == 1


def test_specialization_index_on_the_fixed_period_calibration_batch() -> None:
    """With one fixed period an induction head is also half a positional head (offset 49):
    positional = 51/100 -> strength 0.567 -> s = 2·0.567 − 1 = 0.133 -> SI = 0.867."""
    tokens = varied_period_batch([50])
    si = specialization_index(head_scores(ideal_heads(tokens), tokens))[0, 0].item()
    assert si == pytest.approx(1 - (2 * (51 / 100) / 0.9 - 1), abs=1e-9)


def test_mixed_head_and_gates() -> None:
    base = {m: torch.zeros(1, 1) for m in ("induction", "prev_token", "positional", "sink")}
    base["positional_offset"] = torch.ones(1, 1)
    two_roles = {**base, "induction": torch.tensor([[0.3]]), "prev_token": torch.tensor([[0.9]])}
    assert specialization_index(two_roles).item() == pytest.approx(0.0)
    assert ROLES[assign_roles(two_roles).item()] == "previous_token"  # 1.8 beats 1.5
    # an offset-1 positional head is the previous-token role, not a second role
    prev = {**base, "prev_token": torch.tensor([[0.99]]), "positional": torch.tensor([[1.0]])}
    assert specialization_index(prev).item() == pytest.approx(1.0)
    # language needs the head to matter: selectivity alone is not enough
    lang = {**base, "language_selectivity": torch.tensor([[0.9]]),
            "language_delta_max": torch.tensor([[0.001]])}
    assert ROLES[assign_roles(lang).item()] == "none"
    lang["language_delta_max"] = torch.tensor([[0.2]])
    assert ROLES[assign_roles(lang).item()] == "language"
    # NaN (not measured) counts as 0
    nan = {**base, "syntactic": torch.tensor([[float("nan")]])}
    assert ROLES[assign_roles(nan).item()] == "none"
    assert specialization_index(nan).item() == 0.0


def test_settings_round_trip() -> None:
    settings = ProbeSettings(exclude_bos=True, thresholds=RoleThresholds(induction=0.3))
    data = json.loads(json.dumps(settings.to_dict()))
    assert data["specialization_index_version"] == SPECIALIZATION_INDEX_VERSION
    assert ProbeSettings.from_dict(data) == settings


# ------------------------------------------------------------------------------ emergence

STEPS = list(range(0, 1100, 100))


def test_emergence_abrupt() -> None:
    scores = [0.01] * 5 + [0.45] * 6
    e = emergence_step(STEPS, scores, 0.2)
    assert e is not None and e.step == 500
    assert e.jump == pytest.approx(0.44) and e.jump_fraction == pytest.approx(1.0) and e.abrupt


def test_emergence_gradual() -> None:
    scores = np.linspace(0.0, 0.5, 11)
    e = emergence_step(STEPS, scores, 0.22)
    assert e is not None and e.step == 500
    assert e.jump == pytest.approx(0.05) and e.jump_fraction == pytest.approx(0.1)
    assert e.abrupt is False


def test_emergence_never_transient_and_from_start() -> None:
    assert emergence_step(STEPS, [0.1] * 11, 0.2) is None
    assert emergence_step(STEPS, [0.1, 0.3, 0.3] + [0.1] * 8, 0.2) is None  # fell back
    dip = [0.0, 0.3, 0.1, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    assert emergence_step(STEPS, dip, 0.2).step == 300  # stays above only from 300
    start = emergence_step(STEPS, [0.5] * 11, 0.2)
    assert start is not None and start.step == 0 and start.jump is None and start.abrupt is None
    assert emergence_step([], [], 0.2) is None


def test_role_emergence_per_head() -> None:
    series = []
    for t in range(len(STEPS)):
        ind = torch.tensor([[0.01, 0.01], [0.45 if t >= 6 else 0.01, 0.02 * t]])  # [L, H]
        series.append({"induction": ind})
    table = role_emergence(STEPS, series, "induction")
    assert table[0][0] is None and table[0][1] is None
    assert table[1][0].step == 600 and table[1][0].abrupt
    assert table[1][1].step == 1000 and table[1][1].abrupt is False  # 0.02·t ≥ 0.2 at t = 10
