"""JS distance between heads (Clark et al.) and Hungarian matching across runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workers.probes import cross_run_matching, js_distance, js_matrix, match_heads


def random_patterns(seed: int, B: int = 3, L: int = 2, H: int = 3, S: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, L, H, S, S, generator=g, dtype=torch.float64) * 3
    causal = torch.ones(S, S, dtype=torch.bool).tril()
    return logits.masked_fill(~causal, float("-inf")).softmax(-1)  # [B, L, H, S, S]


def reference_js(a: np.ndarray, b: np.ndarray, s: float = 0.001) -> np.ndarray:
    """Loops over examples, head pairs, rows; each row smoothed over its visible keys."""
    B, La, Ha, Q, _ = a.shape
    fa, fb = a.reshape(B, La * Ha, Q, -1), b.reshape(B, -1, Q, a.shape[-1])
    out = np.zeros((fa.shape[1], fb.shape[1]))
    for ex in range(B):
        for i in range(fa.shape[1]):
            for j in range(fb.shape[1]):
                for q in range(Q):
                    n = q + 1
                    p = (1 - s) * fa[ex, i, q, :n] + s / n
                    r = (1 - s) * fb[ex, j, q, :n] + s / n
                    m = (p + r) / 2
                    out[i, j] += 0.5 * np.sum(p * np.log(p / m)) + 0.5 * np.sum(r * np.log(r / m))
    return out / B


def test_js_matrix_matches_reference() -> None:
    a, b = random_patterns(0), random_patterns(1, L=1, H=2)
    ours = js_matrix(a, b)
    assert ours.shape == (6, 2)
    np.testing.assert_allclose(ours.numpy(), reference_js(a.numpy(), b.numpy()), rtol=1e-9, atol=1e-12)


def test_js_distance_is_symmetric_with_zero_diagonal() -> None:
    p = random_patterns(2)
    d = js_distance(p)
    assert torch.allclose(d, d.T, atol=1e-12)
    assert d.diagonal().abs().max().item() < 1e-12
    assert (d + torch.eye(6, dtype=d.dtype)).min().item() > 0
    packed = js_distance(torch.stack([p, random_patterns(3)]))  # [V=2, ...]
    assert packed.shape == (2, 6, 6)
    torch.testing.assert_close(packed[0], d)
    # a one-hot head and a uniform head are maximally apart on long rows (≤ ln 2 per row)
    S = 7
    onehot = torch.zeros(1, 1, 1, S, S, dtype=torch.float64)
    onehot[..., 0] = 1
    uniform = torch.tril(torch.ones(S, S, dtype=torch.float64))
    uniform = (uniform / uniform.sum(-1, keepdim=True))[None, None, None]
    assert 0 < js_matrix(onehot, uniform).item() < S * np.log(2)


def test_hungarian_recovers_a_permutation_of_heads() -> None:
    a = random_patterns(4, B=4, L=2, H=4)
    perm = torch.tensor([5, 2, 7, 0, 3, 6, 1, 4])  # b's head k is a's head perm[k]
    flat = a.reshape(4, 8, 7, 7)[:, perm]
    noise = torch.rand(flat.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    noisy = (flat + 0.02 * noise * torch.ones(7, 7, dtype=torch.float64).tril())
    noisy = noisy / noisy.sum(-1, keepdim=True)
    b = noisy.reshape(4, 2, 4, 7, 7)
    matrix, matching = cross_run_matching(a, b)
    assert matrix.shape == (8, 8)
    recovered = dict(zip(matching.heads_a.tolist(), matching.heads_b.tolist(), strict=True))
    assert all(recovered[int(perm[k])] == k for k in range(8))
    assert matching.total == pytest.approx(float(matching.distance.sum()))
    pairs = matching.as_layer_head(4, 4)
    assert pairs[0] == ((0, 0), divmod(int((perm == 0).nonzero()), 4))


def test_match_heads_on_rectangular_cost() -> None:
    cost = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.05]])
    m = match_heads(cost)
    assert m.heads_a.tolist() == [0, 1] and m.heads_b.tolist() == [1, 2]
    assert m.total == pytest.approx(0.15)
