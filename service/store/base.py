"""What every store module builds on: the engine, the session helper, shared lookups."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from service.store.db import SessionFactory, safe_url
from service.store.errors import InvalidInput, NotFound
from service.store.models import Base, MetricNameRow, VariantRow

MAX_METRIC_ID = 2**15 - 1  # head_metrics.metric_id is a smallint
_IN_CHUNK = 5_000  # ids per IN (...) list; SQLite allows 32766 bound parameters


def chunks(values: Sequence[int], size: int = _IN_CHUNK) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class StoreBase:
    """Holds the engine; subclasses (the per-resource mixins) open sessions through
    :meth:`_session`. Metric-name ids are cached: once committed they never change."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = safe_url(engine.url)
        self._sessions = SessionFactory(engine)
        self._metric_ids: dict[str, int] = {}
        self._metric_names: dict[int, str] = {}

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        with self._sessions.session(write=write) as session:
            yield session

    def _insert(self, table: type[Base]):  # type: ignore[no-untyped-def]
        """The dialect's INSERT (with ``on_conflict_do_*``) for an ORM class."""
        return (pg_insert if self.dialect == "postgresql" else sqlite_insert)(table)

    # -- lookups shared by several modules ------------------------------------------------

    def _require_variants(self, session: Session, variant_ids: Sequence[int]) -> None:
        """Raise NotFound naming the ids (up to 10) that are not variants."""
        found: set[int] = set()
        for chunk in chunks(variant_ids):
            found.update(session.scalars(select(VariantRow.id).where(VariantRow.id.in_(chunk))))
        missing = [v for v in variant_ids if v not in found]
        if missing:
            shown = ", ".join(str(v) for v in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise NotFound(
                f"unknown variant id(s) {shown}{more}; create the sweep's variants first "
                "(Store.create_sweep / add_variants) and use the ids it returns"
            )

    def _metric_ids_for(self, session: Session, names: Sequence[str], *, create: bool) -> dict[str, int]:
        """Ids of metric names, creating missing ones when ``create`` (concurrency-safe:
        INSERT ... ON CONFLICT DO NOTHING, then read back)."""
        ids = {n: self._metric_ids[n] for n in names if n in self._metric_ids}
        missing = [n for n in names if n not in ids]
        if missing and create:
            stmt = self._insert(MetricNameRow).on_conflict_do_nothing(index_elements=["name"])
            session.execute(stmt, [{"name": n} for n in missing])
        if missing:
            rows = session.execute(
                select(MetricNameRow.id, MetricNameRow.name).where(MetricNameRow.name.in_(missing))
            ).all()
            for metric_id, name in rows:
                if metric_id > MAX_METRIC_ID:
                    raise InvalidInput(
                        f"metric name {name!r} got id {metric_id} > {MAX_METRIC_ID}: too many "
                        "distinct metric names; reuse names instead of encoding values in them"
                    )
                ids[name] = metric_id
        return ids

    def _remember_metric_ids(self, ids: dict[str, int]) -> None:
        """Cache ids only after their transaction committed."""
        self._metric_ids.update(ids)
        self._metric_names.update({v: k for k, v in ids.items()})

    def _metric_name_map(self, session: Session, metric_ids: Sequence[int]) -> dict[int, str]:
        missing = [m for m in metric_ids if m not in self._metric_names]
        if missing:
            rows = session.execute(
                select(MetricNameRow.id, MetricNameRow.name).where(MetricNameRow.id.in_(missing))
            ).all()
            self._remember_metric_ids({name: mid for mid, name in rows})
        return {m: self._metric_names[m] for m in metric_ids if m in self._metric_names}
