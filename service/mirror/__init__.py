"""The MLflow mirror: the store's outbox, drained into MLflow.

    from service.mirror import drain, open_client
    result = drain(store, open_client("http://127.0.0.1:5000"))
    # DrainResult(items, metrics_logged, failed, seconds)

Layout: an experiment per sweep (``headspec/<sweep name>``; pass ``experiment_name`` to
group a study's sweeps), a parent run per sweep, a nested child run per variant with its
factors as params; head metrics as ``L{layer}.H{head}.{metric}``, scalar metrics under their
own names, both at their step; a ``role_map.png`` per finished variant.
"""

from service.mirror.client import open_client
from service.mirror.drain import MIRROR_KINDS, DrainResult, drain, drain_to_mlflow
from service.mirror.layout import default_experiment_name, head_metric_key

__all__ = [
    "MIRROR_KINDS",
    "DrainResult",
    "default_experiment_name",
    "drain",
    "drain_to_mlflow",
    "head_metric_key",
    "open_client",
]
