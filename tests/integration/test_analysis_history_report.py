"""Emergence, head matching, pruning curves, the comparison against an earlier firing and the
HTML report, on store contents whose answers are known (tests/integration/known_sweeps.py),
on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from html.parser import HTMLParser

import numpy as np
import pytest

from analysis.emergence import emergence_by_level
from analysis.head_tracking import match_to_reference, role_agreement
from analysis.history import compare_sweeps, study_report
from analysis.pruning import importance_advantage, pruning_curves, pruning_frame
from analysis.report import build_sweep_report
from analysis.training import role_emergence_frame
from service.store import Store
from tests.integration.known_sweeps import FRACTIONS, fill_known_sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_emergence_steps_and_abruptness(store: Store) -> None:
    frame = role_emergence_frame(store, fill_known_sweep(store))
    induction = frame[frame["role"] == "induction"]
    deep = induction[induction["model.n_layers"] == 2]
    assert (deep["step"] == 100).all() and deep["abrupt"].all()
    assert induction[induction["model.n_layers"] == 1]["step"].isna().all()
    prev = frame[frame["role"] == "previous_token"]
    assert len(prev) == 16 and (prev["step"] == 100).all()
    table = emergence_by_level(frame, "model.n_layers").set_index(["role", "level"])
    assert table.loc[("induction", 2), "n_emerged"] == 8
    assert table.loc[("induction", 1), "n_emerged"] == 0
    assert table.loc[("induction", 2), "median_step"] == 100


def test_heads_are_matched_across_runs_despite_permuted_indices(store: Store) -> None:
    sweep = fill_known_sweep(store)
    matches = match_to_reference(store, sweep)
    assert matches["reference_id"].nunique() == 1 and len(matches) == 15 * 4
    odd = matches[matches["seed"] % 2 == 1]
    # odd seeds swapped the heads of every layer: the matching undoes the swap
    assert (odd["layer"] == odd["ref_layer"]).all() and (odd["head"] == 1 - odd["ref_head"]).all()
    assert np.allclose(matches["js"], 0.0, atol=1e-3)
    agreement = role_agreement(matches, "model.n_layers").set_index("level")
    # the reference has depth 1 (no induction head): depth-2 runs differ in exactly that head
    assert agreement.loc[1, "same_role"] == 1.0
    assert agreement.loc[2, "same_role"] == 0.75


def test_pruning_curves_order_importance_before_random(store: Store) -> None:
    frame = pruning_frame(store, fill_known_sweep(store))
    assert len(frame) == 16 * 2 * len(FRACTIONS)
    curves = pruning_curves(frame, "model.n_layers", n_boot=200).set_index(["level", "order", "fraction"])
    assert curves.loc[(2, "importance", 0.4), "loss"] == pytest.approx(2.4 + np.mean([0, .02, -.015, .01]))
    assert curves.loc[(2, "random", 0.4), "ci_low"] > curves.loc[(2, "importance", 0.4), "ci_high"]
    advantage = importance_advantage(frame).set_index("fraction")
    assert advantage.loc[0.0, "advantage"] == pytest.approx(0.0)
    assert advantage.loc[0.5, "advantage"] == pytest.approx(0.5)


def test_what_moved_against_the_previous_firing(store: Store) -> None:
    previous = fill_known_sweep(store, "nightly")
    current = fill_known_sweep(store, "nightly", shift=0.2)  # depth-2 induction rises by 0.2
    history = compare_sweeps(store, current, previous, ["model.n_layers"],
                             ["max_induction", "mean_specialization"], n_boot=500)
    rows = history.set_index(["metric", "level"])
    moved = rows.loc[("max_induction", 2)]
    assert moved["moved"] and moved["significant"] and moved["diff"] == pytest.approx(0.2)
    assert moved["diff_low"] > 0
    assert not rows.loc[("max_induction", 1), "moved"]
    assert not rows.loc[("mean_specialization", 2), "moved"]
    title, html = study_report(store, current, previous, ["model.n_layers"], ["max_induction"], "nightly")
    assert "1 of 2 (factor level, metric) pairs moved" in html
    assert "max_induction at model.n_layers=2 0.4" in html
    _check_images(html, minimum=1)


class _Structure(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.headings: list[str] = []
        self._in_heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        self._in_heading = tag in ("h1", "h2", "h3")

    def handle_data(self, data: str) -> None:
        if self._in_heading and data.strip():
            self.headings.append(data.strip())
            self._in_heading = False


def _check_images(html: str, minimum: int) -> _Structure:
    parsed = _Structure()
    parsed.feed(html)
    assert len(parsed.images) >= minimum
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1])
        assert data.startswith(PNG_MAGIC) and len(data) > 2000  # a real, non-empty plot
    return parsed


def test_the_sweep_report_renders_every_section_with_plots(store: Store) -> None:
    doc = build_sweep_report(store, fill_known_sweep(store), n_boot=200)
    html = doc.render()
    parsed = _check_images(html, minimum=10)
    for heading in ("Specialization by factor", "Over training: role scores and emergence",
                    "Layer × head role maps per factor level", "The same head across runs", "Pruning curves"):
        assert heading in parsed.headings
    assert len(doc.images) == len(parsed.images)
    assert {"roles-model.n_layers-1.png", "roles-model.n_layers-2.png"} <= set(doc.images)
    assert "recorded" not in html  # no section fell back to its "not recorded" note


def test_report_command_writes_records_and_logs_to_mlflow(
    store: Store, database_url: str, tmp_path, monkeypatch, mlflow_server
) -> None:
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    from service.cli import app
    from service.settings import get_settings

    sweep = fill_known_sweep(store)
    monkeypatch.setenv("HEADSPEC_MLFLOW_TRACKING_URI", mlflow_server.uri)
    get_settings.cache_clear()
    out = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(app, ["report", "--sweep", str(sweep), "--out", str(out),
                                      "--database-url", database_url, "--n-boot", "200"])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    html = out.read_text()
    _check_images(html, minimum=10)
    [report] = store.list_reports(sweep_id=sweep).items
    assert report.content == html and report.path == str(out.resolve())
    run_id = store.get_sweep(sweep).mlflow_run_id
    assert run_id is not None
    client = MlflowClient(mlflow_server.uri)
    names = {a.path for a in client.list_artifacts(run_id, "report")}
    assert "report/report.html" in names and len(names) == 1 + len(_image_sources(html))
    unknown = CliRunner().invoke(app, ["report", "--sweep", "999999", "--database-url", database_url,
                                       "--no-mlflow", "--out", str(tmp_path / "x.html")])
    assert unknown.exit_code == 2 and "unknown sweep id 999999" in unknown.output


def _image_sources(html: str) -> list[str]:
    parsed = _Structure()
    parsed.feed(html)
    return parsed.images


def test_emergence_step_is_a_comparable_per_variant_metric(store: Store) -> None:
    from analysis.compare import level_summary
    from analysis.derived import available_metrics, per_variant_metric

    sweep = fill_known_sweep(store)
    assert "emergence.induction" in available_metrics(store)
    frame = per_variant_metric(store, sweep, "emergence.induction")
    summary = level_summary(frame, "model.n_layers", "emergence.induction", n_boot=100).set_index("level")
    assert list(summary.index) == [2] and summary.loc[2, "mean"] == 100  # depth 1 never emerged
    with pytest.raises(ValueError, match="unknown metric 'emergence.nope'"):
        per_variant_metric(store, sweep, "emergence.nope")


def test_the_reference_is_the_run_with_the_most_heads(store: Store) -> None:
    from service.store import NewVariant
    from tests.integration.known_sweeps import _patterns

    sweep, (small, big) = store.create_sweep("shapes", {}, [NewVariant({"model.n_heads": h}, {"seed": 0}, "p")
                                                             for h in (1, 2)])
    store.write_head_patterns(small.id, 10, "k", _patterns([["prev"]]))
    store.write_head_patterns(big.id, 10, "k", _patterns([["uniform", "prev"]]))
    [pair] = match_to_reference(store, sweep.id).itertuples()
    assert (pair.reference_id, pair.variant_id, pair.ref_head, pair.head) == (big.id, small.id, 1, 0)
    assert pair.js == pytest.approx(0.0, abs=1e-3)


def test_last_step_only_takes_each_variants_own_last_step(store: Store) -> None:
    """A variant that stopped early (a failed pack) is read at its own last step."""
    from analysis.load import load_head_metrics
    from service.store import NewVariant, head_metric_grid

    new = [NewVariant({}, {"seed": s}, "p") for s in (0, 1)]
    sweep, (done, stopped) = store.create_sweep("early", {}, new)
    for step in (0, 100, 200):
        store.write_head_metrics(head_metric_grid([done.id], step, "induction", np.full((1, 1, 2), step)))
    for step in (0, 100):
        store.write_head_metrics(head_metric_grid([stopped.id], step, "induction", np.full((1, 1, 2), step)))
    heads = load_head_metrics(store, sweep.id, metrics=["induction"], last_step_only=True)
    got = sorted(set(zip(heads["variant_id"], heads["step"], heads["value"], strict=True)))
    assert got == [(done.id, 200, 200.0), (stopped.id, 100, 100.0)] and len(heads) == 4
