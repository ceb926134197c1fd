"""Head-to-head structure: Clark's JS distance between heads, within a run and across runs.

``js_matrix(a, b)[i, j]`` = Σ_q JS(a_i[q], b_j[q]) averaged over the probe examples, with
head index i = layer · H + head and both rows smoothed ``(1 − s)·a + s/n`` (s = 0.001).
Natural logarithm, as Clark et al.'s code. ``n`` is the number of keys the query row *sees*
(q + 1 under the causal mask): the smoothed row is then a distribution over exactly the
visible keys and future keys stay at zero. Clark's BERT sees every key, so there n is the
sequence length and the two readings coincide.

Heads have no identity across runs: evaluate both runs on the same fixed probe batch, build
the cross-run matrix, and match heads with the Hungarian algorithm (``match_heads``).
Analysis matches stored runs this way (:mod:`analysis.head_tracking`); ``workers.probes``
re-exports these functions for within-run use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def visible_keys(n_query: int, n_key: int, device: torch.device | None = None) -> torch.Tensor:
    """Keys each query row sees under the causal mask: ``[Q]`` int64 (queries are the last Q
    of K positions)."""
    return torch.arange(n_query, device=device) + (n_key - n_query) + 1  # [Q]


# elements of one [N_a, N_b, q_chunk, K] mixture block; bounds memory (~64 MiB in float32)
_BLOCK_ELEMENTS = 1 << 24


def _smoothed_heads(patterns: torch.Tensor, smoothing: float) -> torch.Tensor:
    """``[B, L, H, Q, K]`` → smoothed rows ``[B, L·H, Q, K]`` (float64, zero on future keys)."""
    if patterns.dim() != 5:
        raise ValueError(f"patterns must be [B, L, H, Q, K], got {tuple(patterns.shape)}")
    B, L, H, Q, K = patterns.shape
    n_vis = visible_keys(Q, K, patterns.device)  # [Q]
    visible = torch.arange(K, device=patterns.device) < n_vis[:, None]  # [Q, K]
    rows = patterns.reshape(B, L * H, Q, K).double()  # [B, N, Q, K]
    smooth = (1 - smoothing) * rows + smoothing / n_vis[:, None].double()  # [B, N, Q, K]
    return smooth * visible  # [B, N, Q, K]


def js_matrix(
    patterns_a: torch.Tensor, patterns_b: torch.Tensor, smoothing: float = 0.001
) -> torch.Tensor:
    """Clark JS distance between every head of run a and every head of run b.

    ``patterns_a [B, L_a, H_a, Q, K]``, ``patterns_b [B, L_b, H_b, Q, K]`` on the same probe
    examples → ``[L_a·H_a, L_b·H_b]`` float64.
    """
    if patterns_a.shape[0] != patterns_b.shape[0] or patterns_a.shape[-2:] != patterns_b.shape[-2:]:
        raise ValueError("both runs must be probed on the same batch (same B, Q, K)")
    a = _smoothed_heads(patterns_a, smoothing)  # [B, Na, Q, K]
    b = _smoothed_heads(patterns_b, smoothing)  # [B, Nb, Q, K]
    B, Na, Q, K = a.shape
    Nb = b.shape[1]
    # JS(p, r) = ½ Σ p log p + ½ Σ r log r − Σ m log m, m = (p + r) / 2
    neg_ent_a = torch.special.xlogy(a, a).sum(-1)  # [B, Na, Q]
    neg_ent_b = torch.special.xlogy(b, b).sum(-1)  # [B, Nb, Q]
    total = torch.zeros(Na, Nb, dtype=torch.float64, device=a.device)  # [Na, Nb]
    q_chunk = max(1, _BLOCK_ELEMENTS // max(Na * Nb * K, 1))
    for ex in range(B):
        for q0 in range(0, Q, q_chunk):
            pa = a[ex, :, q0 : q0 + q_chunk]  # [Na, q, K]
            pb = b[ex, :, q0 : q0 + q_chunk]  # [Nb, q, K]
            m = (pa[:, None] + pb[None, :]) / 2  # [Na, Nb, q, K]
            neg_ent_m = torch.special.xlogy(m, m).sum(-1)  # [Na, Nb, q]
            half = (neg_ent_a[ex, :, None, q0 : q0 + q_chunk] + neg_ent_b[ex, None, :, q0 : q0 + q_chunk]) / 2
            total += (half - neg_ent_m).sum(-1)  # [Na, Nb]
    return (total / B).clamp(min=0)  # [Na, Nb] (clamp: rounding can leave −1e-17)


def js_distance(patterns: torch.Tensor, smoothing: float = 0.001) -> torch.Tensor:
    """Within-run JS distance matrix: ``[B, L, H, Q, K]`` → ``[L·H, L·H]``;
    a pack ``[V, B, L, H, Q, K]`` → ``[V, L·H, L·H]``."""
    if patterns.dim() == 6:
        return torch.stack([js_matrix(p, p, smoothing) for p in patterns])  # [V, N, N]
    return js_matrix(patterns, patterns, smoothing)  # [N, N]


@dataclass(frozen=True)
class HeadMatching:
    """A one-to-one matching of run a's heads to run b's (flat index = layer · H + head)."""

    heads_a: np.ndarray  # [M] int
    heads_b: np.ndarray  # [M] int
    distance: np.ndarray  # [M] JS distance of each matched pair
    total: float

    def as_layer_head(self, n_heads_a: int, n_heads_b: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Pairs ((layer_a, head_a), (layer_b, head_b))."""
        return [
            (divmod(int(i), n_heads_a), divmod(int(j), n_heads_b))
            for i, j in zip(self.heads_a, self.heads_b, strict=True)
        ]


def match_heads(distance: torch.Tensor | np.ndarray) -> HeadMatching:
    """Hungarian matching minimizing the summed distance (``scipy`` ``linear_sum_assignment``)."""
    cost = distance.detach().cpu().numpy() if isinstance(distance, torch.Tensor) else distance
    cost = np.asarray(cost, dtype=np.float64)
    rows, cols = linear_sum_assignment(cost)
    picked = cost[rows, cols]
    return HeadMatching(rows, cols, picked, float(picked.sum()))


def cross_run_matching(
    patterns_a: torch.Tensor, patterns_b: torch.Tensor, smoothing: float = 0.001
) -> tuple[torch.Tensor, HeadMatching]:
    """Cross-run JS matrix ``[N_a, N_b]`` and the Hungarian matching on it."""
    matrix = js_matrix(patterns_a, patterns_b, smoothing)
    return matrix, match_heads(matrix)
