"""Derived per-head quantities: role, specialization index, emergence step.

All thresholds come from ``RoleThresholds`` (workers/probes/settings.py), stored with every run.

Role strength. For each role r, ``strength_r = role_score_r / threshold_r`` where the role
score is the metric below (missing or NaN metrics count as 0):

=================  ===========================================================================
role               role score
=================  ===========================================================================
induction          ``induction``
previous_token     ``prev_token``
positional         ``positional`` when ``positional_offset != 1``, else 0 (an offset-1
                   positional head *is* the previous-token role; counting it twice would make
                   every previous-token head look split between two roles)
duplicate          ``duplicate_token``
syntactic          ``syntactic`` (accuracy above the fixed-offset baseline)
keyword            ``keyword`` (lift)
language           ``language_selectivity`` when ``language_delta_max >= language_min_delta``
sink               ``sink``
broad              ``entropy_norm``
=================  ===========================================================================

Role. Among the *specific* roles (all but sink and broad) with strength ≥ 1, the strongest
(ties: the order of ``SPECIFIC_ROLES``); else ``sink`` if its strength ≥ 1; else ``broad``;
else ``none``. Sink and broad are what heads without a job do (Clark's no-op heads park on
[SEP]; averaging), so they only name a head that has no specific role.

Specialization index, version 1 (``SPECIALIZATION_INDEX_VERSION``)::

    s_r = clip(2 · strength_r − 1, 0, 1)      for the 7 specific roles
    SI  = s_(1) − s_(2)                      (largest minus second largest)

A role contributes nothing below half its threshold and fully from its threshold on, so
SI = 1 when one role is at full strength and every other is below half its threshold,
SI = 0 when no role reaches half its threshold (uniform head) or the top two are alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from analysis.emergence import Emergence, emergence_step
from analysis.roles import ROLE_METRIC, ROLE_NAMES, ROLE_THRESHOLD
from workers.probes.settings import SPECIALIZATION_INDEX_VERSION, RoleThresholds

ROLES = ROLE_NAMES
SPECIFIC_ROLES = ROLES[:7]
ROLE_INDEX = {name: i for i, name in enumerate(ROLES)}

__all__ = [
    "ROLES",
    "SPECIALIZATION_INDEX_VERSION",
    "Emergence",
    "assign_roles",
    "emergence_step",
    "role_emergence",
    "role_score",
    "role_strengths",
    "role_threshold",
    "specialization_index",
]


def role_threshold(role: str, thresholds: RoleThresholds) -> float:
    return float(getattr(thresholds, ROLE_THRESHOLD[role]))


def _like(scores: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return next(v for v in scores.values() if isinstance(v, torch.Tensor) and v.dim() >= 2)


def role_score(
    scores: Mapping[str, torch.Tensor], role: str, thresholds: RoleThresholds
) -> torch.Tensor:
    """The score compared against the role's threshold, ``[..., L, H]``; missing/NaN → 0."""
    like = _like(scores)
    value = scores.get(ROLE_METRIC[role])
    if value is None:
        return torch.zeros_like(like, dtype=like.dtype if like.is_floating_point() else None)
    value = torch.nan_to_num(value if value.is_floating_point() else value.float(), nan=0.0)
    if role == "positional" and "positional_offset" in scores:
        value = torch.where(scores["positional_offset"] == 1, torch.zeros_like(value), value)
    if role == "language":
        delta = scores.get("language_delta_max")
        if delta is None:
            return torch.zeros_like(value)
        matters = torch.nan_to_num(delta.float(), nan=0.0) >= thresholds.language_min_delta
        value = torch.where(matters, value, torch.zeros_like(value))
    return value


def role_strengths(
    scores: Mapping[str, torch.Tensor], thresholds: RoleThresholds | None = None
) -> dict[str, torch.Tensor]:
    """``role_score / threshold`` for every role but ``none``: each ``[..., L, H]``."""
    thresholds = thresholds or RoleThresholds()
    return {
        role: role_score(scores, role, thresholds) / role_threshold(role, thresholds)
        for role in ROLES[:-1]
    }


def assign_roles(
    scores: Mapping[str, torch.Tensor], thresholds: RoleThresholds | None = None
) -> torch.Tensor:
    """Index into ``ROLES`` of each head's role: ``[..., L, H]`` int64 (rule in module doc)."""
    strength = role_strengths(scores, thresholds)
    specific = torch.stack([strength[r] for r in SPECIFIC_ROLES], dim=-1)  # [..., L, H, 7]
    best_strength, best = specific.max(dim=-1)  # [..., L, H] first index on ties
    role = torch.full_like(best, ROLE_INDEX["none"])  # [..., L, H]
    role = torch.where(strength["broad"] >= 1, ROLE_INDEX["broad"], role)
    role = torch.where(strength["sink"] >= 1, ROLE_INDEX["sink"], role)
    return torch.where(best_strength >= 1, best, role)  # [..., L, H]


def specialization_index(
    scores: Mapping[str, torch.Tensor], thresholds: RoleThresholds | None = None
) -> torch.Tensor:
    """Specialization index v1 in [0, 1] of each head: ``[..., L, H]`` (formula in module doc)."""
    strength = role_strengths(scores, thresholds)
    specific = torch.stack([strength[r] for r in SPECIFIC_ROLES], dim=-1)  # [..., L, H, 7]
    s = (2 * specific - 1).clamp(0, 1)  # [..., L, H, 7]
    top2 = s.topk(2, dim=-1).values  # [..., L, H, 2]
    return top2[..., 0] - top2[..., 1]  # [..., L, H]


def role_emergence(
    steps: Sequence[int],
    series: Sequence[Mapping[str, torch.Tensor]],
    role: str,
    thresholds: RoleThresholds | None = None,
) -> list[list[Emergence | None]]:
    """Emergence of ``role`` for every head of one run: ``[L][H]`` nested lists.

    ``series[t]`` holds the run's ``[L, H]`` scores at probe ``steps[t]``.
    """
    thresholds = thresholds or RoleThresholds()
    stacked = torch.stack([role_score(s, role, thresholds) for s in series])  # [T, L, H]
    values = stacked.cpu().numpy()
    thr = role_threshold(role, thresholds)
    return [
        [
            emergence_step(steps, values[:, layer, head], thr, thresholds.abrupt_fraction)
            for head in range(values.shape[2])
        ]
        for layer in range(values.shape[1])
    ]
