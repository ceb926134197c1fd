"""Run a sweep on Ray: one task per pack, metrics through a bounded pool of store writers.

The driver records the sweep and its variants, submits every pack, shows progress, and
records each pack's end on its variants: ``succeeded``, or ``failed`` with the traceback
(the pack raised, or its worker died more often than ``resources.max_retries``). The
sweep goes on past a failed pack and ends ``failed`` if any variant failed. The pack tasks
mark their variants running with their node's hostname (attempts += 1 per attempt) through
the writers, so the store sees ``writers`` connections plus the driver's one.

Ray is joined through ``workers.ray_exec`` (nothing here imports ``ray``): the session
already open in this process, ``ray_address`` / ``HEADSPEC_RAY_ADDRESS`` (an existing
cluster: the store URL and ``artifact_dir`` must be reachable from every node), or a local
Ray started in-process and stopped at the end.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from service.settings import get_settings
from service.store import Store, Sweep, SweepStatus, VariantStatus
from service.store.db import parse_url
from service.sweeps.local import (
    ProgressFactory,
    SweepOutcome,
    cancel_unfinished,
    create_sweep,
    finish_sweep,
    unfinished_tasks,
)
from service.sweeps.spec import SweepSpec
from workers.pack_runner import PackTask
from workers.ray_exec import PackFailed, PackHandle, PackProgress, PackResult, PackRun, RayExecutor

log = logging.getLogger(__name__)
StepCallback = Callable[[int, torch.Tensor], None] | None


@dataclass(frozen=True)
class RaySweepOutcome(SweepOutcome):
    """:class:`SweepOutcome` plus what each successful pack reported (node, resumed_from, ...)."""

    packs: dict[str, PackResult] = field(default_factory=dict)


def run_sweep_ray(
    store_url: str,
    spec: SweepSpec | int,
    *,
    ray_address: str | None = None,
    progress: ProgressFactory | None = None,
    writers: int | None = None,
    checkpoint_every: int | None = None,
    artifact_dir: str | Path | None = None,
    num_cpus: int | None = None,
    poll_s: float = 0.5,
) -> RaySweepOutcome:
    """Run ``spec`` on Ray and return the finished sweep with its variants. Given a sweep id
    instead, run that recorded sweep's unfinished packs (a driver restarted or submitted later).

    Defaults come from the settings: ``ray_address`` (unset: local Ray), ``writers``,
    ``checkpoint_every`` (0: no checkpoints), ``artifact_dir`` (checkpoints go to
    ``<artifact_dir>/checkpoints/<sweep id>/<pack key>.pt``). ``num_cpus`` sizes a local Ray.
    ``progress`` is the in-process runner's factory: ``progress(i, n, task)`` returns a
    ``(step, losses [V])`` callback, called from this thread with each pack's latest report.
    """
    settings = get_settings()
    store_url = _absolute_sqlite(store_url)  # Ray's workers need not share our working directory
    root = Path(artifact_dir if artifact_dir is not None else settings.artifact_dir).resolve()
    every = checkpoint_every if checkpoint_every is not None else settings.checkpoint_every
    # the driver's one connection; opening it first refuses an out-of-date schema with its fix
    with Store.open(store_url, pool_size=1, max_overflow=0) as store:
        executor = RayExecutor(store_url, writers=writers if writers is not None else settings.writers,
                               address=ray_address or settings.ray_address, num_cpus=num_cpus)
        try:
            if isinstance(spec, SweepSpec):
                executor.check_resources(spec.resources.cpus, spec.resources.gpus)
                sweep, _, tasks = create_sweep(store, spec)
            else:
                sweep, tasks = unfinished_tasks(store, spec)
                resources = SweepSpec.model_validate(sweep.spec).resources
                executor.check_resources(resources.cpus, resources.gpus)
            return _run(store, executor, sweep, tasks, root, every or None, progress, poll_s)
        finally:
            executor.close()


def _run(
    store: Store,
    executor: RayExecutor,
    sweep: Sweep,
    tasks: list[PackTask],
    root: Path,
    checkpoint_every: int | None,
    progress: ProgressFactory | None,
    poll_s: float,
) -> RaySweepOutcome:
    checkpoints = root / "checkpoints" / str(sweep.id)
    run = PackRun(str(checkpoints), checkpoint_every)
    store.set_sweep_status(sweep.id, SweepStatus.RUNNING)
    resources = SweepSpec.model_validate(sweep.spec).resources
    try:
        handles = [
            executor.submit(i, task, run, cpus=resources.cpus, gpus=resources.gpus,
                            max_retries=resources.max_retries)
            for i, task in enumerate(tasks)
        ]
        results = _drive(store, executor, handles, progress, poll_s)
    except BaseException as exc:
        _abandon(store, sweep.id, exc)
        raise
    shutil.rmtree(checkpoints, ignore_errors=True)  # what is left belongs to failed packs
    outcome = finish_sweep(store, sweep.id)
    return RaySweepOutcome(outcome.sweep, outcome.variants, results)


def _absolute_sqlite(url: str) -> str:
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return url
    absolute = parsed.set(database=str(Path(parsed.database).resolve()))
    return absolute.render_as_string(hide_password=False)


def _abandon(store: Store, sweep_id: int, exc: BaseException) -> None:
    """The driver stopped early (interrupt, lost cluster): unfinished variants are cancelled."""
    cancel_unfinished(store, sweep_id, f"driver stopped: {exc!r}")
    interrupted = isinstance(exc, KeyboardInterrupt)
    store.set_sweep_status(sweep_id, SweepStatus.CANCELLED if interrupted else SweepStatus.FAILED)


def _drive(
    store: Store,
    executor: RayExecutor,
    handles: list[PackHandle],
    progress: ProgressFactory | None,
    poll_s: float,
) -> dict[str, PackResult]:
    """Wait for every pack, recording each end on its variants and relaying progress."""
    callbacks: dict[str, StepCallback] = {}
    if progress is not None:
        callbacks = {h.task.pack_key: progress(h.index, len(handles), h.task) for h in handles}
    shown: dict[str, tuple[int, int]] = {}  # pack key -> (step, events) last relayed
    results: dict[str, PackResult] = {}
    pending = handles
    try:
        while pending:
            done, pending = executor.wait(pending, timeout=poll_s)
            _relay(executor.progress(), callbacks, shown)
            for handle in done:
                results.update(_finish(store, executor, handle, callbacks, shown))
    except BaseException:
        executor.cancel(pending)
        raise
    return results


def _finish(
    store: Store,
    executor: RayExecutor,
    handle: PackHandle,
    callbacks: dict[str, StepCallback],
    shown: dict[str, tuple[int, int]],
) -> dict[str, PackResult]:
    task: PackTask = handle.task
    try:
        result = executor.result(handle)
    except PackFailed as exc:
        last_line = (str(exc).strip().splitlines() or [""])[-1]
        log.warning("pack %s failed: %s", task.pack_key, last_line)
        store.finish_variants(task.variant_ids, VariantStatus.FAILED, error=str(exc))
        return {}
    store.finish_variants(task.variant_ids, VariantStatus.SUCCEEDED)
    on_step = callbacks.get(task.pack_key)
    if on_step is not None and shown.get(task.pack_key, (-1, 0))[0] != result.steps:
        losses = [result.final_loss[v] for v in task.variant_ids]
        on_step(result.steps, torch.tensor(losses))
    return {task.pack_key: result}


def _relay(
    snapshot: dict[str, PackProgress], callbacks: dict[str, StepCallback], shown: dict[str, tuple[int, int]]
) -> None:
    for key, entry in snapshot.items():
        before_step, before_events = shown.get(key, (-1, 0))
        for event in entry.events[before_events:]:
            log.info("pack %s: %s", key, event)
        on_step = callbacks.get(key)
        if on_step is not None and entry.losses and entry.step != before_step:
            on_step(entry.step, torch.tensor(entry.losses))
        shown[key] = (entry.step, len(entry.events))
