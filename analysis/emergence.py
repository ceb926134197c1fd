"""Emergence: when a role appears in a run, and whether it appears abruptly.

Definition (SCIENCE.md): the emergence step of a role in a run is the first probe step after
which the role score stays at or above its threshold; the size of the jump says whether it
was abrupt. Per run, the role score at a probe step is the largest score of that role's
metric over the run's heads ("some head has the role"), with the threshold recorded with the
run (``config["probe"]["thresholds"]``).

``emergence_step`` is the one definition of the rule (this module has no store or torch
dependency, so ``workers.probes`` uses it for single runs too); ``analysis.training`` applies
it to every variant of a sweep from the store.
Only roles whose score is a stored metric are covered here (see :data:`ROLE_SCORE`):
``positional`` and ``language`` scores are conditional on a second metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.roles import DIRECT_ROLES, ROLE_METRIC, ROLE_THRESHOLD

# role -> (head metric holding its score, RoleThresholds field), for the roles scored directly
ROLE_SCORE = {role: (ROLE_METRIC[role], ROLE_THRESHOLD[role]) for role in DIRECT_ROLES}
DEFAULT_ABRUPT_FRACTION = 0.5
EMERGENCE_COLUMNS = ("variant_id", "role", "step", "jump", "jump_fraction", "abrupt", "final_score")


@dataclass(frozen=True)
class Emergence:
    """When a role score crossed its threshold for good, and how sharply.

    ``jump`` is the score change over the probe interval that ends at ``step``;
    ``jump_fraction`` is ``jump`` over the total rise (highest score of the series minus
    the lowest before ``step``), in (0, 1]; ``abrupt`` when it is ≥ ``abrupt_fraction``.
    All three are None when the score was already above threshold at the first probe.
    """

    step: int
    jump: float | None
    jump_fraction: float | None
    abrupt: bool | None


def emergence_step(
    steps: Sequence[int],
    scores: Sequence[float] | np.ndarray,
    threshold: float,
    abrupt_fraction: float = 0.5,
) -> Emergence | None:
    """The first probe step from which the score stays ≥ threshold; None if it never does."""
    values = np.asarray(scores, dtype=np.float64)
    if len(steps) != len(values):
        raise ValueError("steps and scores must have the same length")
    if values.size == 0:
        return None
    above = np.nan_to_num(values, nan=-math.inf) >= threshold
    if not above[-1]:
        return None
    below = np.flatnonzero(~above)
    first = int(below[-1]) + 1 if below.size else 0
    if first == 0:
        return Emergence(int(steps[0]), None, None, None)
    jump = float(values[first] - values[first - 1])
    rise = float(np.nanmax(values) - np.nanmin(values[:first]))
    fraction = jump / rise if rise > 0 and math.isfinite(jump) else None
    abrupt = None if fraction is None else fraction >= abrupt_fraction
    return Emergence(int(steps[first]), jump, fraction, abrupt)




def emergence_by_level(frame: pd.DataFrame, factor: str) -> pd.DataFrame:
    """Per role and level of ``factor``: how many variants the role emerged in, the median
    emergence step among them, and the share of emergences that were abrupt."""
    rows = []
    for (role, level), group in frame.groupby(["role", factor], sort=True):
        emerged = group[group["step"].notna()]
        abrupt = emerged["abrupt"].dropna()
        rows.append({
            "role": role, "factor": factor, "level": level, "n_variants": len(group),
            "n_emerged": len(emerged),
            "median_step": float(emerged["step"].median()) if len(emerged) else np.nan,
            "share_abrupt": float(abrupt.astype(bool).mean()) if len(abrupt) else np.nan,
        })
    return pd.DataFrame(rows, columns=["role", "factor", "level", "n_variants", "n_emerged", "median_step",
                                       "share_abrupt"])
