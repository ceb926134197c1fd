"""Where things go in MLflow: an experiment per sweep (or study), a parent run per sweep, a
nested child run per variant, metric names and deterministic timestamps.

Runs are created idempotently. The store holds each run id; before creating a run the
mirror looks for one it created earlier but crashed before recording (by tag), and a new
id is recorded with a compare-and-swap, so two mirrors racing on the same variant end up
with one run (the loser deletes its own).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from service.store import Store, Sweep, Variant

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

TAG_KIND = "headspec.kind"  # "sweep" or "variant"
TAG_SWEEP_ID = "headspec.sweep_id"
TAG_SWEEP_CREATED = "headspec.sweep_created_at"  # with the id: unique across stores
TAG_VARIANT_ID = "headspec.variant_id"
TAG_VARIANT_INDEX = "headspec.variant_index"
TAG_PACK_KEY = "headspec.pack_key"
TAG_SHAPE = "headspec.shape"
TAG_PARENT = "mlflow.parentRunId"
MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value

RUN_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}

ExperimentName = Callable[[Sweep], str]


def default_experiment_name(sweep: Sweep) -> str:
    """``headspec/<sweep name>``. A study passes its own function so that its sweeps share
    one experiment."""
    return f"headspec/{sweep.name}"


def head_metric_key(layer: int, head: int, metric: str) -> str:
    return f"L{layer}.H{head}.{metric}"


def shape_of(config: Any) -> str:
    """``L2xH4xd64``: layers, heads, d_model of a variant's config."""
    model = (config or {}).get("model", {}) if isinstance(config, dict) else {}
    return f"L{model.get('n_layers', '?')}xH{model.get('n_heads', '?')}xd{model.get('d_model', '?')}"


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def metric_timestamp(sweep: Sweep, step: int) -> int:
    """Deterministic: the sweep's creation time plus ``step`` milliseconds. MLflow's metrics
    primary key is (key, timestamp, step, run, value, is_nan), so a re-sent metric is an
    exact duplicate, which MLflow's SQL store skips instead of storing twice."""
    return millis(sweep.created_at) + int(step)


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:MAX_PARAM_VALUE]


def _error_code(exc: BaseException) -> str | None:
    return getattr(exc, "error_code", None)


class MlflowLayout:
    """Finds or creates the experiments and runs of sweeps and variants (cached per instance;
    make one per drain)."""

    def __init__(
        self,
        store: Store,
        client: MlflowClient,
        experiment_name: ExperimentName = default_experiment_name,
    ) -> None:
        self.store, self.client, self.experiment_name = store, client, experiment_name
        self._experiments: dict[str, str] = {}
        self._sweeps: dict[int, Sweep] = {}
        self._sweep_runs: dict[int, str] = {}
        self._variant_runs: dict[int, str] = {}
        self._variants: dict[int, Variant] = {}

    def variant(self, variant_id: int) -> Variant:
        if variant_id not in self._variants:
            self._variants[variant_id] = self.store.get_variant(variant_id)
        return self._variants[variant_id]

    def sweep(self, sweep_id: int) -> Sweep:
        if sweep_id not in self._sweeps:
            self._sweeps[sweep_id] = self.store.get_sweep(sweep_id)
        return self._sweeps[sweep_id]

    def experiment_id(self, sweep: Sweep) -> str:
        from mlflow.exceptions import MlflowException

        name = self.experiment_name(sweep)
        if name not in self._experiments:
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                try:
                    experiment_id = self.client.create_experiment(name, tags={"headspec": "sweeps"})
                except MlflowException as exc:  # another mirror created it first
                    if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                        raise
                    found = self.client.get_experiment_by_name(name)
                    assert found is not None
                    experiment_id = found.experiment_id
            else:
                experiment_id = experiment.experiment_id
                if experiment.lifecycle_stage == "deleted":  # new data for it: bring it back
                    self.client.restore_experiment(experiment_id)
            self._experiments[name] = experiment_id
        return self._experiments[name]

    # -- runs ----------------------------------------------------------------------------------

    def sweep_run(self, sweep_id: int) -> str:
        """The sweep's parent run id, created if needed."""
        if sweep_id in self._sweep_runs:
            return self._sweep_runs[sweep_id]
        sweep = self.store.get_sweep(sweep_id)  # fresh: the run id may have changed
        self._sweeps[sweep_id] = sweep
        experiment_id = self.experiment_id(sweep)
        tags = {
            TAG_KIND: "sweep",
            TAG_SWEEP_ID: str(sweep.id),
            TAG_SWEEP_CREATED: sweep.created_at.isoformat(),
        }
        run_id = self._ensure_run(
            stored=sweep.mlflow_run_id,
            experiment_id=experiment_id,
            find={TAG_SWEEP_ID: tags[TAG_SWEEP_ID], TAG_SWEEP_CREATED: tags[TAG_SWEEP_CREATED]},
            create=lambda: self.client.create_run(
                experiment_id, start_time=millis(sweep.created_at), tags=tags, run_name=sweep.name
            ),
            swap=lambda expected, new: (
                self.store.swap_sweep_mlflow_run_id(sweep.id, expected, new).mlflow_run_id
            ),
            on_create=lambda run_id: self._log_sweep_basics(run_id, sweep),
        )
        self._sweep_runs[sweep_id] = run_id
        return run_id

    def variant_run(self, variant_id: int) -> str:
        """The variant's child run id, created (with params and tags) if needed."""
        if variant_id in self._variant_runs:
            return self._variant_runs[variant_id]
        variant = self._variants[variant_id] = self.store.get_variant(variant_id)
        sweep = self.sweep(variant.sweep_id)
        parent = self.sweep_run(sweep.id)
        experiment_id = self.experiment_id(sweep)
        tags = {
            TAG_KIND: "variant",
            TAG_PARENT: parent,
            TAG_SWEEP_ID: str(sweep.id),
            TAG_VARIANT_ID: str(variant.id),
            TAG_VARIANT_INDEX: str(variant.index),
            TAG_PACK_KEY: variant.pack_key,
            TAG_SHAPE: shape_of(variant.config),
            **{f"factor.{k}": _param_value(v) for k, v in (variant.factors or {}).items()},
        }
        start = variant.started_at or variant.created_at
        run_id = self._ensure_run(
            stored=variant.mlflow_run_id,
            experiment_id=experiment_id,
            find={TAG_VARIANT_ID: str(variant.id), TAG_PARENT: parent},
            create=lambda: self.client.create_run(
                experiment_id,
                start_time=millis(start),
                tags=tags,
                run_name=f"{sweep.name}/v{variant.index:03d}",
            ),  # fmt: skip
            swap=lambda expected, new: (
                self.store.swap_variant_mlflow_run_id(variant.id, expected, new).mlflow_run_id
            ),
            on_create=lambda run_id: self._log_variant_params(run_id, variant),
        )
        self._variant_runs[variant_id] = run_id
        return run_id

    def _ensure_run(
        self,
        *,
        stored: str | None,
        experiment_id: str,
        find: dict[str, str],
        create: Callable[[], Run],
        swap: Callable[[str | None, str], str | None],
        on_create: Callable[[str], None],
    ) -> str:
        if stored is not None and self._usable(stored):
            return stored
        found = self._find_run(experiment_id, find)
        run_id = found or create().info.run_id
        on_create(run_id)  # idempotent: same params and tags again
        winner = swap(stored, run_id)
        if winner != run_id and winner is not None:
            if found is None:  # lost a race with another mirror: drop the run we just made
                self.client.delete_run(run_id)
            return winner
        return run_id

    def _usable(self, run_id: str) -> bool:
        """Whether a stored run id still names a live run (the MLflow backend may have been
        replaced, or the run deleted in the UI)."""
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise
        return run.info.lifecycle_stage == "active"

    def _find_run(self, experiment_id: str, tags: dict[str, str]) -> str | None:
        clauses = " and ".join(f"tags.`{k}` = '{v}'" for k, v in sorted(tags.items()))
        runs = self.client.search_runs(
            [experiment_id], clauses, max_results=10,
            order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
        )  # fmt: skip
        return runs[0].info.run_id if runs else None

    def _log_sweep_basics(self, run_id: str, sweep: Sweep) -> None:
        from mlflow.entities import Param

        self.client.log_batch(run_id, params=[Param("sweep_name", _param_value(sweep.name))])
        if isinstance(sweep.spec, dict):
            self.client.log_dict(run_id, sweep.spec, "sweep_spec.json")

    def _log_variant_params(self, run_id: str, variant: Variant) -> None:
        from mlflow.entities import Param

        params = [Param(k, _param_value(v)) for k, v in sorted((variant.factors or {}).items())]
        if isinstance(variant.config, dict) and "seed" in variant.config:
            params.append(Param("seed", _param_value(variant.config["seed"])))
        if params:
            self.client.log_batch(run_id, params=params)
