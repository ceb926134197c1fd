"""Run one pack end to end: data streams, probe batch, training, and metrics to a sink.

This is the function a Ray task (or a plain loop, or a benchmark) calls. It knows nothing of
Ray, of the store's tables or of MLflow: metrics leave through a :class:`MetricSink`.

Checkpoints (``checkpoint_path``, every ``checkpoint_every`` steps) make a pack resumable:
the train losses buffered up to the step are written to the sink *before* the checkpoint is
saved, so a run resumed from it leaves no gap and loses nothing the sink acknowledged; the
steps after it are written again, which the store's idempotent upserts absorb. The file is
replaced atomically (temporary file, fsync, rename), so a crash mid-save leaves the previous
one. On CUDA an oversized pack is split into chunks of variants trained one after another
(``workers.train.estimate_variant_bytes`` against the free device memory).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from workers.data import DataConfig, make_stream, probe_batch, probe_key
from workers.model import ModelConfig, PackedTransformer
from workers.probes import ProbeSettings, make_prober
from workers.train import (
    PackState,
    TrainConfig,
    VariantRun,
    estimate_variant_bytes,
    train_pack,
    variant_chunks,
)

Columns = dict[str, Any]
CHECKPOINT_VERSION = 1
MEMORY_HEADROOM = 0.8  # share of the free device memory a pack plans to use
log = logging.getLogger(__name__)


class MetricSink(Protocol):
    def write_head_metrics(self, columns: Columns) -> Any: ...

    def write_scalar_metrics(self, columns: Columns) -> Any: ...

    def write_head_patterns(self, variant_id: int, step: int, batch_key: str, patterns: np.ndarray) -> Any:
        """One variant's final attention patterns ``[B, L, H, Q, K]`` (``Store.write_head_patterns``)."""
        ...


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
    resumed_from: int | None = None  # the checkpoint step this run started at, if any
    chunks: int = 1  # sub-packs trained one after another (device memory)


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
        self.last_losses: torch.Tensor | None = None

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
        patterns = getattr(result, "patterns", None)  # [V, B, L, H, Q, K], final probe only
        if patterns is not None:
            batch = patterns.detach().float().cpu().numpy()
            for i, variant_id in enumerate(self.ids.tolist()):
                self.sink.write_head_patterns(variant_id, step, result.batch_key, batch[i])
        self.outcome.probes += 1

    def flush_losses(self) -> None:
        """Write the buffered train losses now (before a checkpoint)."""
        self._write_scalars(self.outcome.steps, {})

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


def probe_batch_key(data_cfg: DataConfig, probe_batch_size: int, pattern_examples: int) -> str:
    """Names the tokens the kept patterns were computed on: sha256 (32 hex) of the probe
    batch's identity (``workers.data.probe_key``: the resolved data distribution, text file
    content included, from which ``probe_batch`` draws), its size and the examples kept."""
    payload = {"probe_key": probe_key(data_cfg), "probe_batch_size": probe_batch_size,
               "pattern_examples": pattern_examples}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def check_pattern_size(model_cfg: ModelConfig, data_cfg: DataConfig, examples: int) -> None:
    """Refuse, before any training, patterns the store would refuse at the final probe."""
    from service.store.patterns import MAX_PATTERN_BYTES  # the store's limit per row

    per_example = 2 * model_cfg.n_layers * model_cfg.n_heads * data_cfg.seq_len**2  # float16 bytes
    if examples * per_example > MAX_PATTERN_BYTES:
        raise ValueError(
            f"probe.pattern_examples={examples} keeps {examples * per_example} bytes of attention "
            f"patterns per variant, over the store's {MAX_PATTERN_BYTES}; set it to at most "
            f"{MAX_PATTERN_BYTES // per_example} (0 keeps none)"
        )


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


@dataclass
class Checkpoint:
    """A pack's saved progress: the chunk plan, the chunks finished, and the training state
    of the chunk in progress (None between chunks)."""

    pack_key: str
    variant_ids: list[int]
    chunks: list[list[int]]  # positions in task.variants
    chunk: int  # the chunk in progress (or next to start)
    state: PackState | None
    final_loss: dict[int, float] = field(default_factory=dict)  # of the finished chunks
    probes: int = 0  # probes delivered before this checkpoint

    def to_dict(self) -> dict[str, Any]:
        state = None if self.state is None else vars(self.state)
        return {"version": CHECKPOINT_VERSION, **vars(self), "state": state}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Checkpoint:
        raw = dict(raw)
        if raw.pop("version", None) != CHECKPOINT_VERSION:
            raise ValueError("checkpoint version mismatch")
        state = raw.pop("state")
        return cls(**raw, state=None if state is None else PackState(**state))


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Atomically replace ``path``: write a temporary file beside it, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(checkpoint.to_dict(), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, task: PackTask) -> Checkpoint | None:
    """The pack's checkpoint, or None when there is none (or it belongs to other variants)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        checkpoint = Checkpoint.from_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # unreadable: start over rather than fail the pack
        log.warning("ignoring unreadable checkpoint %s: %s", path, exc)
        return None
    if checkpoint.pack_key != task.pack_key or checkpoint.variant_ids != task.variant_ids:
        log.warning("ignoring checkpoint %s of another pack", path)
        return None
    return checkpoint


def device_budget(device: torch.device, gpu_share: float | None = None) -> int | None:
    """Bytes a pack may plan to use on ``device``: None off CUDA; on CUDA the free memory
    (at most ``gpu_share`` of the device, when it is shared) times MEMORY_HEADROOM."""
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    if gpu_share is not None and 0 < gpu_share < 1:
        free = min(free, int(total * gpu_share))
    return int(free * MEMORY_HEADROOM)


def plan_chunks(task: PackTask, device: torch.device, gpu_share: float | None = None) -> list[list[int]]:
    cfg = task.config
    per_variant = estimate_variant_bytes(
        ModelConfig.from_dict(cfg["model"]),
        TrainConfig.from_dict(cfg["train"]),
        DataConfig.from_dict(cfg["data"]).seq_len,
    )
    chunks = variant_chunks(len(task.variants), per_variant, device_budget(device, gpu_share))
    return [list(c) for c in chunks]


def run_pack(
    task: PackTask,
    sink: MetricSink,
    *,
    device: str | torch.device = "cpu",
    loss_every: int = 10,
    on_progress: Callable[[int, torch.Tensor], None] | None = None,
    checkpoint_path: str | Path | None = None,
    checkpoint_every: int | None = None,
    gpu_share: float | None = None,
    on_checkpoint_saved: Callable[[int], None] | None = None,
) -> PackOutcome:
    """Train and probe the pack, writing every metric to ``sink``.

    With ``checkpoint_path``, an existing checkpoint there is resumed from, a new one is
    saved every ``checkpoint_every`` steps (then ``on_checkpoint_saved(step)`` is called),
    and the file is removed when the pack completes. ``gpu_share``: the fraction of the
    device this pack may plan for (fractional GPUs).
    """
    device = torch.device(device)
    resume = load_checkpoint(checkpoint_path, task) if checkpoint_path else None
    chunks = resume.chunks if resume else plan_chunks(task, device, gpu_share)
    outcome = PackOutcome(chunks=len(chunks))
    if resume is not None:
        outcome.final_loss.update(resume.final_loss)
        outcome.probes = resume.probes
        outcome.resumed_from = resume.state.step if resume.state is not None else 0
    first = resume.chunk if resume else 0
    for k in range(first, len(chunks)):
        sub = replace(task, variants=tuple(task.variants[i] for i in chunks[k]))
        state = resume.state if resume is not None and k == resume.chunk else None

        def save(state: PackState, probes: int, k: int = k) -> None:
            assert checkpoint_path is not None
            checkpoint = Checkpoint(task.pack_key, task.variant_ids, chunks, k, state,
                                    dict(outcome.final_loss), outcome.probes + probes)
            save_checkpoint(checkpoint_path, checkpoint)
            if on_checkpoint_saved is not None:
                on_checkpoint_saved(state.step)

        part = _train_chunk(sub, sink, device, loss_every, on_progress, state,
                            save if checkpoint_path and checkpoint_every else None, checkpoint_every)
        outcome.final_loss.update(part.final_loss)
        outcome.probes += part.probes
        outcome.steps = part.steps
        if checkpoint_path and k + 1 < len(chunks):
            save_checkpoint(checkpoint_path, Checkpoint(task.pack_key, task.variant_ids, chunks, k + 1,
                                                        None, dict(outcome.final_loss), outcome.probes))
    if checkpoint_path:
        Path(checkpoint_path).unlink(missing_ok=True)
    return outcome


def _train_chunk(
    task: PackTask,
    sink: MetricSink,
    device: torch.device,
    loss_every: int,
    on_progress: Callable[[int, torch.Tensor], None] | None,
    resume: PackState | None,
    save: Callable[[PackState, int], None] | None,
    checkpoint_every: int | None,
) -> PackOutcome:
    cfg = task.config
    model_cfg = ModelConfig.from_dict(cfg["model"])
    data_cfg = DataConfig.from_dict(cfg["data"])
    train_cfg = TrainConfig.from_dict({**cfg["train"], "lr": task.variants[0].lr})
    settings = ProbeSettings.from_dict(cfg["probe"])
    check_pattern_size(model_cfg, data_cfg, min(settings.pattern_examples, train_cfg.probe_batch_size))
    starts = resume.data_rng if resume is not None else [0] * len(task.variants)
    streams = [make_stream(data_cfg, v.seed, start) for v, start in zip(task.variants, starts, strict=True)]

    def next_batch(v: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = streams[v].next_batch(batch_size)
        return batch.tokens, batch.loss_mask

    probes = probe_batch(data_cfg, train_cfg.probe_batch_size).to(device)
    batch_key = probe_batch_key(data_cfg, train_cfg.probe_batch_size, settings.pattern_examples)
    adapter = _SinkAdapter(task, sink, loss_every, on_progress)

    def on_checkpoint(state: PackState) -> None:
        assert save is not None
        adapter.flush_losses()  # acknowledged before the checkpoint can claim these steps
        save(state, adapter.outcome.probes)

    model: PackedTransformer = train_pack(
        model_cfg,
        train_cfg,
        [VariantRun(seed=v.seed, data_seed=v.seed, lr=v.lr) for v in task.variants],
        next_batch,
        make_prober(probes, settings, final_step=train_cfg.steps, batch_key=batch_key),
        adapter,
        device=device,
        resume=resume,
        on_checkpoint=on_checkpoint if save is not None else None,
        checkpoint_every=checkpoint_every,
        data_rng_state=lambda: [s.batch_index for s in streams],
    )
    del model
    assert adapter.last_losses is not None
    last = adapter.last_losses.detach().float().cpu().tolist()
    adapter.outcome.final_loss = dict(zip(task.variant_ids, last, strict=True))
    return adapter.outcome
