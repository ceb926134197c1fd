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
from service.sweeps.plan import plan_packs, plan_variants
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
    tasks = []
    for pack in plan_packs(planned, spec.resources.max_pack_size):
        members = [planned[i] for i in pack.variant_indices]
        tasks.append(
            PackTask(
                pack_key=pack.key,
                config=members[0].config,
                variants=tuple(
                    PackVariant(variants[p.index].id, p.seed, p.config["train"]["lr"]) for p in members
                ),
            )
        )
    return sweep, variants, tasks


def run_sweep_local(
    store: Store,
    spec: SweepSpec,
    *,
    device: str | None = None,
    progress: ProgressFactory | None = None,
) -> SweepOutcome:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    sweep, _, tasks = create_sweep(store, spec)
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
    variants = sweep_variants(store, sweep.id)
    failed = any(v.status != VariantStatus.SUCCEEDED for v in variants)
    sweep = store.set_sweep_status(sweep.id, SweepStatus.FAILED if failed else SweepStatus.SUCCEEDED)
    return SweepOutcome(sweep, variants)
