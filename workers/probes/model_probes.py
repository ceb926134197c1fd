"""Per-head metrics that need the model: importance, ablation, language selectivity, ICL score.

Heads are scaled *per example* through the model's named hook point
``blocks[l].attn.hook_pattern``: multiplying head h's attention pattern by ξ multiplies its
output ``z_h = A_h V_h`` by ξ, which is exactly what ``head_mask`` does, but with a factor per
example instead of per variant. That gives

- ``importance`` (Michel et al. 2019, I_h = E_x |∂L_x/∂ξ_h| at ξ = 1) from ONE backward pass:
  the examples do not interact, so ∂(Σ_x L_x)/∂ξ_{x,h} = ∂L_x/∂ξ_h;
- all L·H single-head ablations from a few forward passes over copies of the probe batch,
  copy c with head c zeroed (ξ = 0) in every example.

Losses use ``workers.model.token_losses`` and its ``loss_mask`` alignment, so "loss" here is
the loss the pack trains on; the per-example loss L_x is the mean over x's counted targets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from workers.model import token_losses


def _pack_tokens(tokens: torch.Tensor, V: int) -> torch.Tensor:
    """Shared ``[B, S]`` tokens → the pack's ``[V, B, S]`` (a view, no copy)."""
    if tokens.dim() == 2:
        tokens = tokens.unsqueeze(0).expand(V, *tokens.shape)  # [V, B, S]
    return tokens


def target_mask(loss_mask: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
    """Which entries of ``token_losses`` count: ``[V, B, S-1]`` float.

    Same alignment as ``workers.model.token_losses`` (entry i predicts token i+1 and counts
    where ``loss_mask[..., i + 1]``); keep the two in step if that convention changes.
    """
    V, B, S = tokens.shape
    if loss_mask is None:
        return torch.ones(V, B, S - 1, device=tokens.device)  # [V, B, S-1]
    if loss_mask.dim() == 2:
        loss_mask = loss_mask.unsqueeze(0).expand(V, B, S)  # [V, B, S]
    return loss_mask[..., 1:].to(device=tokens.device, dtype=torch.float32)  # [V, B, S-1]


@contextmanager
def scaled_heads(model: nn.Module, scale: torch.Tensor) -> Iterator[None]:
    """Multiply head (l, h)'s pattern — hence its output — by ``scale [V, B, L, H]`` per example."""
    handles = []
    for layer, block in enumerate(model.blocks):

        def hook(_mod: nn.Module, _inp: tuple, pattern: torch.Tensor, layer: int = layer):
            factor = scale[:, :, layer, :, None, None].to(pattern.dtype)  # [V, B, H, 1, 1]
            return pattern * factor  # [V, B, H, Q, K]

        handles.append(block.attn.hook_pattern.register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def example_losses(
    logits: torch.Tensor, tokens: torch.Tensor, loss_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean next-token loss of each example over its counted targets: ``[V, B]``."""
    tokens = _pack_tokens(tokens, logits.shape[0])
    losses = token_losses(logits, tokens, loss_mask)  # [V, B, S-1]
    count = target_mask(loss_mask, tokens).sum(-1).clamp(min=1)  # [V, B]
    return losses.sum(-1) / count  # [V, B]


def normalize_per_layer(raw: torch.Tensor) -> torch.Tensor:
    """Divide ``[..., L, H]`` by each layer's ℓ2 norm over heads (Michel et al.); 0 stays 0."""
    norm = raw.norm(dim=-1, keepdim=True)  # [..., L, 1]
    return torch.where(norm > 0, raw / torch.where(norm > 0, norm, 1.0), torch.zeros_like(raw))


def importance_from_grad(grad: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example gradients ``∂L_x/∂ξ [V, B, L, H]`` → importance metrics ``[V, L, H]``."""
    raw = grad.abs().mean(dim=1)  # [V, L, H] E_x |∂L_x/∂ξ_h|
    return {"importance": normalize_per_layer(raw), "importance_raw": raw}


def head_importance(
    model: nn.Module, tokens: torch.Tensor, loss_mask: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Michel et al. head importance, normalized per layer, and the raw E_x|∂L_x/∂ξ_h|."""
    tokens = _pack_tokens(tokens, model.n_variants)  # [V, B, S]
    V, B = tokens.shape[:2]
    cfg = model.cfg
    xi = torch.ones(V, B, cfg.n_layers, cfg.n_heads, device=tokens.device, requires_grad=True)
    with torch.enable_grad(), scaled_heads(model, xi):
        logits = model(tokens)  # [V, B, S, N]
        (grad,) = torch.autograd.grad(example_losses(logits, tokens, loss_mask).sum(), xi)
    return importance_from_grad(grad)  # [V, L, H]


def ablation_losses(
    model: nn.Module,
    tokens: torch.Tensor,
    loss_mask: torch.Tensor | None = None,
    member: torch.Tensor | None = None,
    max_rows: int = 512,
) -> torch.Tensor:
    """Loss of the intact model and of every single-head ablation, per example group.

    Returns ``[V, 1 + L·H, G]``: entry 0 is the intact model, entry 1 + l·H + h has head
    (l, h) zeroed. Each loss is token-weighted over the group's counted targets, as
    ``workers.model.mean_loss`` weighs a batch. ``member [B, G]`` (0/1) says which examples
    form each group (groups may overlap); None is one group holding the whole batch.
    ``max_rows`` bounds V·copies·B, the examples of one forward pass.
    """
    tokens = _pack_tokens(tokens, model.n_variants)  # [V, B, S]
    V, B, S = tokens.shape
    L, H = model.cfg.n_layers, model.cfg.n_heads
    n_abl = 1 + L * H
    if member is None:
        member = torch.ones(B, 1, device=tokens.device)  # [B, G]
    member = member.to(device=tokens.device, dtype=torch.float32)  # [B, G]
    counted = target_mask(loss_mask, tokens)  # [V, B, S-1]
    group_count = torch.einsum("vb,bg->vg", counted.sum(-1), member)  # [V, G]
    mask_pack = None
    if loss_mask is not None:
        mask_pack = loss_mask.unsqueeze(0).expand(V, B, S) if loss_mask.dim() == 2 else loss_mask

    out = torch.empty(V, n_abl, member.shape[1], device=tokens.device)  # [V, A, G]
    per_pass = max(1, max_rows // max(V * B, 1))
    with torch.no_grad():
        for start in range(0, n_abl, per_pass):
            copies = torch.arange(start, min(n_abl, start + per_pass), device=tokens.device)
            n = copies.numel()
            scale = torch.ones(V, n, B, L * H, device=tokens.device)  # [V, n, B, L*H]
            ablated = copies > 0  # copy 0 is the intact model
            scale[:, ablated.nonzero().squeeze(-1), :, copies[ablated] - 1] = 0.0
            scale = scale.reshape(V, n * B, L, H)  # [V, n*B, L, H] copy-major
            rep_tokens = tokens.repeat(1, n, 1)  # [V, n*B, S]
            rep_mask = None if mask_pack is None else mask_pack.repeat(1, n, 1)  # [V, n*B, S]
            with scaled_heads(model, scale):
                logits = model(rep_tokens)  # [V, n*B, S, N]
            sums = token_losses(logits, rep_tokens, rep_mask).sum(-1).view(V, n, B)  # [V, n, B]
            out[:, start : start + n] = torch.einsum("vnb,bg->vng", sums, member)  # [V, n, G]
    return out / group_count[:, None, :].clamp(min=1)  # [V, A, G]


def ablation_scores(
    model: nn.Module,
    tokens: torch.Tensor,
    loss_mask: torch.Tensor | None = None,
    language: torch.Tensor | None = None,
    *,
    eps: float = 1e-6,
    max_rows: int = 512,
) -> dict[str, torch.Tensor]:
    """``ablation_delta`` and, given ≥ 2 languages, ``language_selectivity`` → ``[V, L, H]``.

    ablation_delta = loss with head h zeroed − intact loss, on the whole batch.
    language_selectivity = (max_ℓ Δ_ℓ − min_ℓ Δ_ℓ) / (Σ_ℓ |Δ_ℓ| + ε) with Δ_ℓ the ablation
    delta on language ℓ's examples alone (examples with language -1 take part in no Δ_ℓ);
    ``language_delta_max`` = max_ℓ Δ_ℓ is returned too (the ``language`` role needs the head
    to matter somewhere).
    """
    tokens = _pack_tokens(tokens, model.n_variants)  # [V, B, S]
    V, B, _ = tokens.shape
    L, H = model.cfg.n_layers, model.cfg.n_heads
    member = torch.ones(B, 1, device=tokens.device)  # [B, 1] group 0: the whole batch
    langs = torch.empty(0, dtype=torch.long)
    if language is not None:
        language = language.to(tokens.device)
        if language.dim() != 1:
            raise ValueError("language must be [B], shared by the pack")
        langs = torch.unique(language[language >= 0])  # sorted ids
        member = torch.cat([member, (language[:, None] == langs[None, :]).float()], dim=1)
    losses = ablation_losses(model, tokens, loss_mask, member, max_rows)  # [V, A, G]
    delta = losses[:, 1:] - losses[:, :1]  # [V, L*H, G]
    out = {"ablation_delta": delta[..., 0].reshape(V, L, H)}  # [V, L, H]
    if langs.numel() >= 2:
        per_lang = delta[..., 1:].reshape(V, L, H, langs.numel())  # [V, L, H, G']
        spread = per_lang.amax(-1) - per_lang.amin(-1)  # [V, L, H]
        out["language_selectivity"] = spread / (per_lang.abs().sum(-1) + eps)  # [V, L, H]
        out["language_delta_max"] = per_lang.amax(-1)  # [V, L, H]
    return out


def icl_positions(seq_len: int, late_frac: float = 0.9, early_frac: float = 0.09) -> tuple[int, int]:
    """Scaled Olsson positions (token 500 vs 50): (early, late), each round-half-up(f·(S−1)) ≥ 1."""
    def at(frac: float) -> int:
        return min(seq_len - 1, max(1, math.floor(frac * (seq_len - 1) + 0.5)))

    return at(early_frac), at(late_frac)


def icl_score(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    loss_mask: torch.Tensor | None = None,
    *,
    late_frac: float = 0.9,
    early_frac: float = 0.09,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Loss on the token at the late position minus loss on the token at the early one: ``[V]``.

    "Loss at position p" is the loss of predicting token p from tokens 0..p-1. Averaged over
    the examples whose targets at both positions count; NaN when none does. Also returns the
    (early, late) positions used, which must be stored with the score.
    """
    tokens = _pack_tokens(tokens, logits.shape[0])  # [V, B, S]
    early, late = icl_positions(tokens.shape[-1], late_frac, early_frac)
    losses = token_losses(logits, tokens, loss_mask)  # [V, B, S-1]
    counted = target_mask(loss_mask, tokens)  # [V, B, S-1]
    both = counted[..., late - 1] * counted[..., early - 1]  # [V, B]
    diff = losses[..., late - 1] - losses[..., early - 1]  # [V, B]
    return (diff * both).sum(-1) / both.sum(-1), (early, late)  # [V]
