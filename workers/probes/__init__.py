"""Probes: per-head measurements of attention heads, exactly as SCIENCE.md defines them.

Modules: ``patterns`` (metrics of attention patterns and tokens), ``detectors`` (metrics
that need ground truth: dependency arcs, keywords), ``model_probes`` (importance, ablation,
language selectivity, ICL score), ``analysis.matching`` (JS distance, Hungarian head matching; re-exported),
``roles`` (role, specialization index, emergence), ``records`` (tidy rows for the store),
``pack`` (probe a whole pack at once), ``settings`` (every flag and threshold, in one place).
"""

from analysis.matching import (
    HeadMatching,
    cross_run_matching,
    js_distance,
    js_matrix,
    match_heads,
)
from workers.probes.detectors import keyword_scores, syntactic_scores
from workers.probes.model_probes import (
    ablation_losses,
    ablation_scores,
    head_importance,
    icl_positions,
    icl_score,
)
from workers.probes.pack import PackProbeResult, make_prober, probe_pack
from workers.probes.patterns import PATTERN_METRICS, detection_patterns, head_scores
from workers.probes.records import probe_records
from workers.probes.roles import (
    ROLES,
    Emergence,
    assign_roles,
    emergence_step,
    role_emergence,
    role_strengths,
    specialization_index,
)
from workers.probes.settings import (
    PROBE_METRICS_VERSION,
    SPECIALIZATION_INDEX_VERSION,
    ProbeSettings,
    RoleThresholds,
)

__all__ = [
    "PATTERN_METRICS",
    "PROBE_METRICS_VERSION",
    "ROLES",
    "SPECIALIZATION_INDEX_VERSION",
    "Emergence",
    "HeadMatching",
    "PackProbeResult",
    "ProbeSettings",
    "RoleThresholds",
    "ablation_losses",
    "ablation_scores",
    "assign_roles",
    "cross_run_matching",
    "detection_patterns",
    "emergence_step",
    "head_importance",
    "head_scores",
    "icl_positions",
    "icl_score",
    "js_distance",
    "js_matrix",
    "keyword_scores",
    "make_prober",
    "match_heads",
    "probe_pack",
    "probe_records",
    "role_emergence",
    "role_strengths",
    "specialization_index",
    "syntactic_scores",
]
