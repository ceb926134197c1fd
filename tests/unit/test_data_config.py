"""DataConfig validation and the diversity mapping."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from workers.data import DIVERSITY_ORDER, TASK_NAMES, DataConfig, resolve_diversity
from workers.data import diversity as diversity_module
from workers.data.diversity import diversity_family_knobs

NUMERIC_KNOBS = ("n_families", "vocab_fraction", "markov_n_chains", "grammar_n_templates",
                 "zipf_exponent", "burstiness")


def _as_number(value: Any) -> float:
    return math.inf if value is None else float(value)  # None = fresh chains = unbounded


def test_diversity_is_monotone_and_spans_one_to_all_families() -> None:
    grid = [resolve_diversity(i / 100) for i in range(101)]
    for knob in NUMERIC_KNOBS:
        values = [_as_number(r[knob]) for r in grid]
        assert values == sorted(values), knob
        assert values[0] < values[-1], knob
    assert list(grid[0]["families"]) == ["repeated"]
    assert list(grid[-1]["families"]) == list(DIVERSITY_ORDER)
    assert grid[-1]["markov_n_chains"] is None and grid[0]["markov_n_chains"] == 8
    assert grid[0]["zipf_exponent"] == 0.0
    for r in grid:  # families nest: more diversity only adds families
        assert list(r["families"]) == list(DIVERSITY_ORDER[:r["n_families"]])
        assert math.isclose(sum(r["families"].values()), 1.0)


def test_the_docstring_table_matches_the_function() -> None:
    doc = diversity_module.__doc__ or ""
    for knob in NUMERIC_KNOBS:
        row = next(line for line in doc.splitlines() if line.startswith(knob + " "))
        cells = row.split()[1:6]
        for d, cell in zip((0.0, 0.25, 0.5, 0.75, 1.0), cells, strict=True):
            value = resolve_diversity(d)[knob]
            if value is None:
                assert cell == "None"
            else:
                assert math.isclose(float(cell), value, abs_tol=6e-4), (knob, d, cell)


def test_the_d1_mapping_equals_the_knob_defaults() -> None:
    from workers.data.families import KNOB_TYPES

    for family, values in diversity_family_knobs(1.0).items():
        defaults = KNOB_TYPES[family]()
        for knob, value in values.items():
            assert getattr(defaults, knob) == value, (family, knob)


def test_diversity_drives_knobs_and_explicit_knobs_win() -> None:
    low = DataConfig(vocab_size=128, seq_len=32, diversity=0.0, families={"markov": 1.0,
                                                                         "grammar": 1.0})
    gens = low.build_generators()
    assert len(gens["markov"].pool) == 8 and gens["grammar"].knobs.n_templates == 1
    override = DataConfig(vocab_size=128, seq_len=32, diversity=0.0,
                          families={"markov": 1.0}, knobs={"markov": {"n_chains": None}})
    assert override.build_generators()["markov"].pool is None
    assert DataConfig(vocab_size=128, seq_len=32, diversity=0.5).weights() == {
        name: 0.2 for name in TASK_NAMES if name in DIVERSITY_ORDER[:5]}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"diversity": 1.5}, "diversity"),
        ({"diversity": -0.1}, "diversity"),
        ({"families": {"sonnets": 1.0}}, r"families\['sonnets'\]"),
        ({"families": {"repeated": -1.0}}, r"families\['repeated'\]"),
        ({"families": {"repeated": 0.0}}, "families"),
        ({}, "families"),
        ({"families": {"text": 1.0}}, "text_path"),
        ({"diversity": 0.5, "seq_len": 2}, "seq_len"),
        ({"families": {"copy": 1.0}, "knobs": {"copy": {"max_length": 20}}}, "seq_len"),
        ({"families": {"keyword": 1.0}, "knobs": {"keyword": {"n_keywords": 41}}}, "seq_len"),
        ({"families": {"languages": 1.0}, "knobs": {"languages": {"n_languages": 9}}},
         "vocab_size"),
        ({"families": {"markov": 1.0}, "knobs": {"markov": {"alhpa": 1.0}}},
         r"knobs\['markov'\]\['alhpa'\]"),
        ({"families": {"markov": 1.0}, "knobs": {"markov": {"alpha": 0.0}}},
         r"knobs\['markov'\]\['alpha'\]"),
        ({"families": {"keyword": 1.0}, "knobs": {"keyword": {"n_keywords": 4}}},
         r"knobs\['keyword'\]\['n_keywords'\]"),
        ({"diversity": 0.5, "knobs": {"poetry": {}}}, r"knobs\['poetry'\]"),
        ({"diversity": 0.5, "vocab_layout": "striped"}, "vocab_layout"),
    ],
)
def test_invalid_configs_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {"vocab_size": 64, "seq_len": 32}
    with pytest.raises(ValueError, match=f"^{field}: .*; "):
        DataConfig(**{**base, **kwargs})


def test_text_needs_enough_vocab_and_a_family_entry(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("abc" * 50)
    with pytest.raises(ValueError, match="^vocab_size: .*raise vocab_size"):
        DataConfig(vocab_size=200, seq_len=16, text_path=str(path))
    with pytest.raises(ValueError, match="^families: "):
        DataConfig(vocab_size=300, seq_len=16, families={"repeated": 1.0}, text_path=str(path))
    with pytest.raises(ValueError, match="^text_path: "):
        DataConfig(vocab_size=300, seq_len=16, text_path=str(tmp_path / "missing.txt"))
    mixed = DataConfig(vocab_size=300, seq_len=16, families={"repeated": 1, "text": 3},
                       text_path=str(path))
    assert mixed.weights() == {"repeated": 0.25, "text": 0.75}


def test_partitioned_layout_gives_disjoint_ranges() -> None:
    cfg = DataConfig(vocab_size=4 + 3 * 100, seq_len=32, families={
        "repeated": 1.0, "markov": 1.0, "keyword": 1.0}, vocab_layout="partitioned")
    gens = cfg.build_generators()
    ranges = sorted((g.vocab.start, g.vocab.stop) for g in gens.values())
    assert ranges == [(4, 104), (104, 204), (204, 304)]
    shared = DataConfig(vocab_size=304, seq_len=32, families={"repeated": 1, "markov": 1})
    assert {g.vocab.start for g in shared.build_generators().values()} == {4}


def test_config_round_trips_through_a_dict() -> None:
    cfg = DataConfig(vocab_size=64, seq_len=32, diversity=0.3, knobs={"markov": {"alpha": 2}})
    again = DataConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.canonical_json() == cfg.canonical_json()
    assert hash(again) == hash(cfg) and len({cfg, again}) == 1
    with pytest.raises(ValueError, match="^vocab: "):
        DataConfig.from_dict({"vocab": 3})
    assert re.search(r'"diversity":0\.3', cfg.canonical_json())
