"""Bearer tokens of the REST API.

A token is ``hs_`` + ``secrets.token_urlsafe(32)`` (256 random bits). The store keeps only its
sha256 (hex) and its first :data:`PREFIX_LEN` characters, by which ``headspec token list``
tells tokens apart; the token itself is shown once, when it is created, and never logged:
no message here or in the error handlers includes it.

A presented token is hashed and looked up by its hash (an attacker cannot steer the bytes of
a sha256, so the lookup's timing tells them nothing); the record's prefix is then compared
with the presented one in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from fastapi import HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.store import ApiToken, Store

TOKEN_MARK = "hs_"
PREFIX_LEN = 11  # "hs_" + 8 random characters
MAX_TOKEN_LEN = 200
TOUCH_EVERY_S = 60.0  # record a token's last use at most this often (a write per request would not scale)

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="A token from `headspec token create NAME`, sent as `Authorization: Bearer hs_...`",
)


def new_token() -> str:
    return TOKEN_MARK + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_prefix(token: str) -> str:
    return token[:PREFIX_LEN]


def issue_token(store: Store, name: str) -> tuple[str, ApiToken]:
    """Create a token named ``name``: returns the token (show it once) and its record.
    ``Conflict`` when the name is taken."""
    token = new_token()
    return token, store.create_token(name, hash_token(token), token_prefix(token))


class TokenVerifier:
    """Checks presented tokens against the store and records their use (throttled)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._touched: dict[int, float] = {}
        self._lock = threading.Lock()

    def verify(self, presented: str) -> ApiToken | None:
        if not presented.startswith(TOKEN_MARK) or len(presented) > MAX_TOKEN_LEN:
            return None
        digest = hash_token(presented)
        record = self.store.token_by_hash(digest, touch=False)
        if record is None:
            return None
        if not hmac.compare_digest(record.prefix.encode(), token_prefix(presented).encode()):
            return None
        now = time.monotonic()
        with self._lock:
            due = now - self._touched.get(record.id, -TOUCH_EVERY_S) >= TOUCH_EVERY_S
            if due:
                self._touched[record.id] = now
        if due:
            self.store.token_by_hash(digest, touch=True)
        return record


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None, *, write: bool
) -> ApiToken | None:
    """The caller's token record, or None where the settings let the request through without one."""
    settings = request.app.state.settings
    if not settings.api_auth or (not write and settings.api_read_open):
        return None
    if credentials is None:
        raise unauthorized(
            "this endpoint needs a bearer token (Authorization: Bearer hs_...); create one with "
            "`headspec token create NAME` and set HEADSPEC_API_TOKEN"
        )
    verifier: TokenVerifier = request.app.state.tokens
    record = verifier.verify(credentials.credentials)
    if record is None:
        raise unauthorized(
            "the bearer token is not valid (unknown or revoked); `headspec token list` shows the "
            "live tokens, `headspec token create NAME` makes a new one"
        )
    return record
