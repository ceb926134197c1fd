"""Every spec in examples/ validates and expands, so the first thing a user runs never rots."""

from pathlib import Path

import pytest

from service.sweeps.plan import plan_packs, plan_variants
from service.sweeps.spec import load_spec

# study specs (study_*.yaml) are checked in tests/unit/test_study_spec.py
EXAMPLES = sorted(p for p in (Path(__file__).resolve().parents[2] / "examples").glob("*.yaml")
                  if not p.name.startswith("study_"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_spec_plans(path: Path) -> None:
    spec = load_spec(path)
    variants = plan_variants(spec)
    packs = plan_packs(variants, spec.resources.max_pack_size)
    assert len(variants) == spec.n_variants()
    assert sum(len(p.variant_indices) for p in packs) == len(variants)


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {"quickstart.yaml", "gpu_cluster.yaml"}
