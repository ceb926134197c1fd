"""Ground-truth metrics (syntactic, keyword) on hand-built patterns with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from workers.probes import keyword_scores, syntactic_scores

S = 8
# dependents 2->1, 3->1, 5->4, 7->3: offsets 1, 2, 1, 4 -> best fixed offset (1) gets 2 of 4
ARCS = torch.tensor([[-1, -1, 1, 1, -1, 4, -1, 3]])


def one_hot_rows(targets: list[int]) -> torch.Tensor:
    A = torch.zeros(S, S)
    A[torch.arange(S), torch.tensor(targets)] = 1
    return A  # [S, S]


def test_syntactic_known_answers() -> None:
    partner = one_hot_rows([0, 0, 1, 1, 3, 4, 5, 3])  # follows every arc
    previous = one_hot_rows([0, 0, 1, 2, 3, 4, 5, 6])
    self_only = torch.eye(S)  # self excluded: argmax falls back to key 0
    mixed = 0.6 * torch.eye(S) + 0.4 * partner  # the self peak must be ignored
    pats = torch.stack([partner, previous, self_only, mixed])[None, None]  # [1, 1, 4, S, S]
    out = syntactic_scores(pats, ARCS)
    assert out["syntactic_baseline"].item() == pytest.approx(0.5)
    assert out["syntactic_accuracy"][0].tolist() == pytest.approx([1.0, 0.5, 0.0, 1.0])
    assert out["syntactic"][0].tolist() == pytest.approx([0.5, 0.0, -0.5, 0.5])


def test_syntactic_pools_dependents_over_the_batch_and_variants() -> None:
    partner = one_hot_rows([0, 0, 1, 1, 3, 4, 5, 3])
    previous = one_hot_rows([0, 0, 1, 2, 3, 4, 5, 6])
    arcs = torch.cat([ARCS, torch.tensor([[-1, 0, -1, -1, -1, -1, -1, -1]])])  # + 1->0 (offset 1)
    # example 1 has one dependent; the previous-token head gets it right
    pats = torch.stack([torch.stack([partner, previous]), torch.stack([previous, previous])])
    pats = pats[:, None]  # [B=2, L=1, H=2, S, S]
    out = syntactic_scores(pats, arcs)
    # baseline: offset 1 holds 3 of the 5 dependents
    assert out["syntactic_baseline"].item() == pytest.approx(3 / 5)
    assert out["syntactic_accuracy"][0].tolist() == pytest.approx([5 / 5, 3 / 5])
    packed = syntactic_scores(torch.stack([pats, pats]), arcs)  # [V=2, ...]
    assert packed["syntactic"].shape == (2, 1, 2)
    torch.testing.assert_close(packed["syntactic"][1], out["syntactic"])


def test_syntactic_without_dependents_is_nan_and_bad_arcs_raise() -> None:
    pats = torch.eye(S)[None, None, None]  # [1, 1, 1, S, S]
    none = syntactic_scores(pats, torch.full((1, S), -1))
    assert math.isnan(none["syntactic"].item())
    with pytest.raises(ValueError):
        syntactic_scores(pats, torch.tensor([[-1, 3, -1, -1, -1, -1, -1, -1]]))


def test_keyword_lift_known_answers() -> None:
    L6 = 6
    kw = torch.zeros(3, L6, dtype=torch.bool)
    kw[0, [1, 2]] = True  # two keywords visible from label_pos 4
    kw[1, [1]] = True  # no label position: skipped
    kw[2, [5]] = True  # its only keyword is after the label position: skipped
    label_pos = torch.tensor([4, -1, 4])
    uniform = torch.tril(torch.ones(L6, L6))
    uniform = uniform / uniform.sum(-1, keepdim=True)
    seeker = uniform.clone()
    seeker[4] = torch.tensor([0.0, 0.5, 0.5, 0.0, 0.0, 0.0])
    half = uniform.clone()
    half[4] = torch.tensor([0.5, 0.25, 0.0, 0.0, 0.25, 0.0])
    heads = torch.stack([uniform, seeker, half])  # [H, Q, K]
    pats = heads[None, None].expand(3, 1, 3, L6, L6)  # [B, L, H, Q, K]
    lift = keyword_scores(pats, kw, label_pos)
    # uniform: 2/5 on 2 of 5 keys -> 1; seeker: mass 1 / (2/5); half: 0.25 / (2/5)
    assert lift[0].tolist() == pytest.approx([1.0, 2.5, 0.625])
    packed = keyword_scores(pats[None].expand(2, *pats.shape), kw, label_pos)  # [V=2, ...]
    torch.testing.assert_close(packed[1], lift)
    assert math.isnan(keyword_scores(pats, kw, torch.tensor([-1, -1, -1]))[0, 0].item())
