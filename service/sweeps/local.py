"""Run a sweep in this process, pack after pack, recording everything in the store.

The embedded path: no cluster, one device. The store is written first and is the source of
truth; a failed pack marks its variants failed with the error and the sweep goes on.
"""

from __future__ import annotations

import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch

from analysis.load import sweep_variants
from service.store import NewVariant, Store, Sweep, SweepStatus, Variant, VariantStatus
from service.sweeps.plan import PlannedVariant, plan_packs, plan_variants
from service.sweeps.spec import SweepSpec
from workers.pack_runner import PackTask, PackVariant, run_pack

# (pack index, pack count, pack task) -> per-step callback (step, losses [V]) or None
ProgressFactory = Callable[[int, int, PackTask], Callable[[int, torch.Tensor], None] | None]


@dataclass(frozen=True)
class SweepOutcome:
    sweep: Sweep
    variants: list[Variant]

    @property
    def failed(self) -> list[Variant]:
        return [v for v in self.variants if v.status != VariantStatus.SUCCEEDED]


def create_sweep(store: Store, spec: SweepSpec) -> tuple[Sweep, list[Variant], list[PackTask]]:
    """Validate and expand the spec, record the sweep and its variants, and build the packs."""
    planned = plan_variants(spec)
    sweep, variants = store.create_sweep(
        spec.name,
        spec.model_dump(mode="json"),
        [NewVariant(factors=v.factors, config=v.config, pack_key=v.pack_key) for v in planned],
    )
    return sweep, variants, pack_tasks(sweep, variants)


def pack_tasks(sweep: Sweep, variants: list[Variant]) -> list[PackTask]:
    """The packs of a recorded sweep, from its stored spec and variants (the same packs
    ``create_sweep`` built: grouping depends only on the variants' configs)."""
    spec = SweepSpec.model_validate(sweep.spec)
    by_index = {v.index: v for v in variants}
    planned = [PlannedVariant(v.index, int(v.config["seed"]), dict(v.factors), v.config)
               for v in sorted(variants, key=lambda v: v.index)]
    tasks = []
    for pack in plan_packs(planned, spec.resources.max_pack_size):
        members = [by_index[i] for i in pack.variant_indices]
        tasks.append(PackTask(
            pack_key=pack.key,
            config={k: members[0].config[k] for k in ("model", "data", "train", "probe")},
            variants=tuple(PackVariant(v.id, int(v.config["seed"]), float(v.config["train"]["lr"]))
                           for v in members),
        ))
    return tasks


def unfinished_tasks(store: Store, sweep_id: int) -> tuple[Sweep, list[PackTask]]:
    """A recorded sweep's packs that still have work: every pack with a variant that has not
    succeeded (a restarted driver re-runs those, resuming from their checkpoints)."""
    sweep = store.get_sweep(sweep_id)
    variants = sweep_variants(store, sweep_id)
    done = {v.id for v in variants if v.status == VariantStatus.SUCCEEDED}
    return sweep, [t for t in pack_tasks(sweep, variants) if not set(t.variant_ids) <= done]


def run_sweep_local(
    store: Store,
    spec: SweepSpec | int,
    *,
    device: str | None = None,
    progress: ProgressFactory | None = None,
) -> SweepOutcome:
    """Run a new sweep from ``spec``, or the unfinished packs of recorded sweep ``spec`` (an id)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(spec, SweepSpec):
        sweep, _, tasks = create_sweep(store, spec)
    else:
        sweep, tasks = unfinished_tasks(store, spec)
    store.set_sweep_status(sweep.id, SweepStatus.RUNNING)
    node = socket.gethostname()
    for i, task in enumerate(tasks):
        store.start_variants(task.variant_ids, node=node)
        try:
            on_step = progress(i, len(tasks), task) if progress else None
            run_pack(task, store, device=device, on_progress=on_step)
        except Exception as exc:  # a failed pack is recorded; the sweep goes on
            error = "".join(traceback.format_exception(exc))
            store.finish_variants(task.variant_ids, VariantStatus.FAILED, error=error)
        else:
            store.finish_variants(task.variant_ids, VariantStatus.SUCCEEDED)
    return finish_sweep(store, sweep.id)


def finish_sweep(store: Store, sweep_id: int) -> SweepOutcome:
    """Record the sweep's end: ``failed`` if any variant did not succeed, else ``succeeded``."""
    variants = sweep_variants(store, sweep_id)
    failed = any(v.status != VariantStatus.SUCCEEDED for v in variants)
    sweep = store.set_sweep_status(sweep_id, SweepStatus.FAILED if failed else SweepStatus.SUCCEEDED)
    return SweepOutcome(sweep, variants)


def cancel_unfinished(store: Store, sweep_id: int, error: str) -> None:
    """Record the sweep's pending and running variants cancelled, with ``error``."""
    unfinished = [v.id for v in sweep_variants(store, sweep_id)
                  if v.status in (VariantStatus.PENDING, VariantStatus.RUNNING)]
    if unfinished:
        store.finish_variants(unfinished, VariantStatus.CANCELLED, error=error)
