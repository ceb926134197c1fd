"""Small pieces of the service: token format and hashing, loopback hosts, where a spec error points."""

from __future__ import annotations

import hashlib

import pytest

from service.api.auth import PREFIX_LEN, hash_token, new_token, token_prefix
from service.cli_serve import is_loopback
from service.sweeps.plan import SpecError
from service.sweeps.submit import spec_error_location


def test_tokens_are_random_and_stored_by_sha256() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    token = tokens.pop()
    assert token.startswith("hs_") and len(token) == 3 + 43
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert token_prefix(token) == token[:PREFIX_LEN] and 8 <= PREFIX_LEN <= 12


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("example.org", False),
])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("message", "location"), [
    ("base: model.d_model=15 is not divisible by model.n_heads=2; pick ...", ("base", "model", "d_model")),
    ("variant {'model.n_heads': 3}: model.d_model=16 is not divisible by ...", ("base", "model", "d_model")),
    ("base: model: unknown field(s) ['bogus']; valid fields: [...]", ("base", "model")),
    ("base: model.ModelConfig.__init__() missing 5 required arguments", ("base", "model")),
    ("base: train.steps must be positive", ("base", "train", "steps")),
    ("base: something else entirely", ()),
])
def test_spec_error_location(message: str, location: tuple[str, ...]) -> None:
    assert spec_error_location(SpecError(message)) == location
