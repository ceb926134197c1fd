"""Per-head metrics that are pure functions of attention patterns and tokens.

Every function takes a pack of variants at once: ``patterns [V, B, L, H, Q, K]`` (rows sum to
1 under the causal mask) with ``tokens [V, B, S]`` or shared ``[B, S]``, and returns
``[V, L, H]``; ``head_scores`` also accepts a single run ``[B, L, H, Q, K]`` → ``[L, H]``.
Scores are computed per example and then averaged over the batch, as TransformerLens'
``detect_head`` does for a list of sequences.

Conventions fixed here (part of the metric definitions, see SCIENCE.md):
- query row ``q`` sees keys ``0 .. q + (K - Q)``; with Q == K that is ``q + 1`` keys.
- ``entropy``, ``confidence`` and ``sink`` average over *all* query rows (row 0, which sees
  one key, has entropy 0, confidence 1 and sink 1).
- ``entropy_norm`` and ``positional`` skip rows that see a single key: such a row carries
  no choice, and ``ln(1) = 0`` would divide by zero.
- detection scores: where the excluded pattern has no mass left (e.g. a pure BOS head with
  ``exclude_bos``) TransformerLens returns 0/0 = NaN; we define the score as 0 (no
  attention left to match the pattern).
- the flags apply to every example of the batch. (TransformerLens' list-of-sequences path
  re-calls ``detect_head`` without passing them on, so its batched scores silently ignore
  the flags; we do not reproduce that.)
- position 0 is expected to hold BOS, as TL's ``to_tokens`` prepends it.
"""

from __future__ import annotations

import torch

from analysis.matching import visible_keys
from workers.probes.settings import ProbeSettings

DETECTION_METRICS = ("prev_token", "duplicate_token", "induction")
PATTERN_METRICS = (
    *DETECTION_METRICS,
    "entropy",
    "entropy_norm",
    "confidence",
    "sink",
    "positional",
    "positional_offset",
)


def as_pack(
    patterns: torch.Tensor, tokens: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Give patterns a variant axis and tokens a matching one; say whether it was added."""
    single = patterns.dim() == 5
    if single:
        patterns = patterns.unsqueeze(0)  # [1, B, L, H, Q, K]
    if patterns.dim() != 6:
        raise ValueError(f"patterns must be [V,B,L,H,Q,K] or [B,L,H,Q,K], got {patterns.shape}")
    if not patterns.is_floating_point():
        raise TypeError("patterns must be a floating-point tensor")
    if patterns.dtype in (torch.float16, torch.bfloat16):
        patterns = patterns.float()
    V, B = patterns.shape[:2]
    if tokens is not None:
        if tokens.dim() == 2:
            tokens = tokens.unsqueeze(0)  # [1, B, S]
        if tokens.dim() != 3 or tokens.shape[1] != B or tokens.shape[0] not in (1, V):
            raise ValueError(f"tokens {tuple(tokens.shape)} do not match patterns {patterns.shape}")
        tokens = tokens.to(patterns.device).expand(V, B, tokens.shape[-1])  # [V, B, S]
    return patterns, tokens, single


def detection_patterns(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """TransformerLens' 0/1 detection patterns for ``tokens [..., S]`` → ``[..., S, S]`` bool.

    - prev_token:      P[i, j] = 1 iff j == i - 1
    - duplicate_token: P[i, j] = 1 iff t_i == t_j and j < i
    - induction:       P[i, j] = 1 iff t_{j-1} == t_i and 1 ≤ j ≤ i  (TL builds it by shifting
      the duplicate pattern one column right, zeroing column 0 and taking the lower triangle)
    """
    S = tokens.shape[-1]
    idx = torch.arange(S, device=tokens.device)
    strictly_lower = idx[None, :] < idx[:, None]  # [S, S] (j < i)
    same = tokens[..., :, None] == tokens[..., None, :]  # [..., S, S] t_i == t_j
    prev = (idx[None, :] == idx[:, None] - 1).expand_as(same)  # [..., S, S]
    duplicate = same & strictly_lower  # [..., S, S]
    induction = torch.zeros_like(same)  # [..., S, S]
    # column j (≥ 1) of induction is column j-1 of `same`; keep 1 ≤ j ≤ i (j-1 < i)
    induction[..., :, 1:] = same[..., :, :-1] & strictly_lower[:, :-1]
    return {"prev_token": prev, "duplicate_token": duplicate, "induction": induction}


def detection_scores(
    patterns: torch.Tensor,
    tokens: torch.Tensor,
    *,
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
) -> dict[str, torch.Tensor]:
    """TL ``detect_head`` with error measure ``mul`` for the three named heads → ``[V, L, H]``.

    score = Σ(A'⊙P) / ΣA' over the (query, key) plane of each example, A' being A with
    column 0 (``exclude_bos``) and/or the diagonal (``exclude_current_token``) zeroed; then
    the mean over the batch.
    """
    patterns, tokens, _ = as_pack(patterns, tokens)
    assert tokens is not None
    V, B, L, H, Q, K = patterns.shape
    if not Q == K == tokens.shape[-1]:
        raise ValueError(f"detection needs Q == K == S, got Q={Q} K={K} S={tokens.shape[-1]}")
    keep = torch.ones(Q, K, dtype=patterns.dtype, device=patterns.device)  # [Q, K]
    if exclude_bos:
        keep[:, 0] = 0
    if exclude_current_token:
        keep.fill_diagonal_(0)
    dets = detection_patterns(tokens)
    # one pass over A: the three detection weights and the kept-mass weight (for ΣA')
    weights = torch.stack(
        [dets[name].to(patterns.dtype) * keep for name in DETECTION_METRICS]
        + [keep.expand(V, B, Q, K)],
        dim=2,
    )  # [V, B, 4, Q, K]
    sums = torch.einsum("vblhqk,vbdqk->vblhd", patterns, weights)  # [V, B, L, H, 4]
    num, denom = sums[..., :3], sums[..., 3:]  # [V, B, L, H, 3], [V, B, L, H, 1]
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))  # [V, B, L, H, 1]
    score = torch.where(denom > 0, num / safe, torch.zeros_like(num))  # [V, B, L, H, 3]
    mean = score.mean(dim=1)  # [V, L, H, 3]
    return {name: mean[..., i] for i, name in enumerate(DETECTION_METRICS)}  # [V, L, H] each


def row_statistics(patterns: torch.Tensor) -> dict[str, torch.Tensor]:
    """entropy, entropy_norm, confidence, sink, positional, positional_offset → ``[V, L, H]``."""
    patterns, _, _ = as_pack(patterns)
    V, B, L, H, Q, K = patterns.shape
    n_vis = visible_keys(Q, K, patterns.device)  # [Q]
    choice_rows = n_vis >= 2  # [Q] rows with more than one visible key

    row_entropy = -torch.special.xlogy(patterns, patterns).sum(-1)  # [V, B, L, H, Q] (0 log 0 = 0)
    log_n = torch.log(n_vis.to(patterns.dtype))  # [Q]
    row_entropy_norm = row_entropy[..., choice_rows] / log_n[choice_rows]  # [V, B, L, H, Q']

    argmax_key = patterns.argmax(dim=-1)  # [V, B, L, H, Q] first maximum on ties
    offset = (n_vis - 1) - argmax_key  # [V, B, L, H, Q] relative offset q - k
    offset = offset[..., choice_rows]  # [V, B, L, H, Q']
    n_rows = offset.shape[-1]
    counts = torch.zeros(V, L, H, K, dtype=patterns.dtype, device=patterns.device)  # [V, L, H, K]
    pooled = offset.permute(0, 2, 3, 1, 4).reshape(V, L, H, B * n_rows)  # [V, L, H, B*Q']
    counts.scatter_add_(-1, pooled, torch.ones_like(pooled, dtype=patterns.dtype))
    top_count, top_offset = counts.max(dim=-1)  # [V, L, H] (smallest offset on ties)
    positional = top_count / max(B * n_rows, 1)  # [V, L, H]

    return {
        "entropy": row_entropy.mean(dim=(1, 4)),  # [V, L, H]
        "entropy_norm": row_entropy_norm.mean(dim=(1, 4)),  # [V, L, H]
        "confidence": patterns.amax(dim=-1).mean(dim=(1, 4)),  # [V, L, H]
        "sink": patterns[..., 0].mean(dim=(1, 4)),  # [V, L, H]
        "positional": positional,  # [V, L, H]
        "positional_offset": top_offset.to(patterns.dtype),  # [V, L, H]
    }


def head_scores(
    patterns: torch.Tensor,
    tokens: torch.Tensor,
    *,
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
) -> dict[str, torch.Tensor]:
    """Every pattern metric of every head, averaged over the batch.

    ``patterns [B, L, H, Q, K]`` with ``tokens [B, S]`` → ``{metric: [L, H]}``;
    ``patterns [V, B, L, H, Q, K]`` with ``tokens [V, B, S]`` or ``[B, S]`` → ``[V, L, H]``.
    Keys: prev_token, duplicate_token, induction, entropy, entropy_norm, confidence, sink,
    positional, positional_offset. The flags change the three detection metrics only and
    must be stored with the scores (see ``ProbeSettings``).
    """
    single = patterns.dim() == 5
    packed, packed_tokens, _ = as_pack(patterns, tokens)
    assert packed_tokens is not None
    with torch.no_grad():
        out = detection_scores(
            packed,
            packed_tokens,
            exclude_bos=exclude_bos,
            exclude_current_token=exclude_current_token,
        )
        out.update(row_statistics(packed))
    if single:
        out = {k: v[0] for k, v in out.items()}  # [L, H]
    return out


def head_scores_for(
    patterns: torch.Tensor, tokens: torch.Tensor, settings: ProbeSettings
) -> dict[str, torch.Tensor]:
    """``head_scores`` with the flags taken from ``settings``."""
    return head_scores(
        patterns,
        tokens,
        exclude_bos=settings.exclude_bos,
        exclude_current_token=settings.exclude_current_token,
    )
