import pytest
from pydantic import ValidationError

from service.sweeps.plan import SpecError, plan_packs, plan_variants
from service.sweeps.spec import SweepSpec, load_spec

BASE = {
    "model": {"n_layers": 2, "n_heads": 4, "d_model": 64, "vocab_size": 128, "n_ctx": 64},
    "data": {"diversity": 0.5},
    "train": {"steps": 100},
}


def spec(**overrides) -> SweepSpec:
    return SweepSpec.model_validate({"name": "t", "base": BASE, **overrides})


def test_grid_expands_every_combination_times_seeds():
    s = spec(factors={"model.n_heads": [2, 4], "train.lr": [1e-3, 3e-3], "data.diversity": [0.1, 1]},
             seeds=2)
    variants = plan_variants(s)
    assert len(variants) == 2 * 2 * 2 * 2 == s.n_variants()
    assert {v.index for v in variants} == set(range(16))
    assert {(v.factors["model.n_heads"], v.config["model"]["n_heads"]) for v in variants} == {(2, 2), (4, 4)}
    # data defaults follow the model
    assert all(v.config["data"]["vocab_size"] == 128 for v in variants)
    assert sorted(v.config["seed"] for v in variants) == [0] * 8 + [1] * 8


def test_packs_group_variants_that_differ_only_in_seed_and_lr():
    s = spec(factors={"model.n_heads": [2, 4], "train.lr": [1e-3, 3e-3]}, seeds=3)
    variants = plan_variants(s)
    packs = plan_packs(variants, max_pack_size=None)
    assert sorted(len(p.variant_indices) for p in packs) == [6, 6]
    for pack in packs:
        heads = {variants[i].config["model"]["n_heads"] for i in pack.variant_indices}
        assert len(heads) == 1
    split = plan_packs(variants, max_pack_size=4)
    assert sorted(len(p.variant_indices) for p in split) == [2, 2, 4, 4]
    assert sorted(i for p in split for i in p.variant_indices) == list(range(12))


def test_random_sampling_draws_within_bounds_and_is_reproducible():
    s = spec(factors={"train.lr": {"log_uniform": [1e-4, 3e-3]}, "model.n_heads": [2, 4]},
             sampling="random", samples=5)
    a, b = plan_variants(s), plan_variants(s)
    assert [v.config["train"]["lr"] for v in a] == [v.config["train"]["lr"] for v in b]
    assert all(1e-4 <= v.config["train"]["lr"] <= 3e-3 for v in a)


@pytest.mark.parametrize(
    ("factors", "message"),
    [
        ({"model.n_heads": [3]}, "model.d_model=64 is not divisible by model.n_heads=3"),
        ({"model.n_head": [2]}, "unknown field(s) ['n_head']"),
        ({"train.steps": [-1]}, "train.steps must be a positive integer"),
        ({"data.diversity": [2.0]}, "data.diversity"),
    ],
)
def test_bad_variants_name_the_field(factors, message):
    with pytest.raises(SpecError) as err:
        plan_variants(spec(factors=factors))
    assert message in str(err.value)
    assert "variant {" in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"factors": {"foo.x": [1]}}, "section one of"),
        ({"unknown_key": 1}, "unknown_key"),
        ({"factors": {"train.lr": {"log_uniform": [1e-4, 3e-3]}}}, "set sampling: random"),
        ({"factors": {"train.lr": [1e-3] * 3, "model.d_model": [64] * 3}, "max_variants": 4},
         "max_variants=4"),
        ({"seeds": 0}, "seeds must be >= 1"),
        ({"name": "has space"}, "name"),
    ],
)
def test_spec_errors_name_the_field_and_fix(overrides, message):
    with pytest.raises(ValidationError) as err:
        spec(**overrides)
    assert message in str(err.value)


def test_load_yaml_and_json(tmp_path):
    import json

    import yaml

    body = {"name": "files", "base": BASE, "factors": {"train.lr": [1e-3, 2e-3]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(body))
    (tmp_path / "s.json").write_text(json.dumps(body))
    assert load_spec(tmp_path / "s.yaml") == load_spec(tmp_path / "s.json")
