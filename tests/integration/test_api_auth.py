"""Tokens against a real server: writes without a valid token are refused (401) and change
nothing; reads too unless api_read_open; revoked tokens stop working; tokens never reach the
server's log; tokens off only on loopback, with a warning. (And the study scheduler starts
inside the service when enabled.)"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from service.cli import app
from service.store import Store
from tests.integration.api_support import ApiServer, serve  # noqa: F401  (serve is a fixture)
from tests.integration.specs import tiny_spec

runner = CliRunner()


def _cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _refused(response, server: ApiServer) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"


def test_tokens_guard_writes_and_reads(serve: Callable[..., ApiServer], database_url: str) -> None:  # noqa: F811
    code, out, err = _cli("token", "create", "alice", "--database-url", database_url)
    assert code == 0, err
    token = out.strip()
    assert re.fullmatch(r"hs_[A-Za-z0-9_\-]{43}", token)
    with Store.open(database_url) as store:
        [record] = store.list_tokens()
    assert token.startswith(record.prefix) and 8 <= len(record.prefix) <= 12
    code, out, _ = _cli("token", "list", "--database-url", database_url)
    assert code == 0 and "alice" in out and record.prefix in out and token not in out
    assert _cli("token", "create", "alice", "--database-url", database_url)[0] == 1  # name taken

    server = serve()
    spec = {"spec": tiny_spec("guarded")}
    wrong = "hs_" + "x" * 43
    anonymous, bad, good = server.client(), server.client(wrong), server.client(token)
    _refused(anonymous.post("/sweeps", json=spec), server)
    _refused(bad.post("/sweeps", json=spec), server)
    _refused(anonymous.post("/sweeps", json=spec, headers={"Authorization": f"Basic {token}"}), server)
    _refused(anonymous.post("/sweeps", json={"spec": {"bogus": 1}}), server)  # 401 before 422
    with Store.open(database_url) as store:
        assert store.list_sweeps().items == []  # nothing recorded
        pending, _ = store.create_sweep("not-mine", {"name": "not-mine"})
        _refused(anonymous.post(f"/sweeps/{pending.id}/cancel"), server)
        _refused(bad.post(f"/sweeps/{pending.id}/cancel"), server)
        assert store.get_sweep(pending.id).status == "pending"
        assert not (server.artifacts / "drivers" / f"sweep-{pending.id}.json").exists()
        # reads need a token too (api_read_open is off)
        _refused(anonymous.get("/sweeps"), server)
        _refused(bad.get(f"/sweeps/{pending.id}"), server)
        assert good.get(f"/sweeps/{pending.id}").status_code == 200
        assert anonymous.get("/health").status_code == 200  # health is open
        assert store.list_tokens()[0].last_used_at is not None  # use is recorded

        code, out, _ = _cli("token", "revoke", "alice", "--database-url", database_url)
        assert code == 0 and "revoked" in out
        _refused(good.get(f"/sweeps/{pending.id}"), server)
        assert store.list_tokens()[0].revoked_at is not None
    server.stop()
    log = server.log()
    assert "POST /sweeps" in log and token not in log and wrong not in log and record.prefix not in log


def test_read_open_and_no_auth(serve: Callable[..., ApiServer], database_url: str) -> None:  # noqa: F811
    server = serve(read_open=True, env={"HEADSPEC_SCHEDULER_ENABLED": "true"})
    with server.client() as anonymous:
        assert anonymous.get("/sweeps").status_code == 200
        # the study scheduler runs inside the service when it is enabled
        assert anonymous.get("/health").json()["scheduler"] == "on"
        _refused(anonymous.post("/sweeps", json={"spec": tiny_spec("x")}), server)
    server.stop()

    open_server = serve(auth=False)
    assert "no tokens: anyone who can reach this port can submit sweeps" in open_server.log()
    with open_server.client() as anonymous:
        assert anonymous.get("/health").json()["auth"] is False
        assert anonymous.get("/sweeps").status_code == 200
        bad = anonymous.post("/sweeps", json={"spec": {"name": "x"}})
        assert bad.status_code == 422  # past authentication, into validation


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.org"])
def test_no_auth_refuses_a_non_loopback_host(host: str) -> None:
    code, _, err = _cli("serve", "--no-auth", "--host", host, "--port", "1")
    assert code == 2 and "refusing to serve" in err and "without tokens" in err
