"""The one documented place for every knob a probe reads: flags, positions, thresholds.

A metric is only comparable across runs if it was computed with the same settings, so both
dataclasses are frozen and serialize to a plain dict (``to_dict``) that is stored with every
run; ``from_dict`` reads it back (JSON lists become tuples again). Change a default only
together with a version bump.

``ProbeSettings`` also holds the knobs of the two measurements taken at a pack's final probe
only: the pruning curves (``compute_pruning``, ``pruning_fractions``,
``pruning_random_orders``, ``pruning_seed``; see ``workers.probes.pruning``) and the attention
patterns kept for cross-run head matching (``pattern_examples``). Values are validated on
construction; an error names the field (``probe.<field>``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Bump when the specialization-index formula in roles.py changes (stored with every run).
SPECIALIZATION_INDEX_VERSION = 1
# Bump when any metric definition in this package changes meaning.
PROBE_METRICS_VERSION = 1


@dataclass(frozen=True)
class RoleThresholds:
    """Score at which a head counts as having a role; defaults follow SCIENCE.md's sources.

    The detection thresholds (``induction``, ``duplicate``) assume the detection flags'
    defaults (``exclude_bos=False``, ``exclude_current_token=False``) and a probe batch of
    BOS + repeated random segments, on which the ideal head scores ≈ 0.495 and a uniform
    causal head ≈ 0.007 (SCIENCE.md calibration); 0.2 is ~40 % of the ideal, ~30× uniform.
    On a probe batch where fewer rows have an induction/duplicate target (e.g. a task
    mixture) even an ideal head scores lower, so measure these roles on such a batch.
    """

    induction: float = 0.2  # TL `mul` score; ideal ≈ 0.495, uniform ≈ 0.007 (calibration)
    duplicate: float = 0.2  # same scale as induction on the same batch
    prev_token: float = 0.5  # Clark et al. 2019: > 0.5 of the mass at offset -1
    positional: float = 0.9  # Voita et al. 2019: one offset wins ≥ 90 % of argmaxes
    syntactic: float = 0.10  # Voita: ≥ 10 points above the best fixed-offset baseline
    keyword: float = 3.0  # lift over a uniform causal head; "≫ 1" made concrete
    language_selectivity: float = 0.5  # mass of the per-language Δ range over Σ|Δ|
    language_min_delta: float = 0.01  # nats: the head must matter for some language at all
    sink: float = 0.6  # Clark: no-op heads park > 0.6 of their mass on [CLS]/[SEP]
    broad: float = 0.9  # entropy_norm: attention within 10 % of uniform entropy
    # Emergence: a rise is "abrupt" when one probe interval carries ≥ this share of it.
    abrupt_fraction: float = 0.5

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoleThresholds:
        names = {f.name for f in fields(cls)}
        return cls(**{k: float(v) for k, v in data.items() if k in names})


@dataclass(frozen=True)
class ProbeSettings:
    """How a pack is probed; stored with every run next to the metrics it produced.

    ``exclude_bos`` / ``exclude_current_token`` are part of the detection metrics'
    definition (TransformerLens ``detect_head`` flags) and default to TL's defaults.
    ``compute_ablation`` costs L·H extra forward passes per probe, so it is off by default;
    ``importance`` needs one forward and one backward and is on.

    At the final probe only: ``compute_pruning`` measures the probe loss with the fraction f
    of heads removed, for each f of ``pruning_fractions``, least important first and in
    ``pruning_random_orders`` random orders drawn from ``pruning_seed`` (Michel et al. 2019;
    at most (1 + orders) · len(fractions) forward passes; it needs ``importance``, which the
    final probe then computes even when ``compute_importance`` is off), and the attention
    patterns of the first ``pattern_examples`` probe examples are kept (0: none).
    """

    exclude_bos: bool = False
    exclude_current_token: bool = False
    compute_importance: bool = True
    compute_ablation: bool = False
    # icl_score positions as fractions of S-1 (Olsson: token 500 vs 50 of 512, i.e. ≈ 0.9
    # and ≈ 0.09); the resolved positions are returned with the scores.
    icl_late_frac: float = 0.9
    icl_early_frac: float = 0.09
    language_eps: float = 1e-6  # ε in (max − min) / (Σ|Δ| + ε)
    js_smoothing: float = 0.001  # Clark: a' = (1 − s)·a + s / n
    # Upper bound on V · copies · B, the examples of one ablation forward pass.
    ablation_max_rows: int = 512
    # Final probe only: pruning curves (workers.probes.pruning) and kept attention patterns.
    compute_pruning: bool = True
    pruning_fractions: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    pruning_random_orders: int = 5
    pruning_seed: int = 0
    pattern_examples: int = 8
    thresholds: RoleThresholds = field(default_factory=RoleThresholds)

    def __post_init__(self) -> None:
        if not isinstance(self.compute_pruning, bool):
            raise ValueError(f"probe.compute_pruning must be true or false, got {self.compute_pruning!r}")
        fractions = self.pruning_fractions
        if not isinstance(fractions, list | tuple) or not all(
            isinstance(f, int | float) and not isinstance(f, bool) and 0 <= f < 1 for f in fractions
        ):
            raise ValueError(f"probe.pruning_fractions must be a list of numbers in [0, 1), "
                             f"got {fractions!r}")
        labels = [fraction_label(f) for f in fractions]
        if len(set(labels)) != len(labels):
            raise ValueError(f"probe.pruning_fractions must differ at two decimals (they name the metrics "
                             f"prune.<order>.f0.10, ...), got {list(fractions)!r}")
        object.__setattr__(self, "pruning_fractions", tuple(float(f) for f in fractions))
        for name, low in (("pruning_random_orders", 1), ("pruning_seed", 0), ("pattern_examples", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"probe.{name} must be an integer >= {low}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["thresholds"] = self.thresholds.to_dict()
        data["specialization_index_version"] = SPECIALIZATION_INDEX_VERSION
        data["probe_metrics_version"] = PROBE_METRICS_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeSettings:
        names = {f.name for f in fields(cls)} - {"thresholds"}
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if k in names}
        if "thresholds" in data:
            kwargs["thresholds"] = RoleThresholds.from_dict(data["thresholds"])
        if isinstance(kwargs.get("pruning_fractions"), list):  # JSON has no tuples
            kwargs["pruning_fractions"] = tuple(kwargs["pruning_fractions"])  # (__post_init__ would too)
        return cls(**kwargs)


def fraction_label(fraction: float) -> str:
    """The pruning fraction as it appears in metric names: ``0.1`` → ``f0.10``."""
    return f"f{fraction:.2f}"
