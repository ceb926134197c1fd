"""REST API tokens: the store keeps a token's sha256 and a short prefix to recognise it by,
never the token. Generating tokens and comparing them lives in ``service.api.auth``."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.store.base import StoreBase
from service.store.entities import ApiToken
from service.store.errors import Conflict, InvalidInput, NotFound
from service.store.models import NAME_LEN, TOKEN_PREFIX_LEN, ApiTokenRow, utcnow
from service.store.validation import check_str

_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


def token_entity(row: ApiTokenRow) -> ApiToken:
    return ApiToken(id=row.id, name=row.name, prefix=row.prefix, created_at=row.created_at,
                    last_used_at=row.last_used_at, revoked_at=row.revoked_at)


def _check_hash(token_hash: str) -> str:
    if not isinstance(token_hash, str) or not _HASH_RE.match(token_hash):
        raise InvalidInput("token_hash must be a lowercase hex sha256 (64 characters)")
    return token_hash


class TokensMixin(StoreBase):
    def create_token(self, name: str, token_hash: str, prefix: str) -> ApiToken:
        """Record a token by its hash; ``Conflict`` when the name is taken."""
        name = check_str(name, "name", NAME_LEN)
        prefix = check_str(prefix, "prefix", TOKEN_PREFIX_LEN)
        row = ApiTokenRow(name=name, token_hash=_check_hash(token_hash), prefix=prefix)
        try:
            with self._session(write=True) as session:
                session.add(row)
                session.flush()
                return token_entity(row)
        except IntegrityError as exc:
            raise Conflict(f"a token named {name!r} exists; pick another name or revoke it first") from exc

    def token_by_hash(self, token_hash: str, *, touch: bool = True) -> ApiToken | None:
        """The live (not revoked) token with this hash, or None. ``touch`` records the use."""
        with self._session(write=touch) as session:
            stmt = select(ApiTokenRow).where(ApiTokenRow.token_hash == _check_hash(token_hash))
            row = session.scalars(stmt).first()
            if row is None or row.revoked_at is not None:
                return None
            if touch:
                row.last_used_at = utcnow()
            return token_entity(row)

    def list_tokens(self) -> list[ApiToken]:
        with self._session() as session:
            return [token_entity(r) for r in session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.id))]

    def revoke_token(self, name: str) -> ApiToken:
        """Revoke the named token (idempotent); ``NotFound`` names the existing ones."""
        with self._session(write=True) as session:
            row = self._token_row(session, check_str(name, "name", NAME_LEN))
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return token_entity(row)

    def _token_row(self, session: Session, name: str) -> ApiTokenRow:
        row = session.scalars(select(ApiTokenRow).where(ApiTokenRow.name == name)).first()
        if row is None:
            names = ", ".join(session.scalars(select(ApiTokenRow.name).order_by(ApiTokenRow.name))) or "none"
            raise NotFound(f"no token named {name!r}; existing tokens: {names}")
        return row
