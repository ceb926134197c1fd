"""The sweep report: one self-contained HTML file with plots of how head specialization
depends on the sweep's factors.

Sections: overview; specialization against each factor (means over seeds with bootstrap CIs,
effect sizes, a two-factor interaction); over training (role scores per probe step per level,
emergence steps and abruptness); layer × head role maps per factor level; head matching across
runs (role agreement of matched heads); pruning curves (importance vs random order). A section
whose inputs the sweep did not record says so instead of plotting nothing.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from analysis.compare import effect_sizes, interaction_table, level_summary
from analysis.derived import per_variant_derived
from analysis.emergence import emergence_by_level
from analysis.html import Document
from analysis.load import factor_names, load_head_metrics, load_variants, sweep_variants
from analysis.plots import curves, level_means, role_map
from analysis.pruning import importance_advantage, pruning_curves, pruning_frame
from analysis.training import role_emergence_frame, role_score_series
from service.store import Store

REPORT_METRICS = {  # derived quantity -> unit for the axis label ("" = a score)
    "max_induction": "",
    "mean_specialization": "",
    "n_distinct_roles": "count",
    "icl_score": "nats",
}
TRAINING_ROLES = ("induction", "previous_token")


def build_sweep_report(store: Store, sweep_id: int, *, n_boot: int = 1000) -> Document:
    sweep = store.get_sweep(sweep_id)
    variants_list = sweep_variants(store, sweep_id)
    variants = load_variants(store, sweep_id, variants_list)
    factors = factor_names(variants_list)
    doc = Document(f"headspec report: sweep {sweep.id} ({sweep.name})")
    seeds = sorted(variants["seed"].dropna().unique().tolist())
    levels = "; ".join(f"{f}: {', '.join(map(str, sorted(variants[f].dropna().unique(), key=str)))}"
                       for f in factors) or "none"
    doc.paragraph(f"Status {sweep.status}; {len(variants)} variants; seeds {seeds}; factors — {levels}. "
                  "Scores are at each variant's last probe step; confidence intervals are 95% "
                  f"percentile bootstraps over seeds ({n_boot} resamples).")
    derived = per_variant_derived(store, sweep_id, variants)
    _by_factor(doc, derived, factors, n_boot)
    _over_training(doc, store, sweep_id, variants, factors)
    _role_maps(doc, store, sweep_id, variants, factors)
    _head_matching(doc, store, sweep_id, factors)
    _pruning(doc, store, sweep_id, variants, factors, n_boot)
    return doc


def _by_factor(doc: Document, derived: pd.DataFrame, factors: list[str], n_boot: int) -> None:
    doc.heading("Specialization by factor")
    metrics = [m for m in REPORT_METRICS if m in derived and derived[m].notna().any()]
    if not factors or not metrics:
        doc.paragraph("The sweep varies no factor (or recorded none of the metrics): nothing to compare.",
                      "note")
        return
    for factor in factors:
        doc.heading(factor, 3)
        effects = []
        for metric in metrics:
            summary = level_summary(derived, factor, metric, n_boot=n_boot)
            doc.figure(level_means(summary, factor=factor, metric=metric, unit=REPORT_METRICS[metric]),
                       f"{metric}-by-{factor}", f"{metric} per level of {factor}: mean over seeds, 95% CI")
            effects.append(effect_sizes(derived, factor, metric, n_boot=n_boot).assign(metric=metric))
        table = pd.concat(effects, ignore_index=True)
        doc.table(table[["metric", "level_a", "level_b", "diff", "ci_low", "ci_high", "cohens_d"]],
                  caption=f"differences between levels of {factor} (b − a) with 95% CI and Cohen's d")
    if len(factors) >= 2:
        table = interaction_table(derived, factors[0], factors[1], "mean_specialization")
        doc.table(table.reset_index().rename(columns={factors[0]: f"{factors[0]} \\ {factors[1]}"}),
                  caption=f"mean specialization index: {factors[0]} (rows) × {factors[1]} (columns)")


def _over_training(doc: Document, store: Store, sweep_id: int, variants: pd.DataFrame,
                   factors: list[str]) -> None:
    doc.heading("Over training: role scores and emergence")
    series = role_score_series(store, sweep_id, TRAINING_ROLES)
    if series.empty:
        doc.paragraph("No role-score metrics recorded.", "note")
        return
    series = series.merge(variants, on="variant_id")
    for factor in _or_all(factors):
        for role in sorted(series["role"].unique()):
            part = series[series["role"] == role]
            group = factor or "all"
            data = part.assign(all="all") if factor is None else part
            means = data.groupby([group, "step"], as_index=False)["score"].mean()
            doc.figure(curves(means, x="step", y="score", group=group, xlabel="training step",
                              ylabel=f"{role} score (max over heads)",
                              title=f"{role} score over training by {group}"),
                       f"training-{role}-{group}", f"{role}: mean over variants of the highest head score")
    emergence = role_emergence_frame(store, sweep_id, variants=variants)
    for factor in factors:
        doc.table(emergence_by_level(emergence, factor),
                  caption=f"emergence by {factor}: variants where the role emerged, median step, "
                  "share abrupt")


def _role_maps(doc: Document, store: Store, sweep_id: int, variants: pd.DataFrame,
               factors: list[str]) -> None:
    doc.heading("Layer × head role maps per factor level")
    known = set(store.metric_names())
    if not {"role", "specialization"} <= known:
        doc.paragraph("No role metrics recorded.", "note")
        return
    heads = load_head_metrics(store, sweep_id, metrics=["role", "specialization"], last_step_only=True,
                              variants=variants)
    for factor in _or_all(factors):
        data = heads.assign(all="all") if factor is None else heads
        group = factor or "all"
        for level, part in data.groupby(group, sort=True):
            n_layers, n_heads = int(part["layer"].max()) + 1, int(part["head"].max()) + 1
            role = np.full((n_layers, n_heads), np.nan)
            spec = np.full((n_layers, n_heads), np.nan)
            for (layer, head), cell in part.groupby(["layer", "head"]):
                roles = cell.loc[cell["metric"] == "role", "value"].round().astype(int).tolist()
                if roles:
                    role[layer, head] = Counter(roles).most_common(1)[0][0]
                values = cell.loc[cell["metric"] == "specialization", "value"]
                spec[layer, head] = values.mean() if len(values) else np.nan
            title = f"{group} = {level}: most common role, mean specialization index (SI)"
            doc.figure(role_map(role, spec, title=title), f"roles-{group}-{level}",
                       f"role map, {group} = {level} ({part['variant_id'].nunique()} variants)")


def _head_matching(doc: Document, store: Store, sweep_id: int, factors: list[str]) -> None:
    from analysis.head_tracking import match_to_reference, role_agreement

    doc.heading("The same head across runs")
    matches = match_to_reference(store, sweep_id)
    if matches.empty:
        doc.paragraph("No stored attention patterns to match (or one variant per probe batch).", "note")
        return
    doc.paragraph("Each variant's heads are matched to a reference variant probed on the same tokens "
                  "(Hungarian matching on the cross-run Jensen–Shannon distance, summed over query "
                  "positions, in nats). A high share of matched heads with the reference head's role "
                  "means the division of labour repeats across seeds and factor levels.")
    for factor in factors or ["seed"]:
        doc.table(role_agreement(matches, factor), caption=f"matched heads by {factor}")
    doc.table(matches.groupby(["ref_layer", "ref_head", "ref_role"], as_index=False)
              .agg(pairs=("js", "size"), mean_js=("js", "mean"),
                   same_role=("same_role", lambda s: float(np.mean(s.dropna().astype(bool))))),
              caption="per reference head: how alike its matches are")


def _pruning(doc: Document, store: Store, sweep_id: int, variants: pd.DataFrame, factors: list[str],
             n_boot: int) -> None:
    doc.heading("Pruning curves")
    frame = pruning_frame(store, sweep_id, variants)
    if frame.empty:
        doc.paragraph("No pruning metrics recorded (prune.importance.* / prune.random.*).", "note")
        return
    for factor in _or_all(factors):
        table = pruning_curves(frame, factor, n_boot=n_boot)
        table["line"] = table["level"].astype(str) + " / " + table["order"]
        styles = {line: "--" if line.endswith("random") else "-" for line in table["line"]}
        label = factor or "all variants"
        doc.figure(curves(table, x="fraction", y="loss", group="line", band=("ci_low", "ci_high"),
                          styles=styles, xlabel="fraction of heads removed",
                          ylabel="probe-batch loss (nats/token)", legend_title=f"{label} / order",
                          title="pruning: least important first (solid) vs random order (dashed)"),
                   f"pruning-{label}", f"loss as heads are removed, by {label}: mean over seeds, 95% CI")
    doc.table(importance_advantage(frame),
              caption="random-order loss − importance-order loss (positive: importance order is better)")


def _or_all(factors: list[str]) -> list[str | None]:
    """The factors to split by, or one ``None`` (everything together) when there are none."""
    return list(factors) if factors else [None]
