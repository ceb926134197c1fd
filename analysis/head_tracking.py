"""Following "the same head" across runs: Hungarian matching on the cross-run JS distance of
the stored attention patterns (SCIENCE.md: heads have no identity across runs).

Each variant's patterns at its last probe are stored on the first examples of its probe batch
(``Store.read_head_patterns``). Runs are comparable only when they saw the same tokens, i.e.
share a ``batch_key`` (the probe batch depends on the data configuration): within each group
of equal keys every variant is matched to one reference variant (the one given, else the
group's variant with the most heads, lowest id first, so that every head of a smaller model
finds a partner), minimizing the summed JS distance of matched heads. Variants whose key differs
from the reference's are reported, not matched.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from analysis.load import load_head_metrics, load_variants
from analysis.matching import js_matrix, match_heads
from analysis.roles import ROLE_NAMES
from service.store import Store

MATCH_COLUMNS = ("batch_key", "reference_id", "variant_id", "ref_layer", "ref_head", "layer", "head", "js",
                 "ref_role", "role", "same_role")


def match_to_reference(store: Store, sweep_id: int, reference: int | None = None) -> pd.DataFrame:
    """One row per matched head pair (:data:`MATCH_COLUMNS` plus the variant's seed and
    factors). ``reference``: match every variant with the same batch key to this one."""
    variants = load_variants(store, sweep_id)
    stored = store.read_head_patterns(variants["variant_id"].tolist())
    if reference is not None and reference not in stored:
        raise ValueError(f"variant {reference} has no stored patterns; variants with patterns: "
                         f"{sorted(stored)[:20]}")
    groups: dict[str, list[int]] = {}
    for vid in sorted(stored):
        groups.setdefault(stored[vid].batch_key, []).append(vid)
    if reference is not None:
        groups = {stored[reference].batch_key: [reference] + [v for v in groups[stored[reference].batch_key]
                                                              if v != reference]}
    roles = _roles(store, sweep_id, variants)
    rows = []
    for key, members in groups.items():
        if reference is None:  # the most heads first, then the lowest id
            members = sorted(members, key=lambda v: (-_n_heads(stored[v].patterns), v))
        ref = members[0]
        ref_patterns = torch.from_numpy(stored[ref].patterns)
        ref_heads = ref_patterns.shape[2]
        for vid in members[1:]:
            other = torch.from_numpy(stored[vid].patterns)
            matching = match_heads(js_matrix(ref_patterns, other))
            for (a, b), js in zip(matching.as_layer_head(ref_heads, other.shape[2]), matching.distance,
                                  strict=True):
                ref_role, role = roles.get((ref, *a)), roles.get((vid, *b))
                rows.append({"batch_key": key, "reference_id": ref, "variant_id": vid, "ref_layer": a[0],
                             "ref_head": a[1], "layer": b[0], "head": b[1], "js": float(js),
                             "ref_role": ref_role, "role": role,
                             "same_role": None if ref_role is None or role is None else ref_role == role})
    frame = pd.DataFrame(rows, columns=list(MATCH_COLUMNS))
    return frame.merge(variants.drop(columns=["status"]), on="variant_id", how="left")


def role_agreement(matches: pd.DataFrame, factor: str) -> pd.DataFrame:
    """Per level of ``factor``: matched head pairs, the share whose role equals the reference
    head's, and their mean JS distance (how alike the matched heads attend)."""
    known = matches[matches["same_role"].notna()]
    grouped = known.groupby(factor, sort=True)
    out = pd.DataFrame({
        "pairs": grouped.size(),
        "same_role": grouped["same_role"].apply(lambda s: float(np.mean(s.astype(bool)))),
        "mean_js": grouped["js"].mean(),
    }).reset_index().rename(columns={factor: "level"})
    out.insert(0, "factor", factor)
    return out


def _n_heads(patterns: np.ndarray) -> int:
    return int(patterns.shape[1] * patterns.shape[2])  # [B, L, H, Q, K]


def _roles(store: Store, sweep_id: int, variants: pd.DataFrame) -> dict[tuple[int, int, int], str]:
    if "role" not in set(store.metric_names()):
        return {}
    heads = load_head_metrics(store, sweep_id, metrics=["role"], last_step_only=True,
                              variants=variants[["variant_id"]])
    return {(int(r.variant_id), int(r.layer), int(r.head)): ROLE_NAMES[int(round(r.value))]
            for r in heads.itertuples()}
