"""`headspec study ...` against a real `headspec serve` whose scheduler runs a real firing:
create from a study file that names its sweep file, list, run-now, reports; and the errors a
person sees when the service is down, the token is missing or refused, or the spec is invalid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.integration.api_support import (  # noqa: F401
    ApiServer,
    client_env,
    free_port,
    make_token,
    run_cli,
    serve,
    wait_until,
)
from tests.integration.specs import tiny_spec


def _study_files(folder: Path) -> tuple[Path, Path]:
    (folder / "sweeps").mkdir(parents=True)
    (folder / "sweeps" / "tiny.yaml").write_text(yaml.safe_dump(
        tiny_spec("cli-study-sweep", factors={"model.n_layers": [1, 2]}, seeds=2)))
    study = {"name": "cli-nightly", "schedule": {"cron": "0 3 * * *", "timezone": "Europe/Berlin"},
             "sweep": "sweeps/tiny.yaml", "compare": {"by": ["model.n_layers"]}}
    good = folder / "study.yaml"
    good.write_text(yaml.safe_dump(study))
    bad = folder / "bad.yaml"
    bad.write_text(yaml.safe_dump({**study, "name": "cli-bad",
                                   "schedule": {"cron": "0 3 * * *", "timezone": "Mars/Olympus"}}))
    return good, bad


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_study_commands(
    serve: Callable[..., ApiServer], database_url: str, client_env: Callable[..., None], tmp_path: Path  # noqa: F811
) -> None:
    good, bad = _study_files(tmp_path / "specs")

    client_env(f"http://127.0.0.1:{free_port()}", "hs_whatever")
    code, _, err = run_cli("study", "list")
    assert code == 1 and "no headspec service at" in err and "headspec serve" in err

    server = serve(env={"HEADSPEC_SCHEDULER_ENABLED": "true", "HEADSPEC_SCHEDULER_POLL_SECONDS": "0.3"})
    client_env(server.url, None)
    code, _, err = run_cli("study", "create", str(good))
    assert code == 1 and "needs a token" in err and "headspec token create" in err
    client_env(server.url, "hs_" + "w" * 43)
    code, _, err = run_cli("study", "list")
    assert code == 1 and "refused the token" in err and "hs_www" not in err

    client_env(server.url, make_token(database_url))
    code, out, err = run_cli("study", "create", str(good))
    assert code == 0, err
    assert "created study 1 (cli-nightly): 0 3 * * * (Europe/Berlin); first firing at" in out
    code, _, err = run_cli("study", "create", str(good))
    assert code == 1 and "a study named 'cli-nightly' exists" in err
    code, _, err = run_cli("study", "create", str(bad))
    assert code == 2 and "schedule.timezone" in err and "unknown time zone 'Mars/Olympus'" in err
    code, out, _ = run_cli("study", "list")
    assert code == 0 and "cli-nightly" in out and "Europe/Berlin" in out and "active" in out
    code, out, _ = run_cli("study", "reports", "cli-nightly")
    assert code == 0 and "has not fired yet" in out
    code, out, _ = run_cli("study", "pause", "cli-nightly")
    assert code == 0 and "paused" in out
    code, _, err = run_cli("study", "run-now", "cli-nightly")
    assert code == 1 and "is paused; resume it first" in err
    code, out, _ = run_cli("study", "resume", "1")
    assert code == 0 and "resumed; next firing at" in out
    code, _, err = run_cli("study", "run-now", "no-such-study")
    assert code == 1 and "no study named 'no-such-study'" in err

    code, out, err = run_cli("study", "run-now", "cli-nightly")
    assert code == 0 and "is due now" in out, err

    def reported() -> str | None:
        code, out, err = run_cli("study", "reports", "1")
        assert code == 0, err
        return out if ("succeeded" in out or "failed" in out) else None

    try:
        out = wait_until(reported, 180, "the firing's report")
    except AssertionError:
        raise AssertionError(server.log()[-4000:]) from None
    assert "succeeded" in out and "(first firing)" in out, out
    html = tmp_path / "latest.html"
    code, out, err = run_cli("study", "reports", "cli-nightly", "--out", str(html))
    assert code == 0 and f"to {html}" in out.replace("\n", ""), err
    assert "<html" in html.read_text().lower()
