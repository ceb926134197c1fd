"""The SQL store: the source of truth for sweeps, variants, per-head metrics, studies,
reports and the MLflow outbox.

    from service.store import Store
    store = Store.open("sqlite:///headspec.db")   # refuses an out-of-date schema
    sweep, variants = store.create_sweep("demo", spec, [NewVariant(...), ...])
    store.write_head_metrics({"variant_id": ids, "step": 100, "layer": l, "head": h,
                              "metric": "entropy", "value": v})

Only this package touches SQLAlchemy models; everything it returns is a frozen entity
(``service.store.entities``). Schema changes go through Alembic (``headspec db upgrade``).
"""

from service.store.columns import head_metric_grid
from service.store.entities import (
    ApiToken,
    FiringStatus,
    HeadMetric,
    HeadPatterns,
    NewVariant,
    OutboxItem,
    Page,
    Report,
    ScalarMetric,
    Study,
    StudyFiring,
    Sweep,
    SweepStatus,
    Variant,
    VariantStatus,
    WriteResult,
)
from service.store.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    SchemaOutOfDate,
    StoreError,
    StoreUnavailable,
)
from service.store.store import Store

__all__ = [
    "ApiToken",
    "Conflict",
    "FiringStatus",
    "HeadMetric",
    "HeadPatterns",
    "InvalidInput",
    "NewVariant",
    "NotFound",
    "OutboxItem",
    "Page",
    "Report",
    "ScalarMetric",
    "SchemaOutOfDate",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Study",
    "StudyFiring",
    "Sweep",
    "SweepStatus",
    "Variant",
    "VariantStatus",
    "WriteResult",
    "head_metric_grid",
]
