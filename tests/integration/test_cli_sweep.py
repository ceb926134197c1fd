"""`headspec sweep ...` against a real server: submit and follow a sweep, and the errors a
person sees when the service is down, the token is missing or wrong, or the spec is invalid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.integration.api_support import ApiServer, client_env, free_port, make_token, run_cli, serve  # noqa: F401
from tests.integration.specs import tiny_spec


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sweep_commands(
    serve: Callable[..., ApiServer], database_url: str, client_env: Callable[..., None], tmp_path: Path  # noqa: F811
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(tiny_spec("cli-sweep", seeds=2)))
    bad_spec = tiny_spec("cli-bad")
    bad_spec["base"]["model"]["d_model"] = 15
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(bad_spec))

    client_env(f"http://127.0.0.1:{free_port()}", "hs_whatever")
    code, _, err = run_cli("sweep", "list")
    assert code == 1 and "no headspec service at" in err and "headspec serve" in err

    server = serve()
    client_env(server.url, None)
    code, _, err = run_cli("sweep", "submit", str(good))
    assert code == 1 and "needs a token" in err and "headspec token create" in err
    client_env(server.url, "hs_" + "w" * 43)
    code, _, err = run_cli("sweep", "list")
    assert code == 1 and "refused the token" in err and "hs_www" not in err

    client_env(server.url, make_token(database_url))
    code, _, err = run_cli("sweep", "submit", str(bad))
    assert code == 2 and "spec.base.model.d_model:" in err and "not divisible" in err

    code, out, err = run_cli("sweep", "submit", str(good), "--wait", "--poll", "0.3")
    assert code == 0, out + err
    assert "submitted sweep 1 (cli-sweep)" in out and "sweep 1 succeeded: 2 variants (2 succeeded)" in out
    code, out, _ = run_cli("sweep", "list")
    assert code == 0 and "cli-sweep" in out and "succeeded" in out
    code, out, _ = run_cli("sweep", "status", "1")
    assert code == 0 and "sweep 1 (cli-sweep): succeeded" in out
    code, _, err = run_cli("sweep", "cancel", "1")
    assert code == 1 and "409" in err and "already succeeded" in err
    code, _, err = run_cli("sweep", "status", "99")
    assert code == 1 and "unknown sweep id 99" in err
