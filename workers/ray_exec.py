"""Ray at the edge: the only module of headspec that imports ``ray``.

Training stays the plain function :func:`workers.pack_runner.run_pack`; this module wraps it:

* one Ray task per pack (:meth:`RayExecutor.submit`) with the spec's CPUs, GPU share and
  ``max_retries``: a worker that dies (OOM kill, lost node, SIGKILL) is retried by Ray, and
  the retry resumes from the pack's checkpoint. An exception raised by the pack itself is
  not retried; :meth:`RayExecutor.result` raises it as :class:`PackFailed` with the traceback;
* a fixed pool of :class:`StoreWriter` actors, each holding one ``Store`` with a single
  connection: every metric batch of every pack goes through one of them, and the pack waits
  for the acknowledgement (what is acknowledged is committed), so the database sees
  ``writers`` connections however many packs run;
* a :class:`ProgressBoard` actor that packs tell their latest step and losses, fire and
  forget, and the driver polls.

Test hook: with ``HEADSPEC_FAULT_DIR`` set in the workers' environment, a file
``<dir>/<pack key>.start`` or ``<dir>/<pack key>.checkpoint`` makes the pack fail at that
point: content ``kill`` SIGKILLs the worker once (the file is removed first, so the retry
goes on), anything else raises an exception on every attempt.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

if TYPE_CHECKING:
    import numpy as np

    from service.store import Store
    from workers.pack_runner import Columns, PackTask

FAULT_DIR_ENV = "HEADSPEC_FAULT_DIR"
log = logging.getLogger(__name__)


class PackFailed(Exception):
    """A pack that raised, or whose worker died more often than ``max_retries``; the message
    is the remote traceback (or Ray's account of the failure)."""


@dataclass(frozen=True)
class PackRun:
    """How a pack task runs: where it checkpoints and how often it reports."""

    checkpoint_dir: str  # absolute; every worker must reach it
    checkpoint_every: int | None
    report_every: int = 10


@dataclass(frozen=True)
class PackResult:
    pack_key: str
    node: str
    pid: int
    steps: int
    probes: int
    final_loss: dict[int, float]
    resumed_from: int | None  # the checkpoint step the successful attempt started at
    chunks: int


@dataclass
class PackProgress:
    step: int
    losses: list[float]  # per variant of the chunk in training
    node: str = ""
    events: list[str] = field(default_factory=list)  # "started on host (pid N)", "resumed at step N"


# -- actors ----------------------------------------------------------------------------------


# Actors outlive the loss of their node: Ray restarts them elsewhere and retries the calls in
# flight. Safe because they keep nothing that matters (a writer's store is reopened; writes are
# idempotent upserts; a progress board only loses progress already shown).
_SURVIVES_NODE_LOSS = {"max_restarts": -1, "max_task_retries": -1}


@ray.remote(num_cpus=0, **_SURVIVES_NODE_LOSS)
class StoreWriter:
    """One ``Store`` on one connection; Ray runs its calls one at a time."""

    def __init__(self, store_url: str) -> None:
        from service.store import Store

        self.store: Store | None = Store.open(store_url, pool_size=1, max_overflow=0)

    def _open(self) -> Store:
        if self.store is None:
            raise RuntimeError("this writer was closed")
        return self.store

    def ready(self) -> bool:
        return True

    def write_head_metrics(self, columns: Columns) -> Any:
        return self._open().write_head_metrics(columns)

    def write_scalar_metrics(self, columns: Columns) -> Any:
        return self._open().write_scalar_metrics(columns)

    def write_head_patterns(self, variant_id: int, step: int, batch_key: str, patterns: np.ndarray) -> Any:
        return self._open().write_head_patterns(variant_id, step, batch_key, patterns)

    def start_variants(self, variant_ids: list[int], node: str) -> None:
        self._open().start_variants(variant_ids, node=node)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


@ray.remote(num_cpus=0, **_SURVIVES_NODE_LOSS)
class ProgressBoard:
    def __init__(self) -> None:
        self.packs: dict[str, PackProgress] = {}

    def report(self, pack_key: str, step: int, losses: list[float]) -> None:
        entry = self.packs.setdefault(pack_key, PackProgress(0, []))
        entry.step, entry.losses = step, losses

    def note(self, pack_key: str, event: str, node: str = "") -> None:
        entry = self.packs.setdefault(pack_key, PackProgress(0, []))
        entry.events.append(event)
        entry.node = node or entry.node

    def snapshot(self) -> dict[str, PackProgress]:
        return self.packs


class _WriterSink:
    """The MetricSink of a pack task: each batch waits for its writer's acknowledgement."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def write_head_metrics(self, columns: Columns) -> Any:
        return ray.get(self.writer.write_head_metrics.remote(columns))

    def write_scalar_metrics(self, columns: Columns) -> Any:
        return ray.get(self.writer.write_scalar_metrics.remote(columns))

    def write_head_patterns(self, variant_id: int, step: int, batch_key: str, patterns: np.ndarray) -> Any:
        return ray.get(self.writer.write_head_patterns.remote(variant_id, step, batch_key, patterns))


# -- the pack task ---------------------------------------------------------------------------


def _fault_point(pack_key: str, point: str) -> None:
    root = os.environ.get(FAULT_DIR_ENV)
    marker = Path(root) / f"{pack_key}.{point}" if root else None
    if marker is None or not marker.exists():
        return
    action = marker.read_text().strip()
    if action == "kill":
        marker.unlink()  # one-shot: the retry must get past this point
        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError(f"injected failure at {point} of pack {pack_key}")


@ray.remote
def _pack_task(task: PackTask, run: PackRun, writer: Any, board: Any, gpu_share: float) -> PackResult:
    try:
        return _run_pack_task(task, run, writer, board, gpu_share)
    except Exception as exc:  # the pack's own error: its traceback as text, not retried
        raise PackFailed("".join(traceback.format_exception(exc))) from None


def node_name() -> str:
    """What a pack records as its node: ``HEADSPEC_NODE_NAME`` from the Ray node's environment
    (``HEADSPEC_NODE_NAME=gpu-3 ray start ...``; its workers inherit it) or the hostname."""
    return os.environ.get("HEADSPEC_NODE_NAME") or socket.gethostname()


def _run_pack_task(task: PackTask, run: PackRun, writer: Any, board: Any, gpu_share: float) -> PackResult:
    import torch

    from workers.pack_runner import run_pack

    node, pid = node_name(), os.getpid()
    ray.get(writer.start_variants.remote(task.variant_ids, node))  # attempts += 1, node
    board.note.remote(task.pack_key, f"started on {node} (pid {pid})", node)
    _fault_point(task.pack_key, "start")
    device = "cuda" if ray.get_gpu_ids() else "cpu"
    total = int(task.config["train"]["steps"])

    def on_progress(step: int, losses: torch.Tensor) -> None:
        if step % run.report_every == 0 or step == total:
            board.report.remote(task.pack_key, step, losses.detach().float().cpu().tolist())

    def on_saved(step: int) -> None:
        _fault_point(task.pack_key, "checkpoint")

    outcome = run_pack(
        task,
        _WriterSink(writer),
        device=device,
        on_progress=on_progress,
        checkpoint_path=Path(run.checkpoint_dir) / f"{task.pack_key}.pt",
        checkpoint_every=run.checkpoint_every,
        gpu_share=gpu_share if device == "cuda" else None,
        on_checkpoint_saved=on_saved,
    )
    if outcome.resumed_from is not None:
        log.warning("pack %s resumed from its checkpoint at step %d", task.pack_key, outcome.resumed_from)
        board.note.remote(task.pack_key, f"resumed at step {outcome.resumed_from}", node)
    return PackResult(task.pack_key, node, pid, outcome.steps, outcome.probes, outcome.final_loss,
                      outcome.resumed_from, outcome.chunks)


# -- the driver's side -----------------------------------------------------------------------


@dataclass
class PackHandle:
    index: int
    task: PackTask
    ref: Any  # ray.ObjectRef of the PackResult


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join Ray: the session already open in this process, the cluster at ``address``, or a
    new local Ray started in-process. True when this call started it (and should stop it)."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    return True


def shutdown() -> None:
    """Stop this process's Ray session, if any."""
    if ray.is_initialized():
        ray.shutdown()


class RayExecutor:
    """Runs packs as Ray tasks writing through ``writers`` store writers."""

    def __init__(self, store_url: str, *, writers: int, address: str | None = None,
                 num_cpus: int | None = None) -> None:
        if writers < 1:
            raise ValueError(f"writers must be >= 1, got {writers}")
        # a driver started as a Ray Job finds its cluster in RAY_ADDRESS
        address = address or os.environ.get("RAY_ADDRESS") or None
        self.owns_ray = connect(address, num_cpus)
        self.local = not address
        try:
            # beside the driver when it can (soft): packs on other nodes may come and go
            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
            self.writers = [StoreWriter.options(scheduling_strategy=here).remote(store_url)  # type: ignore[attr-defined]
                            for _ in range(writers)]
            ray.get([w.ready.remote() for w in self.writers])  # a bad URL or schema fails here
            self.board = ProgressBoard.options(scheduling_strategy=here).remote()  # type: ignore[attr-defined]
        except BaseException:
            self._stop_ray()
            raise

    def check_resources(self, cpus: float, gpus: float) -> None:
        """Refuse a pack no node of a local Ray can ever run (it would wait forever)."""
        have = ray.cluster_resources()
        short = [f"{n}={need} (cluster has {have.get(k, 0)})"
                 for n, k, need in (("cpus", "CPU", cpus), ("gpus", "GPU", gpus)) if need > have.get(k, 0)]
        if short:
            message = f"a pack asks for resources.{', '.join(short)}"
            if self.local:
                raise ValueError(message + "; lower the spec's resources or run on a cluster")
            log.warning("%s; it waits until the cluster scales up", message)

    def submit(self, index: int, task: PackTask, run: PackRun, *, cpus: float, gpus: float,
               max_retries: int) -> PackHandle:
        writer = self.writers[index % len(self.writers)]
        ref = _pack_task.options(
            num_cpus=cpus, num_gpus=gpus, max_retries=max_retries, retry_exceptions=False,
            name=f"pack-{task.pack_key}",
        ).remote(task, run, writer, self.board, gpus)
        return PackHandle(index, task, ref)

    def wait(self, handles: list[PackHandle], timeout: float) -> tuple[list[PackHandle], list[PackHandle]]:
        """(finished, pending) after at most ``timeout`` seconds."""
        by_ref = {h.ref: h for h in handles}
        done, pending = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=timeout)
        return [by_ref[r] for r in done], [by_ref[r] for r in pending]

    def result(self, handle: PackHandle) -> PackResult:
        try:
            result: PackResult = ray.get(handle.ref)
            return result
        except RayTaskError as exc:
            cause = exc.cause
            raise PackFailed(str(cause) if isinstance(cause, PackFailed) else str(exc)) from None
        except RayError as exc:  # the worker or node died more often than max_retries
            raise PackFailed(f"{type(exc).__name__}: {exc}") from None

    def progress(self) -> dict[str, PackProgress]:
        snapshot: dict[str, PackProgress] = ray.get(self.board.snapshot.remote())
        return snapshot

    def cancel(self, handles: list[PackHandle]) -> None:
        for h in handles:
            ray.cancel(h.ref, force=True)

    def close(self) -> None:
        """Close the writers' connections, end the actors, and stop Ray if this started it."""
        try:
            ray.get([w.close.remote() for w in self.writers], timeout=60)
        except RayError as exc:
            log.warning("closing the store writers: %s", exc)
        for actor in [*self.writers, self.board]:
            ray.kill(actor)
        self._stop_ray()

    def _stop_ray(self) -> None:
        if self.owns_ray:
            ray.shutdown()
            self.owns_ray = False

