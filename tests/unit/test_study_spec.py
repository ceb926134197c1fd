"""Study specs: validation names the field; a sweep file is resolved and embedded; the example loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from service.studies.spec import DEFAULT_METRICS, FixedBaseline, StudySpec, load_study_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SWEEP: dict[str, Any] = {
    "name": "tiny",
    "base": {"model": {"n_layers": 1, "n_heads": 2, "d_model": 16, "vocab_size": 40, "n_ctx": 17}},
    "factors": {"model.n_layers": [1, 2]},
    "seeds": 2,
}


def study(**fields: Any) -> dict[str, Any]:
    return {"name": "s", "schedule": {"cron": "0 3 * * *"}, "sweep": SWEEP, **fields}


def locations(exc: ValidationError) -> list[tuple[Any, ...]]:
    return [e["loc"] for e in exc.errors()]


def test_defaults() -> None:
    spec = StudySpec.model_validate(study())
    assert spec.schedule.timezone == "UTC" and spec.baseline == "previous" and spec.missed == "catch_up_once"
    assert spec.by == ["model.n_layers"]  # every factor of the sweep
    assert spec.compare.metrics == list(DEFAULT_METRICS)
    dumped = spec.model_dump(mode="json")
    assert dumped["compare"]["by"] == ["model.n_layers"] and dumped["missed"] == "catch_up_once"
    assert StudySpec.model_validate(dumped) == spec  # the stored form reads back the same


@pytest.mark.parametrize(("fields", "loc", "message"), [
    ({"schedule": {"cron": "0 3 * * *", "timezone": "Mars/Olympus"}}, ("schedule", "timezone"),
     "unknown time zone"),
    ({"schedule": {"cron": "0 3 * *"}}, ("schedule", "cron"), "has 4 fields"),
    ({"compare": {"by": ["model.n_heads"]}}, ("compare",), "not a factor of the sweep"),
    ({"compare": {"metrics": []}}, ("compare", "metrics"), "at least 1"),
    ({"compare": {"metrics": ["max induction"]}}, ("compare", "metrics"), "not a metric name"),
    ({"baseline": "latest"}, ("baseline",), ""),
    ({"baseline": {"firing": 1, "sweep": 2}}, ("baseline",), "exactly one"),
    ({"missed": "twice"}, ("missed",), "catch_up_once"),
    ({"sweep": "other.yaml"}, ("sweep",), "over the API give the sweep spec inline"),
    ({"surprise": 1}, ("surprise",), "Extra inputs"),
    ({"name": "has space"}, ("name",), "pattern"),
])
def test_errors_name_the_field(fields: dict[str, Any], loc: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        StudySpec.model_validate(study(**fields))
    assert any(found[: len(loc)] == loc for found in locations(info.value)), locations(info.value)
    assert message in str(info.value)


def test_fixed_baselines() -> None:
    assert StudySpec.model_validate(study(baseline={"sweep": 7})).baseline == FixedBaseline(sweep=7)
    assert StudySpec.model_validate(study(baseline={"firing": 3})).baseline == FixedBaseline(firing=3)


def test_sweep_file_is_resolved_relative_to_the_study_file(tmp_path: Path) -> None:
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "tiny.yaml").write_text(yaml.safe_dump(SWEEP))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study(sweep="sweeps/tiny.yaml")))
    spec = load_study_spec(path)
    assert spec.sweep.name == "tiny" and spec.sweep.factors == {"model.n_layers": [1, 2]}
    path.write_text(yaml.safe_dump(study(sweep="missing.yaml")))
    with pytest.raises(ValueError, match="no sweep spec file at"):
        load_study_spec(path)
    bad = dict(SWEEP, seeds=0)
    (tmp_path / "sweeps" / "tiny.yaml").write_text(yaml.safe_dump(bad))
    path.write_text(yaml.safe_dump(study(sweep="sweeps/tiny.yaml")))
    with pytest.raises(ValidationError) as info:
        load_study_spec(path)
    assert ("sweep", "seeds") in [loc[:2] for loc in locations(info.value)]  # located under sweep


def test_the_example_study_loads() -> None:
    spec = load_study_spec(EXAMPLES / "study_nightly.yaml")
    assert spec.sweep.name == "quickstart" and spec.by == ["model.n_layers"]
    assert spec.schedule.timezone == "Europe/Berlin"
