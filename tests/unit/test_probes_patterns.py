"""Pattern metrics: SCIENCE.md calibration values and agreement with a loop reference."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from workers.probes import PATTERN_METRICS, detection_patterns, head_scores

SEQ = 101  # BOS + 2 x 50


def repeated_tokens(seed: int = 0, half: int = 50, distinct: bool = True) -> torch.Tensor:
    """BOS + a random segment of ``half`` tokens, twice: ``[1, 1 + 2·half]``."""
    g = torch.Generator().manual_seed(seed)
    if distinct:
        seg = torch.randperm(1000, generator=g)[:half] + 4
    else:
        seg = torch.randint(4, 1004, (half,), generator=g)
    return torch.cat([torch.zeros(1, dtype=torch.long), seg, seg])[None]  # [1, S]


def ideal_induction(tokens: torch.Tensor) -> torch.Tensor:
    """Each row attends to the token after the most recent earlier occurrence of its own
    token; rows whose token has not occurred before attend to BOS. ``[S, S]``."""
    t = tokens.tolist()
    S = len(t)
    A = torch.zeros(S, S, dtype=torch.float64)
    for i in range(S):
        earlier = [j for j in range(i) if t[j] == t[i]]
        A[i, earlier[-1] + 1 if earlier else 0] = 1.0
    return A


def uniform_causal(S: int) -> torch.Tensor:
    A = torch.tril(torch.ones(S, S, dtype=torch.float64))
    return A / A.sum(-1, keepdim=True)  # [S, S]


def ideal_previous(S: int) -> torch.Tensor:
    A = torch.zeros(S, S, dtype=torch.float64)
    A[0, 0] = 1
    A[torch.arange(1, S), torch.arange(S - 1)] = 1
    return A


def as_heads(*heads: torch.Tensor) -> torch.Tensor:
    return torch.stack(heads)[None, None]  # [B=1, L=1, H, Q, K]


# ---------------------------------------------------------------- calibration (SCIENCE.md)


def test_calibration_values() -> None:
    tokens = repeated_tokens()
    pats = as_heads(ideal_induction(tokens[0]), uniform_causal(SEQ), ideal_previous(SEQ))
    default = head_scores(pats, tokens)
    no_bos = head_scores(pats, tokens, exclude_bos=True)
    # ideal induction head: 50 of 101 rows on their target, 51 on BOS
    assert default["induction"][0, 0].item() == pytest.approx(50 / 101, abs=1e-12)
    assert round(default["induction"][0, 0].item(), 3) == 0.495
    assert no_bos["induction"][0, 0].item() == pytest.approx(1.0, abs=1e-12)
    # uniform causal head: Σ_{i=51}^{100} 1/(i+1) over 101 rows
    expected_uniform = sum(1 / (i + 1) for i in range(51, 101)) / 101
    assert default["induction"][0, 1].item() == pytest.approx(expected_uniform, abs=1e-12)
    assert round(default["induction"][0, 1].item(), 3) == 0.007
    # ideal previous-token head: 100 of 101 rows (row 0 can only attend to itself)
    assert default["prev_token"][0, 2].item() == pytest.approx(100 / 101, abs=1e-12)
    assert round(default["prev_token"][0, 2].item(), 2) == 0.99


def test_calibration_holds_with_random_repeats_and_batches() -> None:
    """With repeats inside a segment the ideal head finds more targets; with distinct
    segments a batch of them averages to the same 0.495."""
    toks = torch.cat([repeated_tokens(seed) for seed in range(4)])  # [4, S]
    pats = torch.stack([as_heads(ideal_induction(t))[0] for t in toks])  # [4, 1, 1, S, S]
    assert head_scores(pats, toks)["induction"].item() == pytest.approx(50 / 101, abs=1e-12)
    assert head_scores(pats, toks, exclude_bos=True)["induction"].item() == pytest.approx(1.0)


def test_row_statistics_on_ideal_heads() -> None:
    tokens = repeated_tokens()
    pats = as_heads(ideal_induction(tokens[0]), uniform_causal(SEQ), ideal_previous(SEQ))
    s = head_scores(pats, tokens)
    uni_entropy = float(np.mean([math.log(q + 1) for q in range(SEQ)]))
    assert s["entropy"][0].tolist() == pytest.approx([0.0, uni_entropy, 0.0], abs=1e-12)
    assert s["entropy_norm"][0].tolist() == pytest.approx([0.0, 1.0, 0.0], abs=1e-12)
    assert s["confidence"][0, 0].item() == pytest.approx(1.0)
    assert s["confidence"][0, 1].item() == pytest.approx(np.mean([1 / (q + 1) for q in range(SEQ)]))
    assert s["sink"][0, 0].item() == pytest.approx(51 / 101)  # rows 0..50 on BOS
    assert s["sink"][0, 2].item() == pytest.approx(2 / 101)  # rows 0 and 1
    assert s["positional"][0, 2].item() == pytest.approx(1.0)  # rows 1..100 at offset 1
    assert s["positional_offset"][0, 2].item() == 1
    # induction rows 51..100 and BOS row 49 sit at offset 49: 51 of the 100 choice rows
    assert s["positional_offset"][0, 0].item() == 49
    assert s["positional"][0, 0].item() == pytest.approx(51 / 100)


def test_exclude_current_token_and_empty_denominator() -> None:
    S = 6
    tokens = torch.tensor([[0, 5, 5, 5, 5, 5]])
    self_head = torch.eye(S, dtype=torch.float64)
    bos_head = torch.zeros(S, S, dtype=torch.float64)
    bos_head[:, 0] = 1
    pats = as_heads(self_head, bos_head)
    s = head_scores(pats, tokens, exclude_current_token=True, exclude_bos=True)
    # all mass excluded: TL would give 0/0; defined as 0
    assert s["duplicate_token"][0].tolist() == [0.0, 0.0]
    assert not any(torch.isnan(v).any() for v in s.values())


# ------------------------------------------------------------- detection pattern construction


def tl_detection_patterns(tokens: np.ndarray) -> dict[str, np.ndarray]:
    """TransformerLens' construction, step by step (head_detector.py), for one sequence."""
    S = len(tokens)
    prev = np.zeros((S, S))
    prev[1:, :-1] = np.eye(S - 1)
    prev = np.tril(prev)
    token_pattern = np.tile(tokens, (S, 1))
    eq = np.equal(token_pattern, token_pattern.T).astype(int)
    np.fill_diagonal(eq, 0)
    dup = np.tril(eq.astype(float))
    shifted = np.roll(dup, shift=1, axis=1)
    ind = np.tril(np.concatenate([np.zeros((S, 1)), shifted[:, 1:]], axis=1))
    return {"prev_token": prev, "duplicate_token": dup, "induction": ind}


def test_detection_patterns_match_transformer_lens_construction() -> None:
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 4, (3, 17), generator=g)  # [B, S], many repeats
    ours = detection_patterns(tokens)
    for b in range(3):
        ref = tl_detection_patterns(tokens[b].numpy())
        for name in ref:
            np.testing.assert_array_equal(ours[name][b].numpy().astype(float), ref[name], err_msg=name)


# ---------------------------------------------------------- agreement with a loop reference


def reference_scores(
    A: np.ndarray, tokens: np.ndarray, exclude_bos: bool, exclude_current: bool
) -> dict[str, np.ndarray]:
    """Definitions written out with explicit loops; ``A [B, L, H, S, S]``, ``tokens [B, S]``."""
    B, L, H, Q, K = A.shape
    out = {m: np.zeros((L, H)) for m in PATTERN_METRICS}
    for layer in range(L):
        for head in range(H):
            per_ex: dict[str, list[float]] = {m: [] for m in PATTERN_METRICS[:-2]}
            offsets: list[int] = []
            for b in range(B):
                t = tokens[b]
                a = A[b, layer, head].copy()
                if exclude_bos:
                    a[:, 0] = 0
                if exclude_current:
                    np.fill_diagonal(a, 0)
                for name, P in (
                    ("prev_token", lambda i, j: j == i - 1),
                    ("duplicate_token", lambda i, j, t=t: t[i] == t[j] and j < i),
                    ("induction", lambda i, j, t=t: 1 <= j <= i and t[j - 1] == t[i]),
                ):
                    num = sum(a[i, j] for i in range(Q) for j in range(K) if P(i, j))
                    den = a.sum()
                    per_ex[name].append(num / den if den > 0 else 0.0)
                raw = A[b, layer, head]
                ent = [-sum(x * math.log(x) for x in raw[q, : q + 1] if x > 0) for q in range(Q)]
                per_ex["entropy"].append(float(np.mean(ent)))
                per_ex["entropy_norm"].append(
                    float(np.mean([ent[q] / math.log(q + 1) for q in range(1, Q)]))
                )
                per_ex["confidence"].append(float(np.mean([raw[q].max() for q in range(Q)])))
                per_ex["sink"].append(float(np.mean([raw[q, 0] for q in range(Q)])))
                offsets += [q - int(np.argmax(raw[q])) for q in range(1, Q)]
            for name, vals in per_ex.items():
                out[name][layer, head] = np.mean(vals)
            counts = Counter(offsets)
            best = max(counts.values())
            out["positional_offset"][layer, head] = min(o for o, c in counts.items() if c == best)
            out["positional"][layer, head] = best / len(offsets)
    return out


def random_patterns(
    g: torch.Generator, B: int, L: int, H: int, S: int, sharpness: float = 3.0
) -> torch.Tensor:
    logits = torch.randn(B, L, H, S, S, generator=g, dtype=torch.float64) * sharpness
    causal = torch.ones(S, S, dtype=torch.bool).tril()
    return logits.masked_fill(~causal, float("-inf")).softmax(-1)  # [B, L, H, S, S]


@pytest.mark.parametrize("exclude_bos,exclude_current", [(False, False), (True, False), (True, True)])
def test_agrees_with_loop_reference(exclude_bos: bool, exclude_current: bool) -> None:
    g = torch.Generator().manual_seed(7)
    B, L, H, S = 3, 2, 2, 12
    tokens = torch.randint(0, 4, (B, S), generator=g)  # small vocab: repeats everywhere
    pats = random_patterns(g, B, L, H, S)
    pats[0, 0, 1] = torch.eye(S, dtype=torch.float64)  # a self head: exercises the flags
    ours = head_scores(pats, tokens, exclude_bos=exclude_bos, exclude_current_token=exclude_current)
    ref = reference_scores(pats.numpy(), tokens.numpy(), exclude_bos, exclude_current)
    assert set(PATTERN_METRICS) <= set(ours)
    for name in PATTERN_METRICS:
        np.testing.assert_allclose(ours[name].numpy(), ref[name], rtol=1e-10, atol=1e-12, err_msg=name)
    assert ours["duplicate_token"].abs().sum() > 0 and ours["induction"].abs().sum() > 0


def test_variant_axis_matches_per_variant_calls() -> None:
    g = torch.Generator().manual_seed(11)
    V, B, L, H, S = 3, 2, 2, 3, 9
    pats = torch.stack([random_patterns(g, B, L, H, S) for _ in range(V)])  # [V, B, L, H, S, S]
    tokens = torch.randint(0, 3, (V, B, S), generator=g)
    packed = head_scores(pats, tokens, exclude_bos=True)
    shared = head_scores(pats, tokens[0])
    for v in range(V):
        single = head_scores(pats[v], tokens[v], exclude_bos=True)
        single_shared = head_scores(pats[v], tokens[0])
        for name in PATTERN_METRICS:
            assert packed[name].shape == (V, L, H)
            torch.testing.assert_close(packed[name][v], single[name])
            torch.testing.assert_close(shared[name][v], single_shared[name])


def test_float32_and_bad_shapes() -> None:
    tokens = repeated_tokens()
    pats = as_heads(ideal_induction(tokens[0])).float()
    assert head_scores(pats, tokens)["induction"].dtype == torch.float32
    with pytest.raises(ValueError):
        head_scores(pats[0], tokens)
    with pytest.raises(ValueError):
        head_scores(pats, tokens[:, :50])
