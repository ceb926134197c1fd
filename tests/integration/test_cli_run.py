"""`headspec run` as a user calls it: a real store file, a real local MLflow store."""

from pathlib import Path

import yaml
from typer.testing import CliRunner

from service.cli import app
from service.settings import get_settings
from service.store import Store
from service.store.schema import upgrade
from tests.integration.specs import tiny_spec

runner = CliRunner()


def _setup(tmp_path: Path, monkeypatch, spec: dict) -> tuple[str, Path]:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    upgrade(url, "head")
    monkeypatch.setenv("HEADSPEC_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    get_settings.cache_clear()
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return url, path


def test_run_local_records_compares_and_mirrors(tmp_path, monkeypatch):
    url, path = _setup(tmp_path, monkeypatch, tiny_spec("cli", factors={"model.n_heads": [1, 2]}))
    result = runner.invoke(app, ["run", str(path), "--local", "--database-url", url])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "model.n_heads" in result.output and "succeeded" in result.output
    with Store.open(url) as store:
        sweep = store.list_sweeps().items[0]
        assert sweep.status == "succeeded"
        assert store.count_head_metrics(sweep_id=sweep.id) > 0
        assert store.outbox_pending_count() == 0  # everything reached MLflow
        assert sweep.mlflow_run_id is not None  # the parent run exists


def test_run_refuses_a_bad_spec_and_writes_nothing(tmp_path, monkeypatch):
    url, path = _setup(tmp_path, monkeypatch, tiny_spec("bad", factors={"model.n_heads": [3]}))
    result = runner.invoke(app, ["run", str(path), "--local", "--database-url", url])
    get_settings.cache_clear()
    assert result.exit_code == 2
    assert "model.d_model=16 is not divisible by model.n_heads=3" in result.output
    with Store.open(url) as store:
        assert store.list_sweeps().items == []
