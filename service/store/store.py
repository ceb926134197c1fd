"""The :class:`Store`: one object per process, opened from a database URL."""

from __future__ import annotations

from sqlalchemy.engine import URL

from service.store.db import make_engine
from service.store.firings import FiringsMixin
from service.store.metrics_read import MetricsReadMixin
from service.store.metrics_write import MetricsWriteMixin
from service.store.outbox import OutboxMixin
from service.store.patterns import PatternsMixin
from service.store.schema import check_schema
from service.store.studies import StudiesMixin
from service.store.sweeps import SweepsMixin
from service.store.tokens import TokensMixin


class Store(
    SweepsMixin, MetricsWriteMixin, MetricsReadMixin, PatternsMixin, StudiesMixin, FiringsMixin, OutboxMixin,
    TokensMixin,
):
    """Reads and writes the SQL store; returns frozen entities, never ORM objects.

    Thread-safe: every method runs in its own short transaction from the engine's pool.
    Methods by module: sweeps.py (sweeps, variants), metrics_write.py / metrics_read.py
    (head and scalar metrics), studies.py (studies, the firing claim, leases), firings.py
    (firings), outbox.py (MLflow outbox, reports), patterns.py (attention patterns for head
    matching), tokens.py (REST API token hashes).
    """

    @classmethod
    def open(
        cls,
        url: str | URL | None = None,
        *,
        pool_size: int | None = None,
        max_overflow: int | None = None,
        check: bool = True,
    ) -> Store:
        """Open the store at ``url`` (default: settings' ``database_url``).

        Raises :class:`SchemaOutOfDate` (naming the command that fixes it) when the schema
        is missing or not at the revision this code needs; ``check=False`` skips that.
        """
        if url is None or pool_size is None or max_overflow is None:
            from service.settings import get_settings

            settings = get_settings()
            url = settings.database_url if url is None else url
            pool_size = settings.database_pool_size if pool_size is None else pool_size
            max_overflow = settings.database_max_overflow if max_overflow is None else max_overflow
        engine = make_engine(url, pool_size=pool_size, max_overflow=max_overflow)
        try:
            if check:
                check_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
