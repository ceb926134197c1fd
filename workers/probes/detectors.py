"""Per-head metrics that need ground truth from the data: dependency arcs and keywords.

Same shapes as ``patterns.py``: ``patterns [V, B, L, H, Q, K]`` (or without ``V``), ground
truth ``[B, ...]`` shared by the pack or ``[V, B, ...]`` per variant; outputs ``[V, L, H]``
(or ``[L, H]``). A metric whose ground truth is absent from the batch comes back NaN.
"""

from __future__ import annotations

import torch

from workers.probes.patterns import as_pack, visible_keys


def syntactic_scores(patterns: torch.Tensor, arcs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Clark-style dependency accuracy of each head, minus the best fixed-offset baseline.

    ``arcs [B, S]`` / ``[V, B, S]``: for each position the index of its dependency partner,
    an earlier position, or -1. A dependent ``q`` is predicted correctly by a head when the
    argmax of its attention row over keys ``0..q-1`` (self excluded; first maximum on ties)
    is ``arcs[q]``. Accuracy pools all dependents of the batch; the baseline is the share of
    those same dependents whose partner sits at the single most common offset ``q - arcs[q]``.

    Returns ``syntactic`` (accuracy − baseline) and ``syntactic_accuracy`` ``[V, L, H]``,
    and ``syntactic_baseline`` ``[V]``; all NaN when the batch has no dependents.
    """
    single = patterns.dim() == 5
    patterns, _, _ = as_pack(patterns)
    V, B, L, H, Q, K = patterns.shape
    if Q != K:
        raise ValueError("syntactic needs square patterns (Q == K)")
    arcs = arcs.to(patterns.device)
    if arcs.dim() == 2:
        arcs = arcs.unsqueeze(0)  # [1, B, S]
    arcs = arcs.expand(V, B, arcs.shape[-1])  # [V, B, S]
    pos = torch.arange(Q, device=patterns.device)  # [Q]
    dependent = arcs >= 0  # [V, B, Q]
    if bool((arcs[dependent] >= pos.expand_as(arcs)[dependent]).any()):
        raise ValueError("every arc must point to an earlier position")

    self_mask = torch.eye(Q, dtype=torch.bool, device=patterns.device)  # [Q, K]
    no_self = patterns.masked_fill(self_mask, -1.0)  # [V, B, L, H, Q, K]
    predicted = no_self.argmax(dim=-1)  # [V, B, L, H, Q]
    hit = (predicted == arcs[:, :, None, None, :]) & dependent[:, :, None, None, :]  # [V,B,L,H,Q]
    n_dep = dependent.sum(dim=(1, 2)).to(patterns.dtype)  # [V]
    accuracy = hit.sum(dim=(1, 4)).to(patterns.dtype) / n_dep[:, None, None]  # [V, L, H]

    offset = torch.where(dependent, pos - arcs, torch.zeros_like(arcs))  # [V, B, Q]
    counts = torch.zeros(V, Q, dtype=patterns.dtype, device=patterns.device)  # [V, offsets]
    counts.scatter_add_(1, offset.reshape(V, -1), dependent.reshape(V, -1).to(patterns.dtype))
    baseline = counts[:, 1:].amax(dim=1) / n_dep  # [V] (offsets ≥ 1 only)

    out = {
        "syntactic": accuracy - baseline[:, None, None],  # [V, L, H]
        "syntactic_accuracy": accuracy,  # [V, L, H]
        "syntactic_baseline": baseline,  # [V]
    }
    if single:
        out = {k: v[0] for k, v in out.items()}
    return out


def keyword_scores(
    patterns: torch.Tensor, keyword_mask: torch.Tensor, label_pos: torch.Tensor
) -> torch.Tensor:
    """Keyword lift of each head → ``[V, L, H]`` (or ``[L, H]``).

    For each example with ``label_pos >= 0`` and at least one keyword among the keys visible
    from it: the attention mass from row ``label_pos`` onto the visible keyword positions,
    divided by ``#visible keywords / #visible keys`` (what a uniform causal head would put
    there); the mean over those examples. NaN when no example qualifies.
    """
    single = patterns.dim() == 5
    patterns, _, _ = as_pack(patterns)
    V, B, L, H, Q, K = patterns.shape
    kw = keyword_mask.to(patterns.device).bool()
    if kw.dim() == 2:
        kw = kw.unsqueeze(0)  # [1, B, S]
    kw = kw.expand(V, B, kw.shape[-1])  # [V, B, K]
    lp = label_pos.to(patterns.device).long()
    if lp.dim() == 1:
        lp = lp.unsqueeze(0)  # [1, B]
    lp = lp.expand(V, B)  # [V, B]

    n_vis = visible_keys(Q, K, patterns.device)  # [Q]
    has_label = lp >= 0  # [V, B]
    row = lp.clamp(min=0)  # [V, B]
    vis_count = n_vis[row]  # [V, B]
    visible = torch.arange(K, device=patterns.device) < vis_count[..., None]  # [V, B, K]
    kw_vis = kw & visible  # [V, B, K]
    n_kw = kw_vis.sum(-1)  # [V, B]
    valid = has_label & (n_kw > 0)  # [V, B]

    index = row[:, :, None, None, None, None].expand(V, B, L, H, 1, K)  # [V, B, L, H, 1, K]
    label_rows = patterns.gather(4, index).squeeze(4)  # [V, B, L, H, K]
    mass = (label_rows * kw_vis[:, :, None, None, :].to(patterns.dtype)).sum(-1)  # [V, B, L, H]
    uniform = n_kw.to(patterns.dtype) / vis_count.to(patterns.dtype)  # [V, B]
    lift = mass / torch.where(valid, uniform, torch.ones_like(uniform))[:, :, None, None]
    weight = valid.to(patterns.dtype)[:, :, None, None]  # [V, B, 1, 1]
    n_valid = valid.sum(1).to(patterns.dtype)  # [V]
    out = (lift * weight).sum(1) / n_valid[:, None, None]  # [V, L, H] (NaN if none valid)
    return out[0] if single else out
