"""Run one pack end to end: data streams, probe batch, training, and metrics to a sink.

This is the function a Ray task (or a plain loop, or a benchmark) calls. It knows nothing of
Ray, of the store's tables or of MLflow: metrics leave through a :class:`MetricSink`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from workers.data import DataConfig, make_stream, probe_batch
from workers.model import ModelConfig, PackedTransformer
from workers.probes import ProbeSettings, make_prober
from workers.train import TrainConfig, VariantRun, train_pack

Columns = dict[str, Any]


class MetricSink(Protocol):
    def write_head_metrics(self, columns: Columns) -> Any: ...

    def write_scalar_metrics(self, columns: Columns) -> Any: ...


@dataclass(frozen=True)
class PackVariant:
    variant_id: int
    seed: int
    lr: float


@dataclass(frozen=True)
class PackTask:
    """One pack: the shared configuration (model/data/train/probe) and its variants."""

    pack_key: str
    config: dict[str, dict[str, Any]]
    variants: tuple[PackVariant, ...]

    @property
    def variant_ids(self) -> list[int]:
        return [v.variant_id for v in self.variants]


@dataclass
class PackOutcome:
    final_loss: dict[int, float] = field(default_factory=dict)  # variant id -> last train loss
    probes: int = 0
    steps: int = 0


class _SinkAdapter:
    """Buffers per-step losses; writes them and each probe's metrics at every probe."""

    def __init__(
        self,
        task: PackTask,
        sink: MetricSink,
        loss_every: int,
        on_progress: Callable[[int, torch.Tensor], None] | None,
    ) -> None:
        self.ids = np.asarray(task.variant_ids, dtype=np.int64)
        self.sink, self.loss_every, self.on_progress = sink, loss_every, on_progress
        self.loss_steps: list[int] = []
        self.loss_values: list[torch.Tensor] = []
        self.outcome = PackOutcome()

    def on_step(self, step: int, losses: torch.Tensor) -> None:
        self.outcome.steps = step
        if step % self.loss_every == 0:
            self.loss_steps.append(step)
            self.loss_values.append(losses.detach().float().cpu())  # [V]
        if self.on_progress is not None:
            self.on_progress(step, losses)
        self.last_losses = losses

    def on_probe(self, step: int, result: Any) -> None:
        head = {k: v.detach().float().cpu() for k, v in result.head.items()}
        self.sink.write_head_metrics(_grid_columns(self.ids, step, head))
        scalars = {k: v.detach().float().cpu() for k, v in result.scalar.items()}
        self._write_scalars(step, scalars)
        self.outcome.probes += 1

    def _write_scalars(self, step: int, scalars: dict[str, torch.Tensor]) -> None:
        steps = [step] * len(scalars) + self.loss_steps
        names = list(scalars) + ["train_loss"] * len(self.loss_steps)
        values = list(scalars.values()) + self.loss_values
        if not values:
            return
        v = len(self.ids)
        self.sink.write_scalar_metrics({
            "variant_id": np.tile(self.ids, len(values)),
            "step": np.repeat(np.asarray(steps, dtype=np.int64), v),
            "name": np.repeat(np.asarray(names, dtype=object), v),
            "value": torch.stack(values).reshape(-1).numpy().astype(np.float64),
        })
        self.loss_steps, self.loss_values = [], []


def _grid_columns(ids: np.ndarray, step: int, head: dict[str, torch.Tensor]) -> Columns:
    """Columns for {metric: [V, L, H]}, dropping NaN cells (a metric undefined for that head)."""
    names = list(head)
    grid = torch.stack([head[n] for n in names]).numpy().astype(np.float64)  # [M,V,L,H]
    m, v, n_layers, n_heads = grid.shape
    idx = np.indices(grid.shape).reshape(4, -1)
    values = grid.reshape(-1)
    keep = np.isfinite(values)
    return {
        "variant_id": ids[idx[1]][keep],
        "step": step,
        "layer": idx[2][keep],
        "head": idx[3][keep],
        "metric": np.asarray(names, dtype=object)[idx[0]][keep],
        "value": values[keep],
    }


def run_pack(
    task: PackTask,
    sink: MetricSink,
    *,
    device: str | torch.device = "cpu",
    loss_every: int = 10,
    on_progress: Callable[[int, torch.Tensor], None] | None = None,
) -> PackOutcome:
    cfg = task.config
    model_cfg = ModelConfig.from_dict(cfg["model"])
    data_cfg = DataConfig.from_dict(cfg["data"])
    train_cfg = TrainConfig.from_dict({**cfg["train"], "lr": task.variants[0].lr})
    settings = ProbeSettings.from_dict(cfg["probe"])
    streams = [make_stream(data_cfg, v.seed) for v in task.variants]

    def next_batch(v: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = streams[v].next_batch(batch_size)
        return batch.tokens, batch.loss_mask

    probes = probe_batch(data_cfg, train_cfg.probe_batch_size).to(torch.device(device))
    adapter = _SinkAdapter(task, sink, loss_every, on_progress)
    model: PackedTransformer = train_pack(
        model_cfg,
        train_cfg,
        [VariantRun(seed=v.seed, data_seed=v.seed, lr=v.lr) for v in task.variants],
        next_batch,
        make_prober(probes, settings),
        adapter,
        device=device,
    )
    del model
    last = adapter.last_losses.detach().float().cpu().tolist()
    adapter.outcome.final_loss = dict(zip(task.variant_ids, last, strict=True))
    return adapter.outcome
