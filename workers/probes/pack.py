"""Probe a whole pack on its fixed probe batch: every metric of every head of every variant.

``probe_pack`` runs the model once with patterns (and per-example head scales for the
importance gradient), then computes the pattern metrics, the ground-truth metrics the batch
supports, importance (one backward), optionally the L·H ablations, the derived role and
specialization index, and the per-variant scalars.

The final probe of a pack (``final=True``) also measures the pruning curves
(``prune.importance.f0.10``, ``prune.random.f0.10``, ... per variant; see
``workers.probes.pruning``) and keeps the attention patterns of the first
``settings.pattern_examples`` probe examples, with the ``batch_key`` naming the tokens they
were computed on, for cross-run head matching. Other probes do neither and cost nothing extra.

``make_prober`` adapts it to the ``Prober`` callable ``workers.train.train_pack`` takes; given
``final_step`` it probes that step with ``final=True``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from workers.model import mean_loss
from workers.probes.detectors import keyword_scores, syntactic_scores
from workers.probes.model_probes import (
    ablation_scores,
    example_losses,
    icl_score,
    importance_from_grad,
    scaled_heads,
)
from workers.probes.patterns import head_scores_for
from workers.probes.pruning import pruned_heads, pruning_curves
from workers.probes.records import probe_records
from workers.probes.roles import assign_roles, specialization_index
from workers.probes.settings import ProbeSettings, fraction_label


@dataclass(frozen=True)
class PackProbeResult:
    """Scores of one probe of a pack. ``head``: metric → ``[V, L, H]``; ``scalar``: metric →
    ``[V]``; ``info``: what the numbers depend on (settings, resolved icl positions, and at
    the final probe the number of heads each pruning fraction removed).

    Final probe only (else None): ``patterns``, the attention patterns of the first
    ``settings.pattern_examples`` probe examples, ``[V, B', L, H, Q, K]`` float32 on the CPU
    (None too when ``pattern_examples`` is 0), and ``batch_key``, which names the tokens they
    were computed on: equal keys, equal tokens."""

    step: int
    head: dict[str, torch.Tensor]
    scalar: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)
    patterns: torch.Tensor | None = None
    batch_key: str | None = None

    def records(self, variant_ids: Sequence[object], drop_nan: bool = True) -> dict[str, np.ndarray]:
        """Tidy columnar records of every head and scalar metric (see ``probe_records``)."""
        return probe_records(variant_ids, self.step, {**self.head, **self.scalar}, drop_nan=drop_nan)


def _field(batch: Any, name: str, device: torch.device) -> torch.Tensor | None:
    value = getattr(batch, name, None)
    return None if value is None else value.to(device)


def tokens_key(tokens: torch.Tensor) -> str:
    """A ``batch_key`` computed from the tokens themselves: sha256 of shape and values, 32 hex."""
    data = tokens.detach().to("cpu", torch.int64).contiguous()
    digest = hashlib.sha256(repr(tuple(data.shape)).encode())
    digest.update(data.numpy().tobytes())
    return digest.hexdigest()[:32]


def probe_pack(
    model: nn.Module,
    batch: Any,
    step: int,
    settings: ProbeSettings | None = None,
    *,
    final: bool = False,
    batch_key: str | None = None,
) -> PackProbeResult:
    """Every per-head metric of the pack on ``batch`` (a ``workers.data.batch.Batch`` or any
    object with its fields: tokens ``[B, S]`` or ``[V, B, S]``, optional arcs, keyword_mask,
    label_pos, language, loss_mask).

    Head metrics: the pattern metrics (``head_scores``), ``syntactic``/``syntactic_accuracy``
    when the batch has arcs, ``keyword`` when it has keywords and label positions,
    ``importance``/``importance_raw`` (``settings.compute_importance``), ``ablation_delta``
    and, with ≥ 2 languages, ``language_selectivity``/``language_delta_max``
    (``settings.compute_ablation``), then ``role`` (index into ``roles.ROLES``) and
    ``specialization``. Scalars: ``icl_score``, ``probe_loss`` and, with arcs,
    ``syntactic_baseline``.

    ``final``: the pack's last probe. It adds the pruning curves to the scalars
    (``settings.compute_pruning``; importance is then computed whatever
    ``compute_importance`` says) and returns the first ``settings.pattern_examples``
    examples' patterns under ``batch_key`` (default: ``tokens_key`` of those examples' tokens).
    """
    settings = settings or ProbeSettings()
    device = next(model.parameters()).device
    V, L, H = model.n_variants, model.cfg.n_layers, model.cfg.n_heads
    tokens = _field(batch, "tokens", device)
    assert tokens is not None
    if tokens.dim() == 2:
        tokens = tokens.unsqueeze(0).expand(V, *tokens.shape)  # [V, B, S]
    B = tokens.shape[1]
    loss_mask = _field(batch, "loss_mask", device)

    prune = final and settings.compute_pruning and len(settings.pruning_fractions) > 0
    want_importance = settings.compute_importance or prune
    xi = torch.ones(V, B, L, H, device=device, requires_grad=want_importance)
    with torch.set_grad_enabled(want_importance), scaled_heads(model, xi):
        logits, patterns = model.run_with_patterns(tokens)  # [V,B,S,N], [V,B,L,H,Q,K]
        head: dict[str, torch.Tensor] = {}
        if want_importance:
            (grad,) = torch.autograd.grad(example_losses(logits, tokens, loss_mask).sum(), xi)
            head.update(importance_from_grad(grad))  # [V, L, H]
    logits, patterns = logits.detach(), patterns.detach().float()

    head.update(head_scores_for(patterns, tokens, settings))  # [V, L, H] each
    scalar: dict[str, torch.Tensor] = {}

    arcs = _field(batch, "arcs", device)
    if arcs is not None and bool((arcs >= 0).any()):
        syn = syntactic_scores(patterns, arcs)
        head["syntactic"], head["syntactic_accuracy"] = syn["syntactic"], syn["syntactic_accuracy"]
        scalar["syntactic_baseline"] = syn["syntactic_baseline"]  # [V]

    keyword_mask, label_pos = _field(batch, "keyword_mask", device), _field(batch, "label_pos", device)
    if keyword_mask is not None and label_pos is not None and bool((label_pos >= 0).any()):
        lift = keyword_scores(patterns, keyword_mask, label_pos)  # [V, L, H]
        if not bool(lift.isnan().all()):
            head["keyword"] = lift

    if settings.compute_ablation:
        language = _field(batch, "language", device)
        if language is not None and language.dim() == 2:
            # one language column per example is needed; a pack-stacked batch must agree
            language = language[0] if bool((language == language[0]).all()) else None
        head.update(
            ablation_scores(
                model,
                tokens,
                loss_mask,
                language,
                eps=settings.language_eps,
                max_rows=settings.ablation_max_rows,
            )
        )

    with torch.no_grad():
        scalar["icl_score"], (early, late) = icl_score(
            logits,
            tokens,
            loss_mask,
            late_frac=settings.icl_late_frac,
            early_frac=settings.icl_early_frac,
        )
        scalar["probe_loss"] = mean_loss(logits, tokens, loss_mask)  # [V]

    head["role"] = assign_roles(head, settings.thresholds).float()  # [V, L, H]
    head["specialization"] = specialization_index(head, settings.thresholds)  # [V, L, H]
    info: dict[str, Any] = {"settings": settings.to_dict(), "icl_positions": {"early": early, "late": late}}

    kept, key = None, None
    if final:
        if prune:
            scalar.update(pruning_curves(model, tokens, loss_mask, head["importance"], settings))  # [V] each
            info["pruned_heads"] = {fraction_label(f): pruned_heads(f, L * H)
                                    for f in settings.pruning_fractions}
        if settings.pattern_examples > 0:
            n = min(settings.pattern_examples, B)
            kept = patterns[:, :n].to("cpu", torch.float32).clone()  # [V, B', L, H, Q, K]
            key = batch_key or tokens_key(tokens[:, :n])
    return PackProbeResult(step=step, head=head, scalar=scalar, info=info, patterns=kept, batch_key=key)


def make_prober(
    batch: Any,
    settings: ProbeSettings | None = None,
    final_step: int | None = None,
    batch_key: str | None = None,
) -> Callable[[nn.Module, int], PackProbeResult]:
    """``(model, step) -> PackProbeResult`` on a fixed probe batch, for ``train_pack``.

    The probe at ``final_step`` (the pack's last step, ``TrainConfig.steps``) is the final
    one (``probe_pack(..., final=True)``), its patterns keyed by ``batch_key``; None: no
    probe is final.
    """
    settings = settings or ProbeSettings()

    def prober(model: nn.Module, step: int) -> PackProbeResult:
        final = final_step is not None and step == final_step
        return probe_pack(model, batch, step, settings, final=final, batch_key=batch_key)

    return prober
