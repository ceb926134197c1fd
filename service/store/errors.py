"""Errors the store raises. Every message names what is wrong and how to fix it."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error raised by :mod:`service.store`."""


class InvalidInput(StoreError, ValueError):
    """The caller passed something the store will not write; nothing was written."""


class NotFound(StoreError, LookupError):
    """An id (sweep, variant, study, firing, report, outbox item) does not exist."""


class Conflict(StoreError):
    """The write collides with existing data (e.g. a study name that is already taken)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached (server down, wrong host/port/credentials, bad path)."""


class SchemaOutOfDate(StoreError):
    """The database's schema is missing or not at the revision this headspec needs."""

    def __init__(self, url: str, current: str | None, head: str | None, hint: str) -> None:
        self.url = url
        self.current = current
        self.head = head
        super().__init__(
            f"SchemaOutOfDate: the store at {url} is at revision {current}, headspec needs {head}; {hint}"
        )
