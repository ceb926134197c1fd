"""Pruning curves (Michel et al. 2019; SCIENCE.md finding 3): probe loss with heads removed.

For each fraction f of ``ProbeSettings.pruning_fractions``, k = round-half-up(f · L · H) heads
of a variant are removed at once (their output zeroed through the model's ``head_mask``,
exactly as ``ablation_delta`` zeroes one head), and the probe loss (``workers.model.mean_loss``,
the loss ``probe_loss`` reports) is measured:

- ``prune.importance.f0.10``: the k heads with the lowest ``importance`` (the normalized head
  importance of the same probe) removed; ties go to the lower flat index l·H + h;
- ``prune.random.f0.10``: the mean loss over ``pruning_random_orders`` random orders, each
  removing the first k heads of a permutation of the L·H heads. The permutations come from a
  ``torch.Generator`` seeded with ``pruning_seed`` and are shared by every variant, so they
  are deterministic and do not depend on which pack a variant trained in.

Both orders are nested (the heads removed at f ⊂ those removed at f' > f), like a pruning run
that removes heads one after another. Every variant of the pack is evaluated in the same
forward pass through a ``[V, L, H]`` mask: one pass per distinct (order, k), k = 0 shared.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from workers.model import mean_loss
from workers.probes.settings import ProbeSettings, fraction_label

ORDERS = ("importance", "random")


def pruned_heads(fraction: float, n_heads: int) -> int:
    """k = round-half-up(fraction · n_heads), at most n_heads."""
    return min(n_heads, math.floor(fraction * n_heads + 0.5))


def importance_order(importance: torch.Tensor) -> torch.Tensor:
    """``importance [V, L, H]`` → flat head indices ``[V, L·H]``, least important first."""
    flat = importance.reshape(importance.shape[0], -1)  # [V, L*H]
    return torch.sort(flat, dim=-1, stable=True).indices  # [V, L*H]


def random_orders(n_heads: int, n_orders: int, seed: int) -> torch.Tensor:
    """``[n_orders, n_heads]`` permutations of the flat head indices, fixed by ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(n_heads, generator=gen) for _ in range(n_orders)])  # [R, N]


def removal_mask(order: torch.Tensor, k: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """Head mask ``[V, L, H]`` with the first ``k`` heads of ``order [V, L·H]`` set to 0."""
    V, L, H = shape
    mask = torch.ones(V, L * H, device=order.device)  # [V, L*H]
    mask.scatter_(1, order[:, :k], 0.0)
    return mask.view(V, L, H)  # [V, L, H]


def pruning_curves(
    model: nn.Module,
    tokens: torch.Tensor,
    loss_mask: torch.Tensor | None,
    importance: torch.Tensor,
    settings: ProbeSettings,
) -> dict[str, torch.Tensor]:
    """``{f"prune.{order}.{fraction_label(f)}": loss [V]}`` for every pruning fraction.

    ``tokens [V, B, S]`` (or ``[B, S]``, shared), ``loss_mask`` as ``mean_loss`` takes it,
    ``importance [V, L, H]`` (only its order per variant matters).
    """
    V, L, H = model.n_variants, model.cfg.n_layers, model.cfg.n_heads
    n = L * H
    if tokens.dim() == 2:
        tokens = tokens.unsqueeze(0).expand(V, *tokens.shape)  # [V, B, S]
    device = tokens.device
    orders = {
        "importance": [importance_order(importance.to(device))],  # [V, N] each
        "random": [p.to(device).expand(V, n) for p in random_orders(n, settings.pruning_random_orders,
                                                                    settings.pruning_seed)],
    }
    cache: dict[tuple[str, int, int], torch.Tensor] = {}  # (order, index, k) -> loss [V]

    def loss(name: str, index: int, k: int) -> torch.Tensor:
        key = ("intact", 0, 0) if k == 0 else (name, index, k)
        if key not in cache:
            # on top of the model's own head_mask, which the intact probe loss also sees
            mask = removal_mask(orders[name][index], k, (V, L, H)) * model.head_mask  # [V, L, H]
            cache[key] = mean_loss(model(tokens, head_mask=mask), tokens, loss_mask).float()  # [V]
        return cache[key]

    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for fraction in settings.pruning_fractions:
            k = pruned_heads(fraction, n)
            for name in ORDERS:
                curves = [loss(name, i, k) for i in range(len(orders[name]))]
                out[f"prune.{name}.{fraction_label(fraction)}"] = torch.stack(curves).mean(0)  # [V]
    return out
